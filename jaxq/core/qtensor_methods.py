"""torch's quantized-tensor methods for :class:`jaxq.QTensor`.

Each method returns what torch returns on a quantized tensor (measured on torch
2.13); torch's in-place methods (``copy_``, ``resize_``) return a new QTensor.
Indices that torch returns as int64 are int32 here (no int64 without x64).

Which methods torch allows where, and what jaxq does:

* per_channel_affine_float_qparams tensors: ``select``, ``[]``, ``clone`` and ``copy_``
  from a float array raise RuntimeError (torch fails on them too, or truncates the
  float zero point of what it selects).
* A ``select``/``[]`` that leaves a single channel gives a per-tensor QTensor with that
  channel's parameters (torch's rule).
* per-channel tensors: ``as_strided``, ``expand``, ``max``, ``min``, ``mean``, ``sort``,
  ``topk``, ``resize_``, ``q_scale``, ``q_zero_point`` raise RuntimeError as in torch;
  ``q_per_channel_*`` raise RuntimeError on per-tensor ones. ``view``/``flatten``
  must keep the channel dimension and the dimensions before it (torch accepts other
  shapes and then fails or scales the wrong elements on use: RuntimeError here).
  ``select``/``[]`` on the channel dimension give a per-tensor QTensor with that
  channel's parameters (as torch); on a dimension after it jaxq keeps the channel axis
  right (torch decrements it and then fails to dequantize).
* quint4x2/quint2x4: ``clone``, ``as_strided``, ``expand``, ``topk``, ``copy_`` and
  ``mean`` over trailing dimensions (the integer kernel) raise NotImplementedError as
  in torch (missing kernels); ``mean`` over other dimensions works as in torch; ``select``, ``[]``, ``max``, ``min`` and ``sort`` raise NotImplementedError
  too, because torch applies them to the packed bytes and returns wrong values.
* Comparisons (``eq``, ``ne``, ``lt``, ...) compare dequantized values and return a
  bool array, as torch. Under ``jit``, ``q_scale``/``q_zero_point`` return 0-d arrays
  and ``equal`` a traced bool (concrete calls return Python numbers/bools).
* ``mean`` over trailing dimensions (or all) averages the integers and rounds half to
  even, as torch's integer kernel; over other dimensions it dequantizes, averages and
  requantizes with torch's quantize_per_tensor rounding (bit-exact over one dimension;
  over several non-trailing dimensions torch's float summation order differs and the
  result can differ by 1 at a rounding tie). torch sums integers in int64; jaxq sums
  int32, which can only overflow for qint32 data.
* Methods other than ``dequantize`` expect an unbatched QTensor (use them inside
  ``vmap``, not on a QTensor that ``vmap`` stacked).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core import packing
from jaxq.core.affine import exact_divide
from jaxq.core.float_arithmetic import separately_rounded
from jaxq.core.qscheme import QScheme

_KEEP = object()


def _compiled(*static_argnames: str):
    """Runs a method as one jitted program: one compilation per shape and static
    arguments instead of one per jnp operation in eager mode (checks still raise, as
    they only read static information)."""
    def decorate(method):
        return functools.wraps(method)(jax.jit(method, static_argnames=static_argnames))
    return decorate


class ValuesIndices(NamedTuple):
    """``(values, indices)`` as torch's max/min/sort/topk return types."""

    values: Any
    indices: jax.Array


