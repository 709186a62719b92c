"""QTensor: torch's quantized tensor as a JAX pytree, and the functions that make one.

``quantize_per_tensor``, ``quantize_per_channel`` and ``dequantize`` take torch's
arguments and return what torch returns; a :class:`QTensor` carries torch's quantized
tensor methods (see :mod:`jaxq.core.qtensor_methods`).

Layout (the pytree): the leaves are ``data`` (the integers, in the dtype's storage
dtype), ``scale`` (float32) and ``zero_point`` (int32; float32 for
``per_channel_affine_float_qparams``); ``dtype``, ``qscheme``, the channel axis and,
for packed dtypes, the logical length of the last dimension are static. Per-tensor
parameters are 0-d, per-channel ones have shape ``[C]``. ``quint4x2`` / ``quint2x4``
values are stored packed, two / four per byte along the last dimension (see
:mod:`jaxq.core.packing`), so they really take a half / a quarter of the bytes.

The channel axis is kept counted from the end, and the logical shape is read off
``data``, so a QTensor passes through ``jit`` (as argument and result; a second call
with the same shapes reuses the compiled function), ``tree_map`` and ``vmap`` over a
leading axis: inside ``vmap`` each example is a consistent QTensor, and a QTensor
stacked by ``vmap`` (parameters with leading batch dimensions) still dequantizes.

Rounding (measured against torch 2.13 on x86; see the function docstrings):

* ``quantize_per_tensor`` into quint8/qint8: one rounding of ``fma(x, 1/s, zp)``
  (fbgemm's kernel). jaxq writes ``x * (1/s) + zp`` and XLA contracts it into one
  FMA on CPU, which matches torch bit for bit; a backend that does not contract rounds
  the product first, which differs by 1 only where ``x/s + zp`` is within one rounding
  of a half-integer.
* ``quantize_per_tensor`` into qint32, ``quantize_per_channel`` (all dtypes, integer
  or float zero points): ``rint(fl(x * (1/s)) + zp)``, the zero point added *before*
  rounding (:func:`quantize_values_zero_point_first`).
* ``quantize_per_tensor`` into quint4x2/quint2x4: the canonical
  :func:`jaxq.core.affine.quantize_values`, ``rint(x * (1/s)) + zp``.

The three differ only at exact ties with an odd zero point.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> q = jaxq.quantize_per_tensor(jnp.array([0.0, 0.5, 1.0]), 0.1, 2, jaxq.quint8)
  >>> q.int_repr().tolist(), q.q_scale(), q.q_zero_point()
  ([2, 7, 12], 0.10000000149011612, 2)
  >>> jaxq.dequantize(q).tolist()
  [0.0, 0.5, 1.0]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core import packing
from jaxq.core.affine import check_scale, check_zero_point, dequantize_values, quantize_values
from jaxq.core.float_arithmetic import fma_f32, separately_rounded
from jaxq.core.dtypes import QuantDType, as_quant_dtype, qint32, qint8, quint2x4, quint4x2, quint8
from jaxq.core.qscheme import QScheme, as_qscheme
from jaxq.core.qtensor_methods import QTensorMethods, ValuesIndices

__all__ = ["QTensor", "ValuesIndices", "quantize_per_tensor", "quantize_per_channel",
           "dequantize", "quantize_values_zero_point_first"]

QUANTIZED_DTYPES = (quint8, qint8, qint32, quint4x2, quint2x4)
_ACCEPTED_INPUTS = (jnp.float32, jnp.float16, jnp.bfloat16)


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


# ---------------------------------------------------------------------------
# torch's quantize kernels (the canonical one is jaxq.core.affine.quantize_values).
# ---------------------------------------------------------------------------
def quantize_values_zero_point_first(x: jax.Array, scale: jax.Array, zero_point: jax.Array,
                                     quant_min: float, quant_max: float) -> jax.Array:
    """``clamp(rint(fl32(x * (1/scale)) + zero_point), qmin, qmax)``; NaN -> qmin.

    torch's ``quantize_per_channel`` kernel (integer and float zero points) and its
    qint32 ``quantize_per_tensor``: the product is rounded to float32, the zero point
    added in float32 and the sum rounded half to even, i.e. the zero point is added
    *before* rounding (the canonical :func:`jaxq.core.affine.quantize_values` adds it
    after). Parameters must broadcast against ``x``; computed in float32.
    """
    x = jnp.asarray(x).astype(jnp.float32)
    inverse = 1.0 / jnp.asarray(scale).astype(jnp.float32)
    # torch rounds the product before adding the zero point; keep XLA from fusing them.
    product = separately_rounded(x * inverse)
    q = jnp.round(product + jnp.asarray(zero_point).astype(jnp.float32))
    return jnp.where(jnp.isnan(q), jnp.float32(quant_min), jnp.clip(q, quant_min, quant_max))


def _quantize_values_fused(x, scale, zero_point, quant_min, quant_max):
    # torch.quantize_per_tensor quint8/qint8 (fbgemm): rint(fma(x, 1/s, zp)), one
    # rounding, computed exactly rather than left to XLA's (unreliable) contraction.
    x = x.astype(jnp.float32)
    inverse = 1.0 / scale.astype(jnp.float32)
    q = jnp.round(fma_f32(x, inverse, zero_point.astype(jnp.float32)))
    return jnp.where(jnp.isnan(q), jnp.float32(quant_min), jnp.clip(q, quant_min, quant_max))


_FORMULAS = {"canonical": quantize_values, "zero_point_first": quantize_values_zero_point_first,
             "fused": _quantize_values_fused}


@functools.partial(jax.jit, static_argnums=(3, 4))
def _quantize_kernel(x, scale, zero_point, formula: str, dtype: QuantDType):
    # Jitted so that eager calls compile the same arithmetic as calls under jit.
    q = _FORMULAS[formula](x, scale, zero_point, dtype.quant_min, dtype.quant_max)
    return q.astype(dtype.storage_dtype)


# ---------------------------------------------------------------------------
# Argument checks, with torch's argument names.
# ---------------------------------------------------------------------------
def _check_quantized_dtype(dtype: Any, argument: str = "dtype") -> QuantDType:
    try:
        qdtype = as_quant_dtype(dtype, argument)
    except TypeError:
        qdtype = None
    if qdtype is None or not qdtype.is_quantized:
        accepted = ", ".join(d.name for d in QUANTIZED_DTYPES)
        raise TypeError(f"{argument}={dtype!r} is not a quantized dtype; accepted: {accepted}")
    return qdtype


def _check_input(input: Any, argument: str = "input") -> jax.Array:
    if isinstance(input, QTensor):
        raise TypeError(f"{argument} is already quantized; pass a float array")
    array = jnp.asarray(input)
    if array.dtype not in _ACCEPTED_INPUTS:
        raise TypeError(f"{argument} must be a float32 (or float16/bfloat16, upcast to "
                        f"float32) array; got {array.dtype}")
    return array.astype(jnp.float32)


def _check_integer_zero_point(zero_point: Any, argument: str) -> jax.Array:
    if isinstance(zero_point, bool) or isinstance(zero_point, float):
        raise TypeError(f"{argument}={zero_point!r} must be an integer")
    array = jnp.asarray(zero_point)
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(f"{argument} must be an integer; got dtype {array.dtype}")
    return array.astype(jnp.int32)


def _scalar_param(value: Any, argument: str) -> jax.Array:
    array = jnp.asarray(value)
    if array.size != 1:
        raise ValueError(f"{argument} must be a scalar (or have one element); got shape "
                         f"{array.shape}")
    return array.reshape(())


# ---------------------------------------------------------------------------
# The pytree.
# ---------------------------------------------------------------------------
@jax.tree_util.register_pytree_node_class
class QTensor(QTensorMethods):
    """A quantized tensor: integer ``data`` plus ``scale`` and ``zero_point``.

    Build one with :func:`quantize_per_tensor`, :func:`quantize_per_channel` or
    :meth:`from_int_values`; the constructor takes the stored (packed) data as is.

    Attributes:
      data: integers in ``dtype.storage_dtype``; for quint4x2/quint2x4 packed along the
        last dimension (shape ``[..., ceil(n * bits / 8)]``; a 0-d tensor is one byte).
      scale: float32, shape ``[]`` (per-tensor) or ``[C]`` (per-channel), with any
        leading batch dimensions a ``vmap`` stacked on.
      zero_point: int32 (float32 for per_channel_affine_float_qparams), like ``scale``.
      dtype: the :class:`~jaxq.core.dtypes.QuantDType` (static).
      axis_from_end: per-channel axis as a negative index (static), None per-tensor.
      last_dim: logical length of the last dimension for packed dtypes (static).
    """

    __slots__ = ("data", "scale", "zero_point", "dtype", "_qscheme", "axis_from_end",
                 "last_dim")

    def __init__(self, data: jax.Array, scale: jax.Array, zero_point: jax.Array,
                 dtype: Any, qscheme: Any = QScheme.per_tensor_affine,
                 axis: int | None = None, last_dim: int | None = None):
        self.dtype = _check_quantized_dtype(dtype)
        self._qscheme = as_qscheme(qscheme)
        self.data = jnp.asarray(data)
        if self.data.dtype != self.dtype.storage_dtype:
            raise TypeError(f"data has dtype {self.data.dtype} but dtype={self.dtype!r} is "
                            f"stored as {self.dtype.storage_dtype}")
        self.scale = jnp.asarray(scale, jnp.float32)
        float_zero_point = self._qscheme is QScheme.per_channel_affine_float_qparams
        self.zero_point = jnp.asarray(zero_point,
                                      jnp.float32 if float_zero_point else jnp.int32)
        if self.dtype.is_packed and self.data.ndim and last_dim is None:
            raise ValueError("last_dim (the unpacked length of the last dimension) is "
                             "required for packed dtypes")
        self.last_dim = last_dim if self.dtype.is_packed and self.data.ndim else None
        if self._qscheme.is_per_channel:
            if axis is None:
                raise ValueError(f"axis is required for qscheme={self._qscheme!r}")
            ndim = len(self.shape)
            if not -ndim <= axis < ndim:
                raise ValueError(f"axis={axis} is out of range for a {ndim}-d tensor")
            self.axis_from_end = axis % ndim - ndim
        elif axis is not None:
            raise ValueError(f"axis must be None for qscheme={self._qscheme!r}")
        else:
            self.axis_from_end = None

    # -- pytree -----------------------------------------------------------------
    def tree_flatten(self):
        return ((self.data, self.scale, self.zero_point),
                (self.dtype, self._qscheme, self.axis_from_end, self.last_dim))

    @classmethod
    def tree_unflatten(cls, aux, children):
        # No validation: transformations put tracers, None or sentinels in the leaves.
        self = object.__new__(cls)
        self.data, self.scale, self.zero_point = children
        self.dtype, self._qscheme, self.axis_from_end, self.last_dim = aux
        return self

    def vmap_axes(self, data_axis: int | None = 0, params_axis: int | None = None
                  ) -> QTensor:
        """An ``in_axes``/``out_axes`` spec for ``vmap`` with this QTensor's structure.

        ``jax.vmap(f, in_axes=(q.vmap_axes(),))(q)`` maps over the data's leading axis
        and shares the parameters (``vmap(f)(q)`` alone would also map the 0-d scale).
        For packed dtypes ``data_axis`` must not be the last axis.
        """
        return self.tree_unflatten(self.tree_flatten()[1],
                                   (data_axis, params_axis, params_axis))

    # -- construction -----------------------------------------------------------
    @classmethod
    def from_int_values(cls, values: jax.Array, scale: Any, zero_point: Any, dtype: Any,
                        qscheme: Any = None, axis: int | None = None) -> QTensor:
        """A QTensor from unpacked integer values of the logical shape (packs if needed).

        The analogue of torch's ``_make_per_tensor_quantized_tensor`` /
        ``_make_per_channel_quantized_tensor``; values are not range-checked.
        ``qscheme`` defaults to per_tensor_affine, or per_channel_affine when ``axis``
        is given (per_channel_affine_float_qparams for float zero points).
        """
        qdtype = _check_quantized_dtype(dtype)
        values = jnp.asarray(values)
        if qscheme is None:
            if axis is None:
                qscheme = QScheme.per_tensor_affine
            elif jnp.issubdtype(jnp.asarray(zero_point).dtype, jnp.floating):
                qscheme = QScheme.per_channel_affine_float_qparams
            else:
                qscheme = QScheme.per_channel_affine
        if qdtype.is_packed:
            if values.ndim == 0:
                data = packing.pack(values.reshape(1), qdtype.bits).reshape(())
                return cls(data, scale, zero_point, qdtype, qscheme, axis)
            data = packing.pack(values, qdtype.bits)
            return cls(data, scale, zero_point, qdtype, qscheme, axis, values.shape[-1])
        return cls(values.astype(qdtype.storage_dtype), scale, zero_point, qdtype, qscheme,
                   axis)

    # -- what torch calls the tensor's metadata ----------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The logical shape (unpacked)."""
        if self.last_dim is None:
            return tuple(self.data.shape)
        return tuple(self.data.shape[:-1]) + (self.last_dim,)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_quantized(self) -> bool:
        return True

    def dim(self) -> int:
        return self.ndim

    def size(self, dim: int | None = None):
        """torch's ``size()``: the shape, or one entry of it."""
        if dim is None:
            return self.shape
        return self.shape[self._normalize_dim(dim)]

    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def qscheme(self) -> QScheme:
        return self._qscheme

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d QTensor")
        return self.shape[0]

    @functools.partial(jax.jit, static_argnums=())
    def int_values(self) -> jax.Array:
        """The integer values in the logical shape, unpacked (``int_repr()`` for 8/32 bit)."""
        if not self.dtype.is_packed:
            return self.data
        if self.last_dim is None:
            return packing.unpack(self.data.reshape(1), self.dtype.bits, 1).reshape(())
        return packing.unpack(self.data, self.dtype.bits, self.last_dim)

    def _param_shape(self, num_channels: bool) -> tuple[int, ...]:
        # Parameters broadcast against the values; leading parameter dimensions are
        # batch dimensions that vmap stacked on.
        ndim = self.ndim
        batch = self.scale.shape[:-1] if num_channels else self.scale.shape
        shape = list(batch) + [1] * (ndim - len(batch))
        if num_channels:
            shape[ndim + self.axis_from_end] = self.scale.shape[-1]
        return tuple(shape)

    def _broadcast_params(self) -> tuple[jax.Array, jax.Array]:
        shape = self._param_shape(self._qscheme.is_per_channel)
        return self.scale.reshape(shape), self.zero_point.reshape(shape)

    @jax.jit
    def dequantize(self) -> jax.Array:
        """``(q - zero_point) * scale`` as float32, torch's exact arithmetic."""
        scale, zero_point = self._broadcast_params()
        return dequantize_values(self.int_values(), scale, zero_point, jnp.float32)

    def __repr__(self) -> str:
        if self._qscheme.is_per_channel:
            params = (f"scale={self.scale}, zero_point={self.zero_point}, "
                      f"axis={self.ndim + self.axis_from_end}")
        else:
            params = f"scale={self.scale}, zero_point={self.zero_point}"
        try:
            values = np.array2string(np.asarray(self.dequantize()), separator=", ")
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                TypeError):
            values = "<traced>"
        return (f"QTensor({values}, size={self.shape}, dtype={self.dtype!r}, "
                f"quantization_scheme={self._qscheme!r}, {params})")


