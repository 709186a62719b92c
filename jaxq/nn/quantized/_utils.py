"""Shared pieces of the quantized modules: state types, input checks, convert-time helpers.

State: every quantized module keeps its int8 weights (packed once at convert time), the
float bias and the output ``scale``/``zero_point`` in :class:`QuantizedState` variables
(not ``nnx.Param``), so optimizers skip them while ``nnx.state`` / checkpointing see
them, and changing a value does not retrace a jitted call.

Convert time (``from_float``) follows torch's protocol: the weight observer is
``mod.weight_fake_quant`` for QAT modules, otherwise ``mod.qconfig.weight()`` built for
the Flax kernel by :func:`jaxq.nn.layout.weight_observer_for_kernel`; the output qparams
come from ``mod.activation_post_process.calculate_qparams()``; the weight is quantized
like torch's ``_quantize_weight`` in torch's ``(out, in, *k)`` layout.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core.dtypes import QuantDType, as_quant_dtype, qint8, quint8
from jaxq.core.qscheme import QScheme
from jaxq.core.qtensor import QTensor, quantize_per_channel
from jaxq.kernels.activation import fbgemm_quantize
from jaxq.nn import layout

__all__ = ["QuantizedState", "QuantizedWeight", "QuantizedBuffer", "require_qtensor",
           "require_per_tensor", "output_qparams", "activation_qparams", "weight_observer",
           "quantize_kernel", "variable_value", "check_activation_dtype"]


class QuantizedState(nnx.Variable):
    """Base type of the state a quantized module holds (not trained: not ``nnx.Param``)."""


class QuantizedWeight(QuantizedState):
    """Quantized (packed) weights and their qparams."""


class QuantizedBuffer(QuantizedState):
    """Float bias, output scale / zero point, normalization statistics."""


def variable_value(value: Any) -> Any:
    """The array held by an NNX variable (or ``value`` itself)."""
    if isinstance(value, nnx.Variable):
        return value.get_value()
    return value


def require_qtensor(x: Any, op: str, argument: str = "input") -> QTensor:
    """Raises torch's "could not run" error, as a TypeError, for a non-QTensor input."""
    if not isinstance(x, QTensor):
        kind = getattr(x, "dtype", type(x).__name__)
        raise TypeError(
            f"Could not run '{op}' with a non-quantized {argument} ({kind}): quantized "
            f"modules take a jaxq.QTensor. Quantize the input first (jaxq.quantize_per_tensor"
            f", jaxq.nn.quantized.Quantize or a QuantStub converted by jaxq.convert).")
    return x


def same_qparams(x: QTensor, values: jax.Array) -> QTensor:
    """A QTensor of `values` (integers, any shape) with `x`'s qparams and dtype."""
    return QTensor(values.astype(x.dtype.storage_dtype), x.scale, x.zero_point, x.dtype)


def require_per_tensor(x: QTensor, op: str, argument: str = "input",
                       dtypes: tuple[QuantDType, ...] = (quint8, qint8)) -> QTensor:
    """Checks that ``x`` is a per-tensor QTensor of one of ``dtypes``."""
    require_qtensor(x, op, argument)
    if x.qscheme().is_per_channel:
        raise ValueError(f"{op}: {argument} must be per-tensor quantized; got "
                         f"{x.qscheme().value}")
    if x.dtype not in dtypes:
        names = ", ".join(d.name for d in dtypes)
        raise TypeError(f"{op}: {argument} must have dtype {names}; got {x.dtype.name}")
    return x


def check_activation_dtype(dtype: Any, argument: str = "dtype") -> QuantDType:
    """quint8 / qint8 (the activation dtypes the quantized ops run)."""
    qdtype = as_quant_dtype(dtype, argument)
    if qdtype not in (quint8, qint8):
        raise ValueError(f"{argument}={dtype!r} must be quint8 or qint8")
    return qdtype


def output_qparams(scale: Any, zero_point: Any, dtype: QuantDType | None = None,
                   owner: str = "module") -> tuple[jax.Array, jax.Array]:
    """Validated output qparams: float32 ``()`` scale and int32 ``()`` zero point.

    Concrete values are checked (positive finite scale; zero point an integer, inside
    ``dtype``'s range when given); traced values pass through.
    """
    scale_arr = jnp.asarray(variable_value(scale))
    if scale_arr.size != 1 or not jnp.issubdtype(scale_arr.dtype, jnp.floating) and not \
            jnp.issubdtype(scale_arr.dtype, jnp.integer):
        raise TypeError(f"{owner}: scale must be a float scalar; got {scale!r}")
    zp_arr = jnp.asarray(variable_value(zero_point))
    if zp_arr.size != 1 or not jnp.issubdtype(zp_arr.dtype, jnp.integer):
        raise TypeError(f"{owner}: zero_point must be an integer scalar; got {zero_point!r}")
    scale_arr = scale_arr.reshape(()).astype(jnp.float32)
    zp_arr = zp_arr.reshape(()).astype(jnp.int32)
    if not isinstance(scale_arr, jax.core.Tracer):
        value = float(scale_arr)
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{owner}: scale must be positive and finite; got {value}")
    if dtype is not None and not isinstance(zp_arr, jax.core.Tracer):
        if not dtype.quant_min <= int(zp_arr) <= dtype.quant_max:
            raise ValueError(f"{owner}: zero_point={int(zp_arr)} must lie in "
                             f"[{dtype.quant_min}, {dtype.quant_max}] for {dtype.name}")
    return scale_arr, zp_arr