def _shape_argument(shape: Sequence[Any]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _infer_shape(shape: tuple[int, ...], numel: int) -> tuple[int, ...]:
    unknown = [i for i, s in enumerate(shape) if s == -1]
    if len(unknown) > 1 or any(s < -1 for s in shape):
        raise RuntimeError(f"shape '{list(shape)}' is invalid: only one -1 is allowed and "
                           "sizes must be non-negative")
    known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
    if unknown:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _is_basic_index(key: Any) -> bool:
    return (key is None or key is Ellipsis or isinstance(key, slice)
            or (isinstance(key, (int, np.integer)) and not isinstance(key, bool)))


class QTensorMethods:
    """Mixin with torch's quantized-tensor methods; see the module docstring."""

    __slots__ = ()

    # -- helpers -------------------------------------------------------------------
    def _normalize_dim(self, dim: int, ndim: int | None = None) -> int:
        ndim = self.ndim if ndim is None else ndim
        bound = max(ndim, 1)
        if not -bound <= dim < bound:
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-bound}, {bound - 1}], but got {dim})")
        return dim % bound

    def _require_per_tensor(self, method: str, message: str | None = None) -> None:
        if self._qscheme.is_per_channel:
            raise RuntimeError(message or f"{method}() only works on per-tensor quantized "
                               f"tensors; this one is {self._qscheme.value}")

    def _require_unpacked(self, method: str, reason: str = "torch has no kernel for it"
                          ) -> None:
        if self.dtype.is_packed:
            raise NotImplementedError(f"{method}() is not supported for {self.dtype.name} "
                                      f"({reason})")

    def _new(self, values: jax.Array, scale: Any = _KEEP, zero_point: Any = _KEEP,
             qscheme: Any = _KEEP, axis: Any = _KEEP):
        """A QTensor of the same kind from unpacked ``values``."""
        scale = self.scale if scale is _KEEP else scale
        zero_point = self.zero_point if zero_point is _KEEP else zero_point
        qscheme = self._qscheme if qscheme is _KEEP else qscheme
        if axis is _KEEP:
            axis = None if self.axis_from_end is None else jnp.ndim(values) + self.axis_from_end
        return type(self).from_int_values(values, scale, zero_point, self.dtype, qscheme,
                                          axis)

    def _require_strided(self, method: str) -> None:
        if self._qscheme is QScheme.per_channel_affine_float_qparams:
            raise RuntimeError(f"{method}() is not supported for per_channel_affine_float_qparams "
                               "tensors (torch: 'Setting strides is possible only on uniformly "
                               "or per channel quantized tensors')")

    def _sub_tensor(self, values: jax.Array, scale: jax.Array, zero_point: jax.Array,
                    axis: int):
        # torch's create_subtensor_quantizer: one channel left -> per-tensor.
        if scale.shape[-1] == 1:
            return self._new(values, scale.reshape(()), zero_point.reshape(()),
                             QScheme.per_tensor_affine, None)
        return self._new(values, scale, zero_point, axis=axis)

    # -- shape methods ------------------------------------------------------------------
    def view(self, *shape: int):
        """A QTensor with the same values in a new shape (one size may be -1)."""
        return self._view(_infer_shape(_shape_argument(shape), self.numel()))

    @_compiled("new_shape")
    def _view(self, new_shape: tuple[int, ...]):
        axis = None
        if self._qscheme.is_per_channel:
            axis = self.q_per_channel_axis()
            channels = self.scale.shape[-1]
            if (axis >= len(new_shape) or new_shape[axis] != channels
                    or np.prod(new_shape[:axis]) != np.prod(self.shape[:axis])):
                raise RuntimeError(
                    f"view({list(new_shape)}) of a per-channel QTensor of shape "
                    f"{list(self.shape)} must keep the channel dimension {axis} (size "
                    f"{channels}) and the elements before it")
        return self._new(self.int_values().reshape(new_shape), axis=axis)

    reshape = view

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        """torch.flatten: merge dimensions ``start_dim..end_dim`` (a 0-d tensor -> [1])."""
        if self.ndim == 0:
            return self.view(1)
        start, end = self._normalize_dim(start_dim), self._normalize_dim(end_dim)
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after "
                               "end_dim")
        if start == end:
            return self
        shape = self.shape
        merged = int(np.prod(shape[start:end + 1], dtype=np.int64))
        return self.view(shape[:start] + (merged,) + shape[end + 1:])

    def as_strided(self, size: Sequence[int], stride: Sequence[int], storage_offset: int = 0):
        """Elements at ``storage_offset + sum(i_k * stride_k)`` of the flat values."""
        return self._as_strided(tuple(int(s) for s in size), tuple(int(s) for s in stride),
                                int(storage_offset))

    @_compiled("size", "stride", "storage_offset")
    def _as_strided(self, size, stride, storage_offset):
        self._require_per_tensor("as_strided", "Setting strides is possible only on "
                                 "uniformly quantized tensor (as_strided on a per-channel "
                                 "QTensor)")
        self._require_unpacked("as_strided")
        if len(size) != len(stride):
            raise RuntimeError(f"mismatch in length of strides and shape ({len(stride)} vs "
                               f"{len(size)})")
        index = np.full(size, int(storage_offset), dtype=np.int64)
        for d, (n, st) in enumerate(zip(size, stride)):
            index = index + (np.arange(n) * st).reshape((n,) + (1,) * (len(size) - d - 1))
        if index.size and (index.min() < 0 or index.max() >= self.numel()):
            raise RuntimeError(f"as_strided: size {list(size)}, stride {list(stride)} and "
                               f"storage_offset {storage_offset} reach outside the "
                               f"{self.numel()} elements")
        flat = self.int_values().reshape(-1)
        return self._new(flat[jnp.asarray(index, jnp.int32)])

    def expand(self, *sizes: int):
        """Broadcast to ``sizes`` (-1 keeps a dimension), torch's rules."""
        return self._expand(_shape_argument(sizes))

    @_compiled("sizes")
    def _expand(self, sizes: tuple[int, ...]):
        self._require_per_tensor("expand", "Setting strides is possible only on uniformly "
                                 "quantized tensor (expand on a per-channel QTensor)")
        self._require_unpacked("expand")
        shape = self.shape
        if len(sizes) < len(shape):
            raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be "
                               f"greater or equal to the number of dimensions in the tensor "
                               f"({len(shape)})")
        lead = len(sizes) - len(shape)
        target = []
        for i, s in enumerate(sizes):
            if i < lead:
                if s < 0:
                    raise RuntimeError(f"expand: the expanded size {s} is not allowed in a "
                                       "leading, non-existing dimension")
                target.append(s)
                continue
            old = shape[i - lead]
            if s == -1:
                s = old
            if old != 1 and s != old:
                raise RuntimeError(f"The expanded size of the tensor ({s}) must match the "
                                   f"existing size ({old}) at non-singleton dimension {i}.")
            target.append(s)
        return self._new(jnp.broadcast_to(self.int_values(), tuple(target)))

    @_compiled("dim", "index")
    def select(self, dim: int, index: int):
        """The slice at ``index`` of ``dim``; on the channel dimension a per-tensor QTensor."""
        self._require_strided("select")
        self._require_unpacked("select", "torch selects from the packed bytes and "
                               "returns wrong values")
        dim = self._normalize_dim(dim)
        size = self.shape[dim] if self.ndim else 1
        if not -size <= index < size:
            raise IndexError(f"select(): index {index} out of range for tensor of size "
                             f"{list(self.shape)} at dimension {dim}")
        index = int(index) % size
        values = jax.lax.index_in_dim(self.int_values(), index, axis=dim, keepdims=False)
        if self._qscheme.is_per_channel:
            axis = self.q_per_channel_axis()
            if dim == axis:
                return self._sub_tensor(values, self.scale[index:index + 1],
                                        self.zero_point[index:index + 1], None)
            return self._sub_tensor(values, self.scale, self.zero_point,
                                    axis - 1 if dim < axis else axis)
        return self._new(values)

    def __getitem__(self, key: Any):
        """Basic indexing (ints, slices, None, ...); integer/bool arrays for per-tensor."""
        self._require_strided("__getitem__")
        self._require_unpacked("__getitem__", "torch indexes the packed bytes and returns "
                               "wrong values")
        key = key if isinstance(key, tuple) else (key,)
        values = self.int_values()[key]
        if not self._qscheme.is_per_channel:
            return self._new(values)
        if not all(_is_basic_index(k) for k in key):
            raise RuntimeError("indexing a per-channel QTensor with arrays is not supported "
                               "(torch fails too); use ints, slices, None and ...")
        specified = sum(k is not None and k is not Ellipsis for k in key)
        expanded: list[Any] = []
        for k in key:
            expanded += [slice(None)] * (self.ndim - specified) if k is Ellipsis else [k]
        axis, in_dim, out_dim = self.q_per_channel_axis(), 0, 0
        scale, zero_point, new_axis = self.scale, self.zero_point, None
        for k in expanded:
            if k is None:
                out_dim += 1
                continue
            if in_dim == axis:
                if isinstance(k, slice):
                    scale, zero_point, new_axis = scale[k], zero_point[k], out_dim
                else:
                    channel = int(k) % self.shape[axis]
                    scale = scale[channel:channel + 1]
                    zero_point = zero_point[channel:channel + 1]
            in_dim += 1
            out_dim += isinstance(k, slice)
        if new_axis is None and in_dim <= axis:
            new_axis = out_dim + axis - in_dim
        if not any(k is not None for k in expanded):  # no select or slice: torch's alias
            return self._new(values, axis=new_axis)
        return self._sub_tensor(values, scale, zero_point, new_axis)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # -- comparisons of dequantized values --------------------------------------------
    @_compiled("op")
    def _compare(self, op, other: Any) -> jax.Array:
        other = other.dequantize() if isinstance(other, QTensorMethods) else jnp.asarray(other)
        return op(self.dequantize(), other)

    def eq(self, other: Any) -> jax.Array:
        """``dequantize(self) == dequantize(other)`` (other: QTensor, array or scalar)."""
        return self._compare(operator.eq, other)

    def ne(self, other: Any) -> jax.Array:
        return self._compare(operator.ne, other)

    def ge(self, other: Any) -> jax.Array:
        return self._compare(operator.ge, other)

    def le(self, other: Any) -> jax.Array:
        return self._compare(operator.le, other)

    def gt(self, other: Any) -> jax.Array:
        return self._compare(operator.gt, other)

    def lt(self, other: Any) -> jax.Array:
        return self._compare(operator.lt, other)

    def equal(self, other: Any):
        """True when dtype, qscheme, parameters, shape and integers all match (torch)."""
        if not isinstance(other, QTensorMethods):
            return False
        if (other.dtype is not self.dtype or other._qscheme is not self._qscheme
                or other.shape != self.shape or other.axis_from_end != self.axis_from_end
                or other.scale.shape != self.scale.shape):
            return False
        same = (jnp.all(other.scale == self.scale) & jnp.all(other.zero_point == self.zero_point)
                & jnp.all(other.int_values() == self.int_values()))
        return bool(same) if not isinstance(same, jax.core.Tracer) else same

    # -- copies --------------------------------------------------------------------------
    def clone(self):
        """A new QTensor with the same contents."""
        if self._qscheme is QScheme.per_channel_affine_float_qparams:
            raise RuntimeError("clone for quantized Tensor only works for PerTensorAffine and "
                               "PerChannelAffine qscheme (torch)")
        self._require_unpacked("clone")
        return type(self).tree_unflatten(*reversed(self.tree_flatten()))

    def copy_(self, src: Any):
        """torch's ``copy_``, returning the result instead of mutating ``self``.

        A QTensor ``src`` (same dtype and qscheme, broadcast to ``self``'s shape) is
        taken with its own parameters; a float32 array of ``self``'s shape is quantized
        with ``self``'s parameters (torch's rounding, see :mod:`jaxq.core.qtensor`).
        """
        self._require_unpacked("copy_")
        if isinstance(src, QTensorMethods):
            if src.qscheme() is not self._qscheme:
                raise RuntimeError(f"Quantized Copy only works with same qscheme (self "
                                   f"{self._qscheme.value}, src {src.qscheme().value})")
            if src.dtype is not self.dtype:
                raise RuntimeError(f"copy_ between quantized tensors needs the same dtype "
                                   f"(self {self.dtype.name}, src {src.dtype.name})")
            try:
                values = jnp.broadcast_to(src.int_values(), self.shape)
            except ValueError as error:
                raise RuntimeError(f"src of shape {list(src.shape)} does not broadcast to "
                                   f"{list(self.shape)}") from error
            axis = None if src.axis_from_end is None else self.ndim + src.axis_from_end
            return self._new(values, src.scale, src.zero_point, src.qscheme(), axis)
        if self._qscheme is QScheme.per_channel_affine_float_qparams:
            raise RuntimeError("copy_ from a float array into a per_channel_affine_float_qparams "
                               "QTensor is not supported (torch fails with 'expected scalar "
                               "type Long but found Float')")
        array = jnp.asarray(src)
        if array.dtype != jnp.float32:
            raise TypeError(f"src must be a float32 array or a QTensor; got {array.dtype}")
        if array.shape != self.shape:
            raise ValueError(f"src has shape {array.shape}; quantized copy needs self's "
                             f"shape {self.shape}")
        from jaxq.core.qtensor import _quantize_like  # the quantize kernels live there
        return self._new(_quantize_like(self, array))

    def resize_(self, *sizes: int):
        """torch's ``resize_`` (per-tensor): keeps the flat prefix; new elements hold the
        zero point (torch leaves them uninitialized)."""
        self._require_per_tensor("resize_", "Can only resize quantized tensors with "
                                 "per-tensor schemes!")
        return self._resize(_shape_argument(sizes))

    @_compiled("sizes")
    def _resize(self, sizes: tuple[int, ...]):
        if any(s < 0 for s in sizes):
            raise RuntimeError(f"resize_: sizes must be non-negative; got {list(sizes)}")
        numel = int(np.prod(sizes, dtype=np.int64))
        flat = self.int_values().reshape(-1)
        if numel <= flat.shape[0]:
            flat = flat[:numel]
        else:
            fill = jnp.broadcast_to(self.zero_point.astype(flat.dtype), (numel - flat.shape[0],))
            flat = jnp.concatenate([flat, fill])
        return self._new(flat.reshape(sizes))

    # -- integer and parameter access -----------------------------------------------------
    @_compiled()
    def int_repr(self) -> jax.Array:
        """The stored integers; for quint4x2/quint2x4 torch's 1-d packed bytes of the
        flattened tensor (``ceil(numel * bits / 8)`` uint8)."""
        if not self.dtype.is_packed:
            return self.data
        return packing.pack(self.int_values().reshape(-1), self.dtype.bits)

    @staticmethod
    def _python_number(value: jax.Array, kind):
        return value if isinstance(value, jax.core.Tracer) else kind(value)

    def q_scale(self):
        """The scale as a Python float (a 0-d array under jit)."""
        self._require_per_tensor("q_scale", f"q_scale() needs a per-tensor QTensor; this one "
                                 f"is {self._qscheme.value} (use q_per_channel_scales())")
        return self._python_number(self.scale, float)

    def q_zero_point(self):
        """The zero point as a Python int (a 0-d array under jit)."""
        self._require_per_tensor("q_zero_point", "q_zero_point() needs a per-tensor "
                                 f"QTensor; this one is {self._qscheme.value} (use "
                                 "q_per_channel_zero_points())")
        return self._python_number(self.zero_point, int)

    def _require_per_channel(self, method: str) -> None:
        if not self._qscheme.is_per_channel:
            raise RuntimeError(f"{method}() needs a per-channel QTensor; this one is "
                               f"{self._qscheme.value}")

    def q_per_channel_scales(self) -> jax.Array:
        """float32 ``[C]`` (torch: float64)."""
        self._require_per_channel("q_per_channel_scales")
        return self.scale

    def q_per_channel_zero_points(self) -> jax.Array:
        """int32 ``[C]`` (float32 for float qparams; torch: int64 / float)."""
        self._require_per_channel("q_per_channel_zero_points")
        return self.zero_point

    def q_per_channel_axis(self) -> int:
        self._require_per_channel("q_per_channel_axis")
        return self.ndim + self.axis_from_end

    # -- reductions on the integers -----------------------------------------------------------
    def _reduce_checks(self, method: str, per_channel_message: str, packed_reason: str):
        self._require_per_tensor(method, per_channel_message)
        self._require_unpacked(method, packed_reason)

    @_compiled("method", "reduce", "arg_reduce", "dim", "keepdim")
    def _extreme(self, method: str, reduce, arg_reduce, dim, keepdim):
        self._reduce_checks(method, f"{method.capitalize()} operator for quantized tensors "
                            "only works for per tensor quantized tensors",
                            "torch reduces the packed bytes and returns a quint8 result")
        values = self.int_values()
        if dim is None:
            return self._new(reduce(values))
        dim = self._normalize_dim(dim)
        if self.ndim == 0:
            return ValuesIndices(self, jnp.zeros((), jnp.int32))
        return ValuesIndices(self._new(reduce(values, axis=dim, keepdims=keepdim)),
                             arg_reduce(values, axis=dim, keepdims=keepdim).astype(jnp.int32))

    def max(self, dim: int | None = None, keepdim: bool = False):
        """The largest value (0-d QTensor), or ``(values, indices)`` along ``dim``."""
        return self._extreme("max", jnp.max, jnp.argmax, dim, keepdim)

    def min(self, dim: int | None = None, keepdim: bool = False):
        """The smallest value (0-d QTensor), or ``(values, indices)`` along ``dim``."""
        return self._extreme("min", jnp.min, jnp.argmin, dim, keepdim)

    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False,
             dtype: Any = None):
        """Mean with the same parameters (see the module docstring for the rounding)."""
        self._require_per_tensor("mean", "mean() only works on per_tensor_affine quantized "
                                 f"tensors; this one is {self._qscheme.value}")
        if dtype is not None:
            raise TypeError(f"dtype={dtype!r} is not supported for a quantized mean (torch "
                            "rejects it too); leave it None")
        if dim is None or (isinstance(dim, (tuple, list)) and not dim):
            dims = tuple(range(self.ndim))
        else:
            dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
            dims = tuple(sorted({self._normalize_dim(d) for d in dims}))
        return self._mean(dims, bool(keepdim))

    @_compiled("dims", "keepdim")
    def _mean(self, dims: tuple[int, ...], keepdim: bool):
        count = float(np.prod([self.shape[d] for d in dims], dtype=np.int64))
        values = self.int_values()
        if dims == tuple(range(self.ndim - len(dims), self.ndim)):
            self._require_unpacked("mean over the trailing dimensions",
                                   "torch's integer mean kernel does not support it")
            total = jnp.sum(values.astype(jnp.int32), axis=dims, keepdims=keepdim)
            mean = jnp.round(exact_divide(total.astype(jnp.float32), count))
            return self._new(mean.astype(self.dtype.storage_dtype))
        # torch sums the materialized dequantized values: keep XLA from fusing
        # (q - zp) * s + acc into an FMA inside the sum.
        dequantized = separately_rounded(self.dequantize())
        # Over several non-trailing dimensions XLA's summation order can differ from
        # torch's, and the requantized mean by 1 where it sits on a rounding tie.
        total = jnp.sum(dequantized, axis=dims, keepdims=keepdim)
        from jaxq.core.qtensor import _quantize_like  # the quantize kernels live there
        return self._new(_quantize_like(self, exact_divide(total, count)))

    @_compiled("dim", "descending", "stable")
    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        """``(values, indices)`` sorted along ``dim`` (always stable, as torch on CPU)."""
        del stable  # torch's CPU sort is stable either way.
        self._reduce_checks("sort", "sort() only works on per_tensor_affine quantized "
                            f"tensors; this one is {self._qscheme.value}",
                            "torch sorts the packed bytes and returns a quint8 result")
        dim = self._normalize_dim(dim)
        values = self.int_values()
        if self.ndim == 0:
            return ValuesIndices(self, jnp.zeros((), jnp.int32))
        order = jnp.argsort(values.astype(jnp.int32), axis=dim, descending=descending,
                            stable=True)
        return ValuesIndices(self._new(jnp.take_along_axis(values, order, axis=dim)),
                             order.astype(jnp.int32))

    @_compiled("k", "dim", "largest", "sorted")
    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        """The ``k`` largest (or smallest) values along ``dim`` and their indices.

        Always sorted; among equal values the lower index comes first (torch leaves the
        order of ties unspecified).
        """
        del sorted  # A sorted result is a valid unsorted one.
        self._reduce_checks("topk", "Top-K is only supported on per-tensor quantization",
                            "torch has no kernel for it")
        dim = self._normalize_dim(dim)
        size = self.shape[dim] if self.ndim else 1
        if not 0 <= k <= size:
            raise RuntimeError(f"topk: selected index k={k} out of range (size {size})")
        values = self.int_values()
        if self.ndim == 0:
            return ValuesIndices(self, jnp.zeros((), jnp.int32))
        order = jnp.argsort(values.astype(jnp.int32), axis=dim, descending=largest,
                            stable=True)
        order = jax.lax.slice_in_dim(order, 0, k, axis=dim)
        return ValuesIndices(self._new(jnp.take_along_axis(values, order, axis=dim)),
                             order.astype(jnp.int32))
