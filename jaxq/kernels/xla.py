"""The XLA reference backend: int8 x int8 -> int32 ``dot_general`` and the epilogue.

Always available on every platform, and the definition every other backend is tested
against (bit-exact int32 accumulators and identical outputs).

Formulation (the fastest found for XLA:CPU, see shared notes): the weight stays
``(N, K)`` (contracting dim 1 of both operands), uint8 activations are moved to int8
by ``x - 128`` (with the zero point moved along) so the dot is int8 x int8 -> int32,
and M == 1 is padded to 2 rows (YNNPACK declines M == 1 dots and XLA would otherwise
upcast the whole weight to int32). Zero points are removed from the accumulator
afterwards with the precomputed weight column sums and the activation row sums:

    acc = sum_k (x - zx)(w - zw) = dot(x, w) - zx * colsum(w) - zw * rowsum(x) + K zx zw

Epilogues (``sx``, ``sw`` the activation and weight scales, float32):

* float output:  ``y = fma(float(acc), sx * sw, bias)`` (one rounding), then ReLU;
* requantized:   ``q = clamp(rint((float(acc) + bias / (sx * sw)) * ((sx * sw) / so)) + zo,
  zo if relu else qmin, qmax)``.

Both are torch's x86 (fbgemm) kernels' formulas, checked bit-exact against
``quantized::linear_dynamic`` and ``quantized::linear``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxq.core.affine import exact_divide
from jaxq.core.float_arithmetic import fma_f32
from jaxq.kernels.activation import quantize_activation
from jaxq.kernels.problem import MatmulArgs, MatmulProblem
from jaxq.kernels.weights import PackedWeight, weight_values

__all__ = ["int_accumulators", "xla_matmul", "float_epilogue", "requantize_epilogue",
           "weight_only_matmul"]


def _int8_dot(x: jax.Array, w: jax.Array) -> jax.Array:
    """int32 ``x @ w.T`` for int8 ``x (M, K)`` and ``w (N, K)``."""
    m = x.shape[0]
    if m == 1:
        x = jnp.pad(x, ((0, 1), (0, 0)))
    acc = jax.lax.dot_general(x, w, (((1,), (1,)), ((), ())),
                              preferred_element_type=jnp.int32)
    return acc[:m]


def int_accumulators(x: jax.Array, weight: PackedWeight, x_zero_point=None) -> jax.Array:
    """Exact int32 ``sum_k (x - zx)(w - zw)``: ``(M, N)`` from ``x (M, K)`` uint8/int8.

    ``x_zero_point`` is None, a scalar or ``(M,)``. The arithmetic wraps modulo 2**32
    like the native kernels (it is exact whenever the true sum fits in int32).
    """
    spec = weight.spec
    w = weight_values(weight)
    zx = None if x_zero_point is None else jnp.asarray(x_zero_point, jnp.int32)
    if x.dtype == jnp.uint8:  # x - 128 as a bit flip, so XLA sees an int8 x int8 dot
        x = jax.lax.bitcast_convert_type(x ^ jnp.uint8(0x80), jnp.int8)
        zx = jnp.int32(-128) if zx is None else zx - 128
    acc = _int8_dot(x, w)
    if zx is not None:
        zx_col = zx[:, None] if zx.ndim == 1 else zx
        acc = acc - zx_col * weight.col_sums[None, :]
    if not spec.symmetric:
        zw = weight.zero_point
        row_sums = jnp.sum(x.astype(jnp.int32), axis=1)
        acc = acc - row_sums[:, None] * zw
        if zx is not None:
            acc = acc + (zx_col * zw) * jnp.int32(spec.in_features)
    return acc


def _scales(x_scale, w_scale) -> jax.Array:
    """float32 ``sx * sw`` broadcast to ``(M or 1, N or 1)``."""
    sx = jnp.asarray(x_scale, jnp.float32)
    sx = sx[:, None] if sx.ndim == 1 else sx
    return sx * jnp.asarray(w_scale, jnp.float32)


def float_epilogue(acc: jax.Array, x_scale, w_scale, bias=None, relu: bool = False
                   ) -> jax.Array:
    """``fma(float(acc), sx * sw, bias)`` with ReLU: float32 ``(M, N)``."""
    multiplier = _scales(x_scale, w_scale)
    value = acc.astype(jnp.float32)
    if bias is None:
        y = value * multiplier
    else:
        y = fma_f32(value, multiplier, jnp.asarray(bias, jnp.float32))
    return jnp.maximum(y, 0.0) if relu else y


def requantize_epilogue(acc: jax.Array, x_scale, w_scale, out_scale, out_zero_point,
                        quant_min: int, quant_max: int, bias=None, relu: bool = False,
                        dtype=jnp.uint8) -> jax.Array:
    """fbgemm's ``ReQuantizeOutput`` with a float bias: int ``(M, N)`` in ``dtype``."""
    act_times_w = _scales(x_scale, w_scale)
    multiplier = exact_divide(act_times_w, jnp.asarray(out_scale, jnp.float32))
    value = acc.astype(jnp.float32)
    if bias is not None:
        value = value + exact_divide(jnp.asarray(bias, jnp.float32), act_times_w)
    scaled = jnp.clip(value * multiplier, -2.0**31, 2.0**31 - 256)
    q = jnp.round(scaled).astype(jnp.int32) + jnp.asarray(out_zero_point, jnp.int32)
    low = jnp.asarray(out_zero_point, jnp.int32) if relu else jnp.int32(quant_min)
    return jnp.clip(q, low, quant_max).astype(dtype)