# ---------------------------------------------------------------------------
# torch.quantize_per_tensor / quantize_per_channel / dequantize.
# ---------------------------------------------------------------------------
def _quantize(x: jax.Array, scale, zero_point, qdtype: QuantDType, formula: str,
              qscheme: QScheme, axis: int | None) -> QTensor:
    values = _quantize_kernel(x, scale, zero_point, formula, qdtype)
    if axis is not None:
        scale, zero_point = scale.reshape(-1), zero_point.reshape(-1)
    return QTensor.from_int_values(values, scale, zero_point, qdtype, qscheme, axis)


def quantize_per_tensor(input: Any, scale: Any, zero_point: Any, dtype: Any
                        ) -> QTensor | tuple[QTensor, ...]:
    """torch.quantize_per_tensor: one scale and zero point for the whole tensor.

    Args:
      input: float32 array of any shape (float16/bfloat16 are upcast exactly; torch
        accepts float32 only), or a list/tuple of arrays, as in torch.
      scale: positive float (Python float or 0-d/1-element array); a 1-d array with one
        entry per tensor when ``input`` is a list.
      zero_point: integer inside the dtype's range; a 1-d array for a list ``input``.
      dtype: quint8, qint8, qint32, quint4x2 or quint2x4 (jaxq, torch or name).

    Returns:
      A per_tensor_affine :class:`QTensor` (a tuple of them for a list ``input``).

    Rounding: quint8/qint8 round ``fma(x, 1/s, zp)`` once, as torch's x86 kernel;
    qint32 rounds ``fl(x * (1/s)) + zp``; quint4x2/quint2x4 use the canonical
    ``rint(x * (1/s)) + zp``. These differ only at exact ties with an odd zero point.
    Special values: NaN -> quant_min, +inf -> quant_max, -inf -> quant_min (torch gives
    quant_max for NaN with quint8/qint8 and arbitrary values for sub-byte dtypes, whose
    kernel also overflows when ``|x/s|`` exceeds 2**31).

    Raises:
      TypeError: ``dtype`` is not one of torch's quantized dtypes, ``input`` is not
        float, or ``zero_point`` is not an integer.
      ValueError: ``scale`` is not positive (torch accepts it and produces garbage),
        ``zero_point`` lies outside the dtype's range, or list lengths differ.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> jaxq.quantize_per_tensor(jnp.array([-1.0, 1.0]), 0.5, 0, jaxq.qint8).int_repr()
      Array([-2,  2], dtype=int8)
    """
    qdtype = _check_quantized_dtype(dtype)
    if isinstance(input, (list, tuple)):
        scales, zero_points = jnp.asarray(scale).reshape(-1), jnp.asarray(zero_point).reshape(-1)
        if scales.shape[0] != len(input) or zero_points.shape[0] != len(input):
            raise ValueError(f"scale ({scales.shape[0]}) and zero_point "
                             f"({zero_points.shape[0]}) need one entry per tensor in input "
                             f"({len(input)})")
        return tuple(quantize_per_tensor(x, s, z, qdtype)
                     for x, s, z in zip(input, scales, zero_points))
    x = _check_input(input)
    scale = _scalar_param(scale, "scale").astype(jnp.float32)
    zero_point = _check_integer_zero_point(_scalar_param(zero_point, "zero_point"),
                                           "zero_point")
    check_scale(scale, "scale")
    check_zero_point(zero_point, qdtype.quant_min, qdtype.quant_max, "zero_point")
    formula = ("canonical" if qdtype.is_packed else
               "zero_point_first" if qdtype is qint32 else "fused")
    return _quantize(x, scale, zero_point, qdtype, formula, QScheme.per_tensor_affine, None)


