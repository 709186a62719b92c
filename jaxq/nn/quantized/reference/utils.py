"""``torch.ao.nn.quantized.reference.modules.utils`` on NNX: the weight qparams of a
reference quantized module and the weight quantize / dequantize it runs.

A reference quantized module is a float module whose forward quantizes and dequantizes
its weight (``get_weight()``) and otherwise computes in float; a backend lowers the
pattern ``weight -> quant -> dequant -> float op`` to a quantized kernel.

The weight functions take torch's arguments and reuse jaxq's core:

* :func:`quantize_weight` / :func:`quantize_and_dequantize_weight` are torch's
  ``_quantize_weight`` / ``_quantize_and_dequantize_weight``: ``quantize_per_tensor`` or
  ``quantize_per_channel`` (:mod:`jaxq.core.qtensor`, bit-exact with torch's x86
  kernels) followed by ``dequantize``; float16 casts.
* the ``*_decomposed`` functions are torch's ``quantized_decomposed`` ops (used when
  ``weight_qparams["is_decomposed"]``): ``clamp(round(w * (1/s)) + zp, quant_min,
  quant_max)`` (:func:`jaxq.core.affine.quantize_values`) and ``(q - zp) * s``
  (:func:`jaxq.core.affine.dequantize_values`), with the dtype's bounds unless
  ``quant_min`` / ``quant_max`` are given.

Weights here are in torch's layout (``(out, in)``, ``(out, in / groups, *k)``) with
torch's channel ``axis``; the modules call the same functions on the Flax kernel with the
axis translated by :func:`jaxq.nn.layout.flax_kernel_axis` (an element-wise formula, so
the values are identical).

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> w = jnp.array([[0.12, -0.5], [0.31, 0.9]])
  >>> quantize_and_dequantize_weight(w, jaxq.per_tensor_affine, jaxq.qint8, 0.1, 0,
  ...                                0).tolist()
  [[0.10000000149011612, -0.5], [0.30000001192092896, 0.9000000357627869]]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core.affine import cast_quantized, dequantize_values, quantize_values
from jaxq.core.dtypes import (
    QuantDType, as_quant_dtype, float16, float32, qint32, qint8, quint4x2, quint8)
from jaxq.core.qscheme import QScheme, as_qscheme
from jaxq.core.qtensor import QTensor, quantize_per_channel, quantize_per_tensor
from jaxq.nn.layout import flax_kernel_axis
from jaxq.nn.quantized._utils import QuantizedBuffer

__all__ = ["ReferenceQuantizedModule", "quantize_weight", "quantize_and_dequantize_weight",
           "quantize_weight_decomposed", "dequantize_weight_decomposed",
           "quantize_and_dequantize_weight_decomposed", "require_float_input"]

_SUPPORTED_QSCHEMES = (None, QScheme.per_tensor_affine, QScheme.per_channel_affine,
                       QScheme.per_channel_affine_float_qparams)
_INTEGER_DTYPES = (quint8, qint8, quint4x2, qint32)
_PER_CHANNEL = (QScheme.per_channel_affine, QScheme.per_channel_affine_float_qparams)
# torch's _DTYPE_TO_QVALUE_BOUNDS of the decomposed path (quint4x2 is not supported there).
_DECOMPOSED_DTYPES = (quint8, qint8, qint32)


def _as_weight_qscheme(qscheme: Any) -> QScheme | None:
    return None if qscheme is None else as_qscheme(qscheme, "weight_qparams['qscheme']")


def _as_weight_dtype(dtype: Any) -> QuantDType:
    """A quantized dtype, or float16 / float32 (torch's float weight dtypes)."""
    if dtype is None:
        raise TypeError("weight_qparams['dtype'] must be a dtype (quint8, qint8, qint32, "
                        "quint4x2, float16 or float32); got None")
    if dtype is float or str(dtype).removeprefix("torch.") in ("float", "float32"):
        return float32
    if str(dtype).removeprefix("torch.") in ("half", "float16"):
        return float16
    try:
        return as_quant_dtype(dtype, "weight_qparams['dtype']")
    except TypeError:
        try:
            is_float32 = np.dtype(dtype) == np.float32  # jnp.float32 / np.float32
        except TypeError:
            is_float32 = False
        if is_float32:
            return float32
        raise


def _unsupported(dtype: QuantDType, qscheme: QScheme | None) -> ValueError:
    return ValueError(f"Unsupported dtype and qscheme: {dtype.name}, "
                      f"{None if qscheme is None else qscheme.value}")


def quantize_weight(weight: jax.Array, weight_qscheme: Any, weight_dtype: Any,
                    weight_scale: Any, weight_zero_point: Any, weight_axis_int: int
                    ) -> QTensor | jax.Array:
    """torch's ``_quantize_weight``: a QTensor (float16 weights: a float16 array).

    Args:
      weight: float32 weight of any layout.
      weight_qscheme: per_tensor_affine, per_channel_affine or
        per_channel_affine_float_qparams.
      weight_dtype: quint8, qint8, qint32 (per-tensor and per-channel), quint4x2
        (per-channel), or float16 (cast, any qscheme).
      weight_scale, weight_zero_point: 0-d (per-tensor) or ``[C]`` (per-channel; float
        zero points for per_channel_affine_float_qparams).
      weight_axis_int: the channel axis of ``weight`` (per-channel only).

    Raises:
      ValueError: an unsupported dtype / qscheme combination (torch's message).
    """
    qscheme = _as_weight_qscheme(weight_qscheme)
    dtype = _as_weight_dtype(weight_dtype)
    weight = jnp.asarray(weight)
    if dtype is float16:
        return weight.astype(jnp.float16)
    if qscheme is QScheme.per_tensor_affine and dtype in (quint8, qint8, qint32):
        return quantize_per_tensor(weight, weight_scale, weight_zero_point, dtype)
    if qscheme in _PER_CHANNEL and dtype in _INTEGER_DTYPES:
        return quantize_per_channel(weight, jnp.asarray(weight_scale).reshape(-1),
                                    jnp.asarray(weight_zero_point).reshape(-1),
                                    weight_axis_int, dtype)
    raise _unsupported(dtype, qscheme)


def quantize_and_dequantize_weight(weight: jax.Array, weight_qscheme: Any,
                                   weight_dtype: Any, weight_scale: Any,
                                   weight_zero_point: Any, weight_axis_int: int
                                   ) -> jax.Array:
    """torch's ``_quantize_and_dequantize_weight``: float32, ``weight``'s shape.

    ``weight_qscheme=None`` returns ``weight`` unchanged; float16 weights are cast to
    float16 and back (torch's ``dequantize`` of a float16 tensor).
    """
    qscheme = _as_weight_qscheme(weight_qscheme)
    if qscheme is None:
        return jnp.asarray(weight)
    quantized = quantize_weight(weight, qscheme, weight_dtype, weight_scale,
                                weight_zero_point, weight_axis_int)
    if isinstance(quantized, QTensor):
        return quantized.dequantize()
    return quantized.astype(jnp.float32)


def _decomposed_params(weight: jax.Array, qscheme: QScheme | None, dtype: QuantDType,
                       scale: Any, zero_point: Any, axis: int, quant_min: Any,
                       quant_max: Any) -> tuple[jax.Array, jax.Array, int, int]:
    if dtype not in _DECOMPOSED_DTYPES or qscheme is None:
        raise _unsupported(dtype, qscheme)
    if quant_min is None or quant_max is None:
        quant_min, quant_max = dtype.quant_min, dtype.quant_max
    scale = jnp.asarray(scale, jnp.float32)
    zero_point = jnp.asarray(zero_point)
    if qscheme in _PER_CHANNEL:
        shape = [1] * weight.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return scale, zero_point, int(quant_min), int(quant_max)


def quantize_weight_decomposed(weight: jax.Array, weight_qscheme: Any, weight_dtype: Any,
                               weight_scale: Any, weight_zero_point: Any, weight_axis: int,
                               weight_quant_min: int | None, weight_quant_max: int | None
                               ) -> jax.Array:
    """torch's ``_quantize_weight_decomposed``: the integers (uint8 / int8 / int32).

    ``clamp(round_half_even(w * (1/s)) + zp, quant_min, quant_max)`` per tensor or per
    channel (``weight_axis``), bounds defaulting to the dtype's.
    """
    qscheme = _as_weight_qscheme(weight_qscheme)
    dtype = _as_weight_dtype(weight_dtype)
    weight = jnp.asarray(weight)
    scale, zero_point, qmin, qmax = _decomposed_params(
        weight, qscheme, dtype, weight_scale, weight_zero_point, weight_axis,
        weight_quant_min, weight_quant_max)
    return cast_quantized(quantize_values(weight, scale, zero_point, qmin, qmax), dtype)


def dequantize_weight_decomposed(weight: jax.Array, weight_qscheme: Any, weight_dtype: Any,
                                 weight_scale: Any, weight_zero_point: Any,
                                 weight_axis: int, weight_quant_min: int | None,
                                 weight_quant_max: int | None) -> jax.Array:
    """torch's ``_dequantize_weight_decomposed``: ``(q - zp) * s`` in float32."""
    qscheme = _as_weight_qscheme(weight_qscheme)
    dtype = _as_weight_dtype(weight_dtype)
    weight = jnp.asarray(weight)
    scale, zero_point, _, _ = _decomposed_params(
        weight, qscheme, dtype, weight_scale, weight_zero_point, weight_axis,
        weight_quant_min, weight_quant_max)
    return dequantize_values(weight, scale, zero_point, jnp.float32)


def quantize_and_dequantize_weight_decomposed(
        weight: jax.Array, weight_qscheme: Any, weight_dtype: Any, weight_scale: Any,
        weight_zero_point: Any, weight_axis_int: int, weight_quant_min: int | None,
        weight_quant_max: int | None) -> jax.Array:
    """torch's ``_quantize_and_dequantize_weight_decomposed`` (``None`` qscheme: as is)."""
    if _as_weight_qscheme(weight_qscheme) is None:
        return jnp.asarray(weight)
    args = (weight_qscheme, weight_dtype, weight_scale, weight_zero_point,
            weight_axis_int, weight_quant_min, weight_quant_max)
    return dequantize_weight_decomposed(quantize_weight_decomposed(weight, *args), *args)


def require_float_input(x: Any, name: str) -> jax.Array:
    """Reference modules compute in float: a QTensor input is a TypeError (torch fails
    with "mat1 and mat2 must have the same dtype")."""
    if isinstance(x, QTensor):
        raise TypeError(f"{name} takes a float input (reference quantized modules "
                        f"compute in float); got a quantized {x.dtype.name} QTensor. "
                        "Dequantize it first (jaxq.dequantize)")
    return jnp.asarray(x)


class ReferenceQuantizedModule(nnx.Module):
    """torch's ``ReferenceQuantizedModule``: weight qparams and the quantize-dequantize
    of the weight, for modules holding a Flax ``kernel`` (``(in, out)`` or
    ``(*k, in / groups, out)``; torch's ``weight`` is :attr:`weight`).

    Attributes (set by :meth:`_init_weight_qparams`, as torch names them):
      weight_qscheme: QScheme or None (static).
      weight_dtype: QuantDType (quint8, qint8, quint4x2, qint32, float16 or float32;
        static).
      weight_scale: :class:`QuantizedBuffer`, float32 0-d or ``[C]``.
      weight_zero_point: :class:`QuantizedBuffer`, int32 0-d or ``[C]`` (float32 for
        per_channel_affine_float_qparams). torch keeps the observer's int64; without
        x64 JAX has no int64.
      weight_axis, weight_axis_int: torch's channel axis (a Python int; torch also keeps
        an int32 buffer ``weight_axis``), 0 per-tensor.
      weight_quant_min, weight_quant_max: int or None (decomposed path only).
      is_decomposed: use the ``quantized_decomposed`` formulas.
    """

    _IS_REFERENCE = True

    def _init_weight_qparams(self, weight_qparams: dict[str, Any] | None) -> None:
        if weight_qparams is None:
            weight_qparams = {"qscheme": QScheme.per_tensor_affine, "dtype": quint8,
                              "scale": 1.0, "zero_point": 0}
        if not isinstance(weight_qparams, dict):
            raise TypeError(f"weight_qparams must be a dict (qscheme, dtype, scale, "
                            f"zero_point[, axis, quant_min, quant_max, is_decomposed]); "
                            f"got {type(weight_qparams).__name__}")
        for key in ("qscheme", "dtype"):
            if key not in weight_qparams:
                raise ValueError(f"weight_qparams needs a {key!r} entry; got keys "
                                 f"{sorted(weight_qparams)}")
        qscheme = _as_weight_qscheme(weight_qparams["qscheme"])
        if qscheme not in _SUPPORTED_QSCHEMES:
            raise ValueError(f"qscheme: {qscheme.value} is not supported in reference "
                             f"quantized {self._get_name()} (accepted: None, "
                             "per_tensor_affine, per_channel_affine, "
                             "per_channel_affine_float_qparams)")
        self.weight_qscheme = qscheme
        self.weight_dtype = _as_weight_dtype(weight_qparams["dtype"])
        axis = 0
        if self.weight_dtype in _INTEGER_DTYPES:
            for key in ("scale", "zero_point"):
                if key not in weight_qparams:
                    raise ValueError(f"weight_qparams needs a {key!r} entry for dtype "
                                     f"{self.weight_dtype.name}")
            scale = jnp.asarray(_array(weight_qparams["scale"]), jnp.float32)
            zero_point = jnp.asarray(_array(weight_qparams["zero_point"]))
            float_zero_point = jnp.issubdtype(zero_point.dtype, jnp.floating)
            zero_point = zero_point.astype(jnp.float32 if float_zero_point else jnp.int32)
            if qscheme in _PER_CHANNEL:
                if "axis" not in weight_qparams:
                    raise ValueError(f"weight_qparams needs an 'axis' entry for qscheme "
                                     f"{qscheme.value}")
                axis = int(np.asarray(_array(weight_qparams["axis"])))
        else:
            scale, zero_point = jnp.float32(1.0), jnp.int32(0)
        self.weight_scale = QuantizedBuffer(scale)
        self.weight_zero_point = QuantizedBuffer(zero_point)
        self.weight_axis = axis
        self.weight_axis_int = axis
        self.is_decomposed = bool(weight_qparams.get("is_decomposed", False))
        quant_min = weight_qparams.get("quant_min")
        quant_max = weight_qparams.get("quant_max")
        self.weight_quant_min = None if quant_min is None else int(quant_min)
        self.weight_quant_max = None if quant_max is None else int(quant_max)

    def _get_name(self) -> str:
        return type(self).__name__

    @property
    def weight(self) -> jax.Array:
        """The float weight in torch's layout (a view of the Flax ``kernel``)."""
        from jaxq.nn.layout import kernel_to_torch
        return kernel_to_torch(self.kernel.get_value())

    def _qdq(self, weight: jax.Array, axis: int) -> jax.Array:
        args = (self.weight_qscheme, self.weight_dtype, self.weight_scale.get_value(),
                self.weight_zero_point.get_value(), axis)
        if self.is_decomposed:
            return quantize_and_dequantize_weight_decomposed(
                weight, *args, self.weight_quant_min, self.weight_quant_max)
        return quantize_and_dequantize_weight(weight, *args)

    def _qdq_kernel(self) -> jax.Array:
        """The quantized-dequantized Flax kernel (what the forward computes with)."""
        kernel = jnp.asarray(self.kernel.get_value(), jnp.float32)
        return self._qdq(kernel, flax_kernel_axis(self.weight_axis_int, kernel.ndim))

    def get_weight(self) -> jax.Array:
        """The weight quantized then dequantized, float32 in torch's layout (torch's
        ``get_weight``)."""
        return self._qdq(self.weight, self.weight_axis_int)

    def get_quantized_weight(self) -> QTensor | jax.Array:
        """The quantized weight in torch's layout: a :class:`QTensor` (float16: a
        float16 array; decomposed: the integers, as torch)."""
        args = (self.weight, self.weight_qscheme, self.weight_dtype,
                self.weight_scale.get_value(), self.weight_zero_point.get_value(),
                self.weight_axis_int)
        if self.is_decomposed:
            return quantize_weight_decomposed(*args, self.weight_quant_min,
                                              self.weight_quant_max)
        return quantize_weight(*args)

    def _weight_qparams_repr(self) -> str:
        qscheme = None if self.weight_qscheme is None else self.weight_qscheme.value
        return f"weight_qscheme={qscheme}, weight_dtype={self.weight_dtype.name}"


def _array(value: Any) -> Any:
    """torch tensors (observer outputs) and Python numbers to numpy / jax values."""
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    return value