def activation_qparams(mod: Any, owner: str) -> tuple[jax.Array, jax.Array, QuantDType]:
    """``mod.activation_post_process.calculate_qparams()`` and its dtype (torch's protocol).

    Raises:
      ValueError: ``mod`` has no ``activation_post_process`` (not prepared).
    """
    post = getattr(mod, "activation_post_process", None)
    if post is None:
        raise ValueError(f"{owner}.from_float: the module has no activation_post_process; "
                         "prepare (or prepare_qat) and calibrate the model before convert")
    scale, zero_point = post.calculate_qparams()
    dtype = as_quant_dtype(getattr(post, "dtype", quint8))
    return (jnp.asarray(scale, jnp.float32).reshape(()),
            jnp.asarray(zero_point).astype(jnp.int32).reshape(()), dtype)


def _param_array(value: Any) -> jax.Array:
    return jnp.asarray(variable_value(value))


def weight_observer(mod: Any, kernel: jax.Array, owner: str,
                    use_precomputed_fake_quant: bool = False) -> Any:
    """The weight's observer / fake-quant after observing ``kernel`` (torch's protocol).

    QAT modules: ``mod.weight_fake_quant``; observed float modules: ``mod.qconfig.weight()``
    built for the Flax kernel. As torch, the weight is observed once more unless
    ``use_precomputed_fake_quant`` (this updates a QAT module's fake-quant statistics).
    """
    post = getattr(mod, "weight_fake_quant", None)
    if post is None:
        qconfig = getattr(mod, "qconfig", None)
        if qconfig is None:
            raise ValueError(f"{owner}.from_float: input float module must have a qconfig "
                             "(set module.qconfig or use jaxq.prepare)")
        post = layout.weight_observer_for_kernel(qconfig.weight, kernel)
    if not use_precomputed_fake_quant:
        post(kernel)
    dtype = as_quant_dtype(getattr(post, "dtype", None), "weight observer dtype")
    if dtype is not qint8:
        raise ValueError(f"{owner}.from_float: weight observer must have dtype qint8; got "
                         f"{dtype.name}")
    return post


def quantize_kernel(kernel: Any, post: Any, owner: str) -> tuple[QTensor, Any]:
    """torch's ``_quantize_weight`` on a Flax kernel: a QTensor in torch's layout.

    Args:
      kernel: Flax kernel ``(in, out)`` or ``(*k, in/groups, out)``.
      post: the weight observer / fake-quant (already run on ``kernel``).
      owner: class name for messages.

    Returns:
      ``(qweight, qscheme)``: qint8 QTensor ``(out, in, *k)`` (per-channel along axis 0),
      clamped to the observer's ``[quant_min, quant_max]`` as torch does.
    """
    kernel = _param_array(kernel).astype(jnp.float32)
    weight = layout.kernel_to_torch(kernel)
    scale, zero_point = post.calculate_qparams()
    qscheme = getattr(post, "qscheme", None)
    qmin = int(getattr(post, "quant_min", qint8.quant_min))
    qmax = int(getattr(post, "quant_max", qint8.quant_max))
    if qscheme in (QScheme.per_tensor_affine, QScheme.per_tensor_symmetric):
        # torch.quantize_per_tensor's fbgemm rounding, rint(fma(w, 1/s, zp)), computed
        # with an explicit single rounding (not left to XLA's FMA contraction).
        w_scale = jnp.asarray(scale, jnp.float32).reshape(())
        w_zp = jnp.asarray(zero_point).astype(jnp.int32).reshape(())
        q = QTensor(fbgemm_quantize(weight, w_scale, w_zp, jnp.int8), w_scale, w_zp, qint8)
    elif qscheme in (QScheme.per_channel_affine, QScheme.per_channel_symmetric):
        ch_axis = int(getattr(post, "ch_axis", kernel.ndim - 1)) % kernel.ndim
        if layout.torch_weight_axis(ch_axis, kernel.ndim) != 0:
            raise ValueError(f"{owner}.from_float: per-channel weight qparams must be per "
                             f"output channel (torch ch_axis=0, Flax kernel axis "
                             f"{kernel.ndim - 1}); got Flax axis {ch_axis}")
        q = quantize_per_channel(weight, jnp.asarray(scale, jnp.float32).reshape(-1),
                                 jnp.asarray(zero_point).astype(jnp.int32).reshape(-1), 0,
                                 qint8)
    else:
        raise ValueError(f"{owner}.from_float: unexpected weight qscheme {qscheme!r}; "
                         "expected per_tensor_(affine|symmetric) or "
                         "per_channel_(affine|symmetric)")
    if (qmin, qmax) != (qint8.quant_min, qint8.quant_max):
        q = QTensor(jnp.clip(q.data, qmin, qmax).astype(jnp.int8), q.scale, q.zero_point,
                    qint8, q.qscheme(), 0 if q.qscheme().is_per_channel else None)
    return q, qscheme


def float_bias(mod: Any) -> jax.Array | None:
    """The float32 bias of a Flax Linear / Conv (``None`` when it has none)."""
    bias = getattr(mod, "bias", None)
    if bias is None:
        return None
    value = variable_value(bias)
    return None if value is None else jnp.asarray(value, jnp.float32)