def quantize_per_channel(input: Any, scales: Any, zero_points: Any, axis: int, dtype: Any
                         ) -> QTensor:
    """torch.quantize_per_channel: one scale and zero point per slice along ``axis``.

    Args:
      input: float32 array with at least one dimension (float16/bfloat16 upcast).
      scales: positive floats, shape ``[input.shape[axis]]``.
      zero_points: shape ``[input.shape[axis]]``; integers inside the dtype's range give
        per_channel_affine, floats give per_channel_affine_float_qparams (any value,
        as torch).
      axis: the channel dimension; negative values count from the end (torch accepts
        only ``0 <= axis < input.ndim``).
      dtype: quint8, qint8 or qint32 with integer zero points; quint8, qint8,
        quint4x2 or quint2x4 with float zero points (the combinations torch has).

    Returns:
      A per-channel :class:`QTensor` with float32 scales and int32 (or float32) zero
      points (torch returns float64 scales and int64 zero points).

    Rounding: ``rint(fl(x * (1/s)) + zp)`` (zero point added before rounding), NaN ->
    quant_min (torch gives 0), +-inf -> quant_max / quant_min.

    Raises:
      TypeError: bad ``dtype``, non-float ``input``, integer zero points with a packed
        dtype (torch has no such kernel) or float zero points with qint32 (torch crashes).
      ValueError: ``axis`` out of range, ``scales``/``zero_points`` not 1-d or of the
        wrong length, a scale that is not positive, an integer zero point outside the
        dtype's range.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> q = jaxq.quantize_per_channel(jnp.ones((2, 3)), jnp.array([0.5, 0.25, 1.0]),
      ...                               jnp.array([0, 1, 2]), 1, jaxq.quint8)
      >>> q.int_repr().tolist()
      [[2, 5, 3], [2, 5, 3]]
    """
    qdtype = _check_quantized_dtype(dtype)
    x = _check_input(input)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis={axis!r} must be an int")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis} is out of range for an input with {x.ndim} "
                         f"dimensions (expected [{-x.ndim}, {x.ndim}))")
    axis = int(axis) % x.ndim
    scales, zero_points = jnp.asarray(scales), jnp.asarray(zero_points)
    for name, param in (("scales", scales), ("zero_points", zero_points)):
        if param.ndim != 1:
            raise ValueError(f"{name} must be 1-d; got shape {param.shape}")
        if param.shape[0] != x.shape[axis]:
            raise ValueError(f"{name} has {param.shape[0]} entries but input.shape[{axis}] "
                             f"= {x.shape[axis]}")
    scales = scales.astype(jnp.float32)
    check_scale(scales, "scales")
    float_qparams = jnp.issubdtype(zero_points.dtype, jnp.floating)
    if float_qparams:
        if qdtype is qint32:
            raise TypeError("float zero_points (per_channel_affine_float_qparams) are not "
                            "supported with dtype=qint32; use quint8, qint8, quint4x2 or "
                            "quint2x4")
        zero_points = zero_points.astype(jnp.float32)
        qscheme = QScheme.per_channel_affine_float_qparams
    else:
        if qdtype.is_packed:
            raise TypeError(f"dtype={qdtype!r} needs float zero_points "
                            "(per_channel_affine_float_qparams); torch has no integer "
                            "zero-point kernel for packed dtypes")
        zero_points = _check_integer_zero_point(zero_points, "zero_points")
        check_zero_point(zero_points, qdtype.quant_min, qdtype.quant_max, "zero_points")
        qscheme = QScheme.per_channel_affine
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return _quantize(x, scales.reshape(shape), zero_points.reshape(shape), qdtype,
                     "zero_point_first", qscheme, axis)