def dequantized_weight(weight: PackedWeight) -> jax.Array:
    """float32 ``(N, K)`` real weight ``(q - zero_point) * scale``."""
    spec = weight.spec
    q = weight_values(weight).astype(jnp.int32)
    if spec.granularity == "per_group":
        n, groups = spec.out_features, spec.num_groups
        q = q.reshape(n, groups, spec.group_size)
        w = ((q - weight.zero_point[:, :, None]).astype(jnp.float32)
             * weight.scale[:, :, None])
        return w.reshape(n, spec.in_features)
    zp = weight.zero_point[:, None] if weight.zero_point.ndim == 1 else weight.zero_point
    scale = weight.scale[:, None] if weight.scale.ndim == 1 else weight.scale
    return (q - zp).astype(jnp.float32) * scale


def weight_only_matmul(x: jax.Array, weight: PackedWeight, bias=None, relu: bool = False
                       ) -> jax.Array:
    """float32 ``x @ dequantize(W).T + bias`` (float accumulation; not bit-defined)."""
    w = dequantized_weight(weight)
    y = jax.lax.dot_general(x.astype(jnp.float32), w, (((1,), (1,)), ((), ())),
                            precision=jax.lax.Precision.HIGHEST,
                            preferred_element_type=jnp.float32)
    if bias is not None:
        y = y + jnp.asarray(bias, jnp.float32)
    return jnp.maximum(y, 0.0) if relu else y


def xla_matmul(problem: MatmulProblem, args: MatmulArgs) -> jax.Array:
    """The reference implementation of every :class:`MatmulProblem`: ``(m, n)``."""
    out_dtype = jnp.dtype(problem.out_dtype)
    weight = args.weight
    if problem.mode == "weight_only":
        return weight_only_matmul(args.x, weight, args.bias, problem.relu).astype(out_dtype)
    if problem.mode == "dynamic":
        xq, x_scale, x_zp = quantize_activation(args.x, problem.dynamic, problem.row_groups)
    else:
        xq, x_scale, x_zp = args.x, args.x_scale, args.x_zero_point
    acc = int_accumulators(xq, weight, x_zp)
    if problem.out_dtype == "int32":
        return acc
    if problem.requantize:
        lo, hi = problem.out_range
        return requantize_epilogue(acc, x_scale, weight.scale, args.out_scale,
                                   args.out_zero_point, lo, hi, args.bias, problem.relu,
                                   out_dtype)
    return float_epilogue(acc, x_scale, weight.scale, args.bias, problem.relu
                          ).astype(out_dtype)
