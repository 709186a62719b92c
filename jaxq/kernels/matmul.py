"""``quantized_matmul``: the one entry point every quantized Linear calls.

See :mod:`jaxq.kernels` for the overview, the exact formulas and the backends.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.dtypes import QuantDType, as_quant_dtype
from jaxq.kernels import registry
from jaxq.kernels.problem import DynamicQuantization, MatmulArgs, MatmulProblem
from jaxq.kernels.weights import PackedWeight
from jaxq.kernels.xla import xla_matmul

__all__ = ["quantized_matmul", "resolve_out_dtype"]

_FLOAT_OUT = ("float32", "bfloat16", "float16")
_INT_OUT = {"uint8": (0, 255), "int8": (-128, 127)}
_ACC_OUT = "int32"
_INT_IN = (jnp.dtype(jnp.uint8), jnp.dtype(jnp.int8))
_FLOAT_IN = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def resolve_out_dtype(out_dtype: Any, default: str) -> str:
    """Normalizes ``out_dtype`` to one of float32/bfloat16/float16/uint8/int8."""
    if out_dtype is None:
        return default
    if isinstance(out_dtype, (QuantDType, str)) and not (
            isinstance(out_dtype, str) and out_dtype in _FLOAT_OUT + tuple(_INT_OUT)
            + (_ACC_OUT,)):
        qdtype = as_quant_dtype(out_dtype, "out_dtype")
        if qdtype.name in ("quint8", "uint8"):
            return "uint8"
        if qdtype.name in ("qint8", "int8"):
            return "int8"
        if qdtype.name in _FLOAT_OUT:
            return qdtype.name
        raise ValueError(f"out_dtype={out_dtype!r} must be float32, bfloat16, float16, "
                         "quint8/uint8 or qint8/int8")
    try:
        name = jnp.dtype(out_dtype).name
    except TypeError as error:
        raise TypeError(f"out_dtype={out_dtype!r} is not a dtype") from error
    if name not in _FLOAT_OUT and name not in _INT_OUT and name != _ACC_OUT:
        raise ValueError(f"out_dtype={out_dtype!r} must be float32, bfloat16, float16, "
                         "quint8/uint8, qint8/int8 or int32 (raw accumulators)")
    return name


def _concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


def activation_params(x_scale, x_zero_point, lead: tuple[int, ...], m: int, x_dtype
                      ) -> tuple[jax.Array, jax.Array | None, str]:
    """Validates static activation qparams: returns (scale, zero_point, granularity)."""
    if x_scale is None:
        raise ValueError(f"x_scale is required for {x_dtype} (already quantized) activations")
    scale = jnp.asarray(x_scale)
    if not jnp.issubdtype(scale.dtype, jnp.floating):
        raise TypeError(f"x_scale must be a float array; got {scale.dtype}")
    if scale.size == 1 and scale.ndim <= 1:
        granularity = "per_tensor"
        scale = scale.reshape(()).astype(jnp.float32)
    elif scale.shape in (lead, lead + (1,)):
        granularity = "per_token"
        scale = scale.reshape(m).astype(jnp.float32)
    else:
        raise ValueError(f"x_scale must have shape () (per tensor) or {lead} / {lead + (1,)} "
                         f"(per token); got {scale.shape}")
    if _concrete(scale) and not np.all(np.asarray(scale) > 0):
        raise ValueError("x_scale must be positive")
    zp = None
    if x_zero_point is not None:
        zp = jnp.asarray(x_zero_point)
        if not jnp.issubdtype(zp.dtype, jnp.integer):
            raise TypeError(f"x_zero_point must be an integer array; got {zp.dtype}")
        if granularity == "per_tensor" and zp.size == 1 and zp.ndim <= 1:
            zp = zp.reshape(()).astype(jnp.int32)
        elif granularity == "per_token" and zp.shape in (lead, lead + (1,)):
            zp = zp.reshape(m).astype(jnp.int32)
        else:
            raise ValueError(f"x_zero_point shape {zp.shape} does not match x_scale "
                             f"({granularity})")
        info = jnp.iinfo(x_dtype)
        if _concrete(zp):
            z = np.asarray(zp)
            if z.size and (z.min() < info.min or z.max() > info.max):
                raise ValueError(f"x_zero_point must lie in [{info.min}, {info.max}] for "
                                 f"{jnp.dtype(x_dtype).name} activations")
    return scale, zp, granularity


def _output_params(out_dtype: str, out_scale, out_zero_point):
    if out_dtype in _FLOAT_OUT or out_dtype == _ACC_OUT:
        if out_scale is not None or out_zero_point is not None:
            raise ValueError(f"out_scale / out_zero_point need an integer out_dtype; "
                             f"got out_dtype={out_dtype}")
        return None, None, None
    lo, hi = _INT_OUT[out_dtype]
    if out_scale is None:
        raise ValueError(f"out_scale is required for out_dtype={out_dtype} (requantized "
                         "output)")
    scale = jnp.asarray(out_scale)
    if not jnp.issubdtype(scale.dtype, jnp.floating) or scale.size != 1:
        raise ValueError(f"out_scale must be a float scalar; got {scale.dtype}{scale.shape}")
    scale = scale.reshape(()).astype(jnp.float32)
    if _concrete(scale) and not float(scale) > 0:
        raise ValueError(f"out_scale must be positive; got {float(scale)}")
    zp = jnp.asarray(0 if out_zero_point is None else out_zero_point)
    if not jnp.issubdtype(zp.dtype, jnp.integer) or zp.size != 1:
        raise ValueError(f"out_zero_point must be an integer scalar; got {zp.dtype}{zp.shape}")
    zp = zp.reshape(()).astype(jnp.int32)
    if _concrete(zp) and not lo <= int(zp) <= hi:
        raise ValueError(f"out_zero_point={int(zp)} must lie in [{lo}, {hi}] for {out_dtype}")
    return scale, zp, (lo, hi)


def quantized_matmul(x: jax.Array, weight: PackedWeight, x_scale: Any = None,
                     x_zero_point: Any = None, *, dynamic: DynamicQuantization | None = None,
                     bias: Any = None, relu: bool = False, out_dtype: Any = None,
                     out_scale: Any = None, out_zero_point: Any = None,
                     backend: str | None = None) -> jax.Array:
    """``x @ W.T`` for a quantized weight, with int32 accumulation and a fused epilogue.

    Three modes, chosen by the activation:

    * **static**: ``x`` is uint8/int8 with ``x_scale`` (and ``x_zero_point``) per tensor
      ``()`` or per token ``x.shape[:-1]``;
    * **dynamic**: ``x`` is float and ``dynamic`` says how to quantize it in the call;
    * **weight-only**: ``x`` is float and ``dynamic`` is None (any weight, incl. 4-bit and
      group-wise): ``x @ dequantize(W).T`` accumulated in float32.

    Args:
      x: ``(..., K)`` activation.
      weight: a :class:`~jaxq.kernels.weights.PackedWeight` ``(N, K)`` from
        :func:`~jaxq.kernels.weights.pack_weight`.
      x_scale, x_zero_point: static activation qparams (float32 / integer).
      dynamic: a :class:`~jaxq.kernels.problem.DynamicQuantization` for float ``x``.
      bias: float ``(N,)``.
      relu: fuse a ReLU.
      out_dtype: float32 / bfloat16 / float16 (default: float32, or ``x.dtype`` for
        weight-only), or quint8/uint8 / qint8/int8 to requantize with ``out_scale`` and
        ``out_zero_point`` (static or dynamic modes), or int32 for the raw accumulators
        ``sum_k (x - zx)(w - zw)`` (no epilogue: bias and relu must be unset).
      out_scale, out_zero_point: output qparams (scalars) for an integer ``out_dtype``.
      backend: None picks automatically; ``"xla"`` forces the reference; a registered
        name forces that backend.

    Returns:
      ``(..., N)`` in ``out_dtype``.

    Raises:
      TypeError / ValueError: mismatched shapes, wrong dtypes, unsupported combinations;
      the message names the argument.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxq.kernels import pack_weight, quantized_matmul, DynamicQuantization
      >>> w = pack_weight(jnp.array([[1, 2], [3, -4]], jnp.int8), jnp.float32(0.5))
      >>> x = jnp.array([[10, 20]], jnp.uint8)
      >>> quantized_matmul(x, w, jnp.float32(0.1), jnp.int32(10)).tolist()
      [[1.0, -2.0]]
      >>> y = quantized_matmul(jnp.ones((2, 2)), w, dynamic=DynamicQuantization())
    """
    if not isinstance(weight, PackedWeight):
        raise TypeError(f"weight must be a PackedWeight (see pack_weight); got "
                        f"{type(weight).__name__}")
    x = jnp.asarray(x)
    spec = weight.spec
    if x.ndim == 0 or x.shape[-1] != spec.in_features:
        raise ValueError(f"x must have shape (..., {spec.in_features}) to match the weight "
                         f"(N={spec.out_features}, K={spec.in_features}); got {x.shape}")
    if relu not in (True, False):
        raise TypeError(f"relu must be a bool; got {relu!r}")
    lead = tuple(x.shape[:-1])
    m = int(np.prod(lead, dtype=np.int64))
    k, n = spec.in_features, spec.out_features
    x2d = x.reshape(m, k)
    x_dtype = jnp.dtype(x.dtype)

    if x_dtype in _INT_IN:
        if dynamic is not None:
            raise ValueError("dynamic quantization needs a float x; got an integer x")
        mode = "static"
        x_scale, x_zero_point, x_granularity = activation_params(
            x_scale, x_zero_point, lead, m, x_dtype)
        default_out = "float32"
    elif x_dtype in _FLOAT_IN:
        if x_scale is not None or x_zero_point is not None:
            raise ValueError("x_scale / x_zero_point are for integer (already quantized) x; "
                             "a float x is quantized with dynamic=... or used as is")
        if dynamic is not None:
            if not isinstance(dynamic, DynamicQuantization):
                raise TypeError(f"dynamic must be a DynamicQuantization; got "
                                f"{type(dynamic).__name__}")
            mode, x_granularity, default_out = "dynamic", dynamic.granularity, "float32"
        else:
            mode, x_granularity, default_out = "weight_only", "none", x_dtype.name
    else:
        raise TypeError(f"x must be uint8/int8 (quantized) or float32/bfloat16/float16; "
                        f"got {x_dtype}")

    if mode != "weight_only" and (spec.bits != 8 or spec.granularity == "per_group"):
        raise ValueError(f"{mode} quantized matmul needs an 8-bit per-tensor or per-channel "
                         f"weight; got {weight!r} (4-bit and group-wise weights run "
                         "weight-only: pass a float x without dynamic=)")
    if bias is not None:
        bias = jnp.asarray(bias)
        if not jnp.issubdtype(bias.dtype, jnp.floating) or bias.shape != (n,):
            raise ValueError(f"bias must be a float array of shape ({n},); got "
                             f"{bias.dtype}{bias.shape}")
        bias = bias.astype(jnp.float32)
    out_name = resolve_out_dtype(out_dtype, default_out)
    out_scale, out_zero_point, out_range = _output_params(out_name, out_scale, out_zero_point)
    if (out_range is not None or out_name == _ACC_OUT) and mode == "weight_only":
        raise ValueError(f"out_dtype={out_name} needs quantized activations (static or "
                         "dynamic mode); weight-only matmuls return floats")
    if out_name == _ACC_OUT and (bias is not None or relu):
        raise ValueError("out_dtype=int32 returns raw accumulators: bias and relu must be "
                         "unset")
    if m == 0:
        return jnp.zeros(lead + (n,), out_name)

    problem = MatmulProblem(
        m=m, k=k, n=n, mode=mode, x_dtype=x_dtype.name, x_granularity=x_granularity,
        x_has_zero_point=x_zero_point is not None, dynamic=dynamic, weight=spec,
        has_bias=bias is not None, relu=bool(relu), out_dtype=out_name, out_range=out_range)
    args = MatmulArgs(x2d, weight, x_scale, x_zero_point, bias, out_scale, out_zero_point)
    out = registry.dispatch("matmul", problem, args, xla_matmul, backend)
    return out.reshape(lead + (n,))