def dequantize(tensor: Any) -> jax.Array | list[jax.Array]:
    """torch.dequantize: float32 values of a QTensor, or of each QTensor in a list/tuple.

    Non-quantized arrays pass through unchanged (as torch returns a float tensor as is).

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> q = jaxq.quantize_per_tensor(jnp.array([0.26]), 0.1, 0, jaxq.quint8)
      >>> jaxq.dequantize(q).tolist(), [a.shape for a in jaxq.dequantize([q, q])]
      ([0.30000001192092896], [(1,), (1,)])
    """
    if isinstance(tensor, QTensor):
        return tensor.dequantize()
    if isinstance(tensor, (list, tuple)):
        return [dequantize(t) for t in tensor]
    return jnp.asarray(tensor)


def _quantize_like(q: QTensor, src: jax.Array) -> jax.Array:
    """Quantizes float ``src`` (of ``q``'s shape) with ``q``'s parameters, as torch's
    ``copy_`` does: unpacked integer values."""
    if q.qscheme().is_per_channel:
        scale, zero_point = q._broadcast_params()
    else:
        scale, zero_point = q.scale, q.zero_point
    if q.dtype.is_packed:
        formula = "canonical"
    elif q.qscheme().is_per_channel or q.dtype is qint32:
        formula = "zero_point_first"
    else:
        formula = "fused"
    return _quantize_kernel(src, scale, zero_point, formula, q.dtype)
