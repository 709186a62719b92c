"""Quantized Embedding / EmbeddingBag (``torch.ao.nn.quantized.Embedding`` /
``EmbeddingBag``) on NNX, with torch's x86 (fbgemm) lookup arithmetic bit for bit.

Weights are a ``(num_embeddings, embedding_dim)`` :class:`jaxq.QTensor`, quantized per
row (``per_channel_affine_float_qparams``, axis 0) to ``quint8`` or ``quint4x2`` with a
float scale ``s`` and a float zero point ``zp`` per row.

torch's prepack (``quantized::embedding_bag_prepack``) stores, per row, the scale and
``bias = fl(zp * s) * -1``: as float32 for quint8 and **rounded to float16** for
quint4x2. fbgemm's lookup kernels then accumulate each bag in index order with one
fused multiply-add per entry::

    out = 0
    for each index r (with per-sample weight w, or no multiplications without one):
        out = fma(fl(s[r] * w), q[r], fl(out + fl(bias[r] * w)))

so a lookup is *not* ``weight().dequantize()`` (``(q - zp) * s``): the two differ by a
few ulp for quint8 and by the float16 rounding of the qparams for quint4x2. The pure
functions :func:`quantized_embedding` and :func:`quantized_embedding_bag` compute
exactly torch's result (every step rounded as torch rounds it, whatever XLA fuses);
the modules are thin wrappers.

Bags: ``offsets[0] == 0`` and bag ``i`` is ``indices[offsets[i]:end_i]`` with
``end_i = offsets[i + 1]`` and, for the last bag, ``len(indices)`` (or the extra last
offset with ``include_last_offset=True``); empty bags give zeros. A 2-D ``(B, L)`` ``indices``
without offsets is ``B`` bags of ``L`` entries. The reduction is ``sum`` only (torch's
quantized ops hard-code it).

Bad input raises a ``ValueError`` / ``TypeError`` naming the argument when the values are
concrete (eager calls). Under ``jit`` the values cannot be checked; an out-of-range
index then gives a NaN row (a NaN bag), and so do offsets that decrease or point past
``len(indices)`` (all bags when ``offsets[0] != 0``): nothing is read out of bounds
and no bad input passes silently.

Cost: the bag kernel takes one step per position inside the longest bag, gathering one
row for every bag at each step (``B * max_bag_len * D`` work), because torch's
sequential summation order is what makes the result bit-exact; a tree or segment sum
would be faster and differ in the last bits.

Deviations from torch (each one where torch crashes, reads out of bounds, computes
garbage or silently ignores an argument):

* ``mode`` other than ``"sum"`` raises; torch accepts ``"mean"`` / ``"max"`` and computes a
  sum anyway.
* quint4x2 with an odd ``embedding_dim`` raises; torch packs the whole table flat, so
  rows straddle bytes and its lookups return the wrong values.
* ``Embedding.from_float`` with a quint4x2 qconfig gives a quint4x2 module; torch builds a
  quint8 module around 4-bit packed weights and its forward fails.
* ``per_sample_weights`` must have the shape of ``indices``; torch reads past a shorter
  one. Decreasing or past-the-end offsets raise; torch fails for quint8 and returns
  garbage for quint4x2.
* ``offsets[0]`` must be 0 (torch's float EmbeddingBag rule). torch's quantized ops
  accept other values and disagree: the quint8 op skips the indices before
  ``offsets[0]``, the quint4x2 op shifts every offset down by ``offsets[0]``.
* With ``include_last_offset=True`` the last offset may be below ``len(indices)`` (the
  rest is unused), as torch's float ``EmbeddingBag`` and its quint8 op; torch's quint4x2 op
  raises. A 2-D ``indices`` gives ``B`` bags whatever ``include_last_offset`` (torch's float
  EmbeddingBag; the quint8 op gives ``B - 1`` and the quint4x2 op raises).
* ``compressed_indices_mapping`` raises unless None: it only applies to pruned weights,
  which these modules never have (torch ignores it).
* ``EmbeddingBag(padding_idx=...)`` is a jaxq extension with torch's float EmbeddingBag
  meaning: entries equal to ``padding_idx`` are left out of their bag.
* Indices are computed as int32 (no int64 without x64): tables are limited to 2**31 rows.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized.embedding import EmbeddingBag
  >>> m = EmbeddingBag(num_embeddings=10, embedding_dim=4)
  >>> table = jnp.arange(40.0).reshape(10, 4) / 10
  >>> scale = jnp.full((10,), 0.3 / 255)
  >>> m.set_weight(jaxq.quantize_per_channel(table, scale, -table[:, 0] / scale, 0,
  ...                                        jaxq.quint8))
  >>> m(jnp.array([1, 2, 3]), jnp.array([0, 2])).shape
  (2, 4)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core import packing
from jaxq.core.dtypes import QuantDType, as_quant_dtype, quint4x2, quint8
from jaxq.core.float_arithmetic import fma_f32, separately_rounded
from jaxq.core.qscheme import QScheme
from jaxq.core.qtensor import QTensor, quantize_per_channel
from jaxq.nn.quantized._utils import QuantizedWeight, variable_value

__all__ = ["Embedding", "EmbeddingBag", "EmbeddingPackedParams", "quantized_embedding",
           "quantized_embedding_bag", "packed_scale_bias"]

_WEIGHT_DTYPES = (quint8, quint4x2)


# ---------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------
def _is_concrete(*values: Any) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def _check_weight_dtype(dtype: Any, argument: str = "dtype") -> QuantDType:
    qdtype = as_quant_dtype(dtype, argument)
    if qdtype not in _WEIGHT_DTYPES:
        raise ValueError(f"{argument}={dtype!r}: quantized embeddings support quint8 and "
                         "quint4x2 only")
    return qdtype


def _check_size(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argument}={value!r} must be a positive int")
    return int(value)


def _check_embedding_dim(embedding_dim: int, dtype: QuantDType) -> None:
    if dtype is quint4x2 and embedding_dim % 2:
        raise ValueError(f"embedding_dim={embedding_dim} must be even for quint4x2 (two "
                         "values per byte in each row)")


def _check_weight(weight: Any, argument: str = "weight") -> QTensor:
    """A 2-D per-row float-qparams quint8/quint4x2 QTensor (what torch's prepack takes)."""
    if not isinstance(weight, QTensor):
        raise TypeError(f"{argument} must be a jaxq.QTensor; got {type(weight).__name__}")
    if weight.dtype not in _WEIGHT_DTYPES:
        raise TypeError(f"{argument} must have dtype quint8 or quint4x2; got "
                        f"{weight.dtype.name}")
    if weight.ndim != 2:
        raise ValueError(f"{argument} must be 2-d (num_embeddings, embedding_dim); got "
                         f"shape {weight.shape}")
    if weight.qscheme() is not QScheme.per_channel_affine_float_qparams or \
            weight.axis_from_end != -2:
        raise ValueError(f"{argument} must be quantized per row with float qparams "
                         "(per_channel_affine_float_qparams, axis 0); got "
                         f"{weight.qscheme().value}")
    _check_embedding_dim(weight.shape[1], weight.dtype)
    return weight


def _index_array(value: Any, argument: str) -> jax.Array:
    """An int32 array from int32/int64 ``value`` (torch: "Expect 32 or 64 bit indices")."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        value = np.asarray(value)
        dtype = value.dtype if value.size else np.dtype(np.int64)
    if np.dtype(dtype) not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f"{argument} must be an int32 or int64 array; got {dtype}")
    if _is_concrete(value):
        host = np.asarray(value)
        if host.size and (host.min() < np.iinfo(np.int32).min or
                          host.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{argument} has values outside the int32 range")
        return jnp.asarray(host.astype(np.int32))
    return jnp.asarray(value).astype(jnp.int32)


def _check_indices_range(indices: jax.Array, num_embeddings: int) -> None:
    if _is_concrete(indices) and indices.size:
        host = np.asarray(indices)
        bad = (host < 0) | (host >= num_embeddings)
        if bad.any():
            raise ValueError(f"indices must lie in [0, {num_embeddings}) (num_embeddings="
                             f"{num_embeddings}); got {int(host[bad][0])} at position "
                             f"{int(np.flatnonzero(bad.reshape(-1))[0])}")


def _check_indices_ndim(indices: jax.Array) -> None:
    if indices.ndim not in (1, 2):
        raise ValueError(f"indices must be 1-d or 2-d (torch's quantized embedding ops "
                         f"support 1 or 2d indices); got shape {indices.shape}")


# ---------------------------------------------------------------------------
# The arithmetic.
# ---------------------------------------------------------------------------
def _scale_bias(scale: jax.Array, zero_point: jax.Array, dtype: QuantDType
                ) -> tuple[jax.Array, jax.Array]:
    """torch's prepacked row scale and bias ``fl(zp * s) * -1`` (float16-rounded for
    quint4x2), as float32."""
    scale = jnp.asarray(scale, jnp.float32)
    # A separate rounding: XLA must not contract the product into a later addition.
    bias = separately_rounded(jnp.asarray(zero_point, jnp.float32) * scale) * -1.0
    if dtype is quint4x2:
        scale = scale.astype(jnp.float16).astype(jnp.float32)
        bias = bias.astype(jnp.float16).astype(jnp.float32)
    return scale, bias


def packed_scale_bias(weight: QTensor) -> tuple[jax.Array, jax.Array]:
    """The per-row ``(scale, bias)`` torch's ``embedding_bag_prepack`` stores.

    Args:
      weight: per-row float-qparams quint8/quint4x2 QTensor ``(N, D)``.

    Returns:
      float32 ``(N,)`` arrays: ``scale`` and ``bias = fl(zp * scale) * -1``, both rounded
      to float16 values for quint4x2 (torch stores them as float16 there).

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized.embedding import packed_scale_bias
      >>> w = jaxq.quantize_per_channel(jnp.ones((2, 4)), jnp.array([0.1, 0.2]),
      ...                               jnp.array([1.0, 2.0]), 0, jaxq.quint8)
      >>> [v.tolist() for v in packed_scale_bias(w)]
      [[0.10000000149011612, 0.20000000298023224], [-0.10000000149011612, -0.4000000059604645]]
    """
    weight = _check_weight(weight)
    return _scale_bias(weight.scale, weight.zero_point, weight.dtype)


def _gather_rows(weight: QTensor, rows: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Values (float32 ``(*rows.shape, D)``), scale and bias of ``rows`` (already in
    range)."""
    data = jnp.take(weight.data, rows, axis=0, mode="clip")
    if weight.dtype.is_packed:
        values = packing.unpack(data, weight.dtype.bits, weight.last_dim)
    else:
        values = data
    scale, bias = _scale_bias(jnp.take(weight.scale, rows, mode="clip"),
                              jnp.take(weight.zero_point, rows, mode="clip"), weight.dtype)
    return values.astype(jnp.float32), scale, bias


@jax.jit
def _embedding_kernel(weight: QTensor, indices: jax.Array) -> jax.Array:
    num_embeddings = weight.data.shape[0]
    in_range = (indices >= 0) & (indices < num_embeddings)
    values, scale, bias = _gather_rows(weight, jnp.where(in_range, indices, 0))
    out = fma_f32(scale[..., None], values, bias[..., None])
    return jnp.where(in_range[..., None], out, jnp.float32(jnp.nan))


@functools.partial(jax.jit, static_argnames=("padding_idx",))
def _embedding_bag_kernel(weight: QTensor, indices: jax.Array, starts: jax.Array,
                          ends: jax.Array, per_sample_weights: jax.Array | None,
                          padding_idx: int | None) -> jax.Array:
    """Sum over bags ``indices[starts[i]:ends[i]]`` in torch's order and rounding.

    One step per position inside the bags, all bags at once: step ``k`` adds entry
    ``starts[i] + k`` of every bag that long, so each bag is summed sequentially as
    fbgemm sums it. Bags with ``ends < starts``, ``ends > len(indices)`` or an
    out-of-range index are NaN.
    """
    num_embeddings = weight.data.shape[0]
    num_indices = indices.shape[0]
    num_bags = starts.shape[0]
    dim = weight.shape[1]
    bad_bag = (ends < starts) | (starts < 0) | (ends > num_indices)
    lengths = jnp.where(bad_bag, 0, ends - starts)
    acc = jnp.zeros((num_bags, dim), jnp.float32)
    if num_indices == 0 or num_bags == 0:
        return jnp.where(bad_bag[:, None], jnp.float32(jnp.nan), acc)

    def step(carry):
        k, acc, bad = carry
        active = k < lengths
        position = jnp.where(active, starts + k, 0)
        rows = indices[position]
        in_range = (rows >= 0) & (rows < num_embeddings)
        bad = bad | (active & ~in_range)
        use = active & in_range
        if padding_idx is not None:
            use = use & (rows != padding_idx)
        values, scale, bias = _gather_rows(weight, jnp.where(in_range, rows, 0))
        if per_sample_weights is not None:
            sample_weight = per_sample_weights[position].astype(jnp.float32)
            scale = scale * sample_weight
            bias = separately_rounded(bias * sample_weight)
        updated = fma_f32(scale[:, None], values, acc + bias[:, None])
        return k + 1, jnp.where(use[:, None], updated, acc), bad

    _, acc, bad = jax.lax.while_loop(lambda carry: carry[0] < jnp.max(lengths), step,
                                     (jnp.int32(0), acc, bad_bag))
    return jnp.where(bad[:, None], jnp.float32(jnp.nan), acc)


def quantized_embedding(weight: QTensor, indices: Any) -> jax.Array:
    """torch's ``quantized::embedding_byte`` / ``embedding_4bit``: a lookup.

    Args:
      weight: per-row float-qparams quint8/quint4x2 QTensor ``(N, D)``.
      indices: int32/int64 array, 1-d or 2-d, values in ``[0, N)``.

    Returns:
      float32 ``(*indices.shape, D)``: ``fma(scale, q, bias)`` per row with torch's
      prepacked ``scale`` / ``bias`` (:func:`packed_scale_bias`); NaN rows for
      out-of-range indices under ``jit``.

    Raises:
      TypeError: ``weight`` is not such a QTensor; ``indices`` not int32/int64.
      ValueError: ``indices`` not 1-d/2-d or (when concrete) out of range.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized.embedding import quantized_embedding
      >>> w = jaxq.quantize_per_channel(jnp.array([[0.0, 1.0], [2.0, 3.0]]),
      ...                               jnp.array([1.0, 1.0]), jnp.array([0.0, -2.0]), 0,
      ...                               jaxq.quint8)
      >>> quantized_embedding(w, jnp.array([1, 0, 1])).tolist()
      [[2.0, 3.0], [0.0, 1.0], [2.0, 3.0]]
    """
    weight = _check_weight(weight)
    indices = _index_array(indices, "indices")
    _check_indices_ndim(indices)
    _check_indices_range(indices, weight.shape[0])
    return _embedding_kernel(weight, indices)


def _bag_bounds(indices: jax.Array, offsets: Any, include_last_offset: bool
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(flat_indices, starts, ends)`` of every bag (checked when concrete)."""
    if indices.ndim == 2:
        if offsets is not None:
            raise ValueError("offsets must be None for 2-d indices (a mini-batch of "
                             "fixed-length bags); got offsets")
        num_bags, length = indices.shape
        starts = jnp.arange(num_bags, dtype=jnp.int32) * length
        return indices.reshape(-1), starts, starts + length
    if offsets is None:
        raise ValueError("offsets is required for 1-d indices (or pass 2-d indices of "
                         "fixed-length bags)")
    offsets = _index_array(offsets, "offsets")
    if offsets.ndim != 1:
        raise ValueError(f"offsets must be 1-d; got shape {offsets.shape}")
    num_indices = indices.shape[0]
    if include_last_offset:
        if offsets.shape[0] < 1:
            raise ValueError("offsets must have at least one entry with "
                             "include_last_offset=True (the end of the last bag)")
        starts, ends = offsets[:-1], offsets[1:]
    else:
        starts = offsets
        ends = jnp.concatenate([offsets[1:], jnp.full((1,), num_indices, jnp.int32)])
    if offsets.shape[0]:
        # Traced offsets not starting at 0: every bag is marked bad (NaN).
        starts = jnp.where(offsets[0] == 0, starts, -1)
    if _is_concrete(offsets) and offsets.size:
        host = np.asarray(offsets)
        if host[0] != 0:
            raise ValueError(f"offsets[0] must be 0 (the first bag starts at the first "
                             f"index); got {int(host[0])}")
        if np.any(np.diff(host) < 0):
            raise ValueError(f"offsets must be non-decreasing; got {host.tolist()}")
        if host[-1] > num_indices:
            raise ValueError(f"offsets must not exceed len(indices)={num_indices}; got "
                             f"{int(host[-1])}")
    return indices, starts, ends


def _check_per_sample_weights(per_sample_weights: Any, indices: jax.Array,
                              dtype: QuantDType) -> jax.Array | None:
    if per_sample_weights is None:
        return None
    weights = jnp.asarray(per_sample_weights)
    accepted = (jnp.float32, jnp.float16) if dtype is quint4x2 else (jnp.float32,)
    if weights.dtype not in accepted:
        names = " or ".join(np.dtype(d).name for d in accepted)
        raise TypeError(f"per_sample_weights must be {names} for {dtype.name} weights; got "
                        f"{weights.dtype}")
    if weights.shape != indices.shape:
        raise ValueError(f"per_sample_weights must have the shape of indices "
                         f"{indices.shape}; got {weights.shape}")
    return weights.reshape(-1).astype(jnp.float32)


def quantized_embedding_bag(weight: QTensor, indices: Any, offsets: Any = None,
                            per_sample_weights: Any = None,
                            include_last_offset: bool = False,
                            padding_idx: int | None = None) -> jax.Array:
    """torch's ``quantized::embedding_bag_byte`` / ``embedding_bag_4bit`` (mode sum).

    Args:
      weight: per-row float-qparams quint8/quint4x2 QTensor ``(N, D)``.
      indices: int32/int64, 1-d ``(n,)`` with ``offsets``, or 2-d ``(B, L)`` without
        (``B`` bags of ``L`` entries).
      offsets: int32/int64 ``(B,)`` (``(B + 1,)`` with ``include_last_offset``), the
        start of each bag in ``indices``: ``offsets[0] == 0``, non-decreasing, at most
        ``n``.
      per_sample_weights: float32 (float16 also for quint4x2) of the shape of
        ``indices``: each entry's row is scaled by its weight.
      include_last_offset: ``offsets`` ends with the end of the last bag.
      padding_idx: jaxq extension (torch's float EmbeddingBag meaning): entries equal
        to it are left out. Must already be in ``[0, N)``.

    Returns:
      float32 ``(B, D)``, the bag sums with fbgemm's arithmetic (see the module
      docstring); empty bags are zeros; under ``jit`` bad bags are NaN.

    Raises:
      TypeError: bad ``weight``, non-integer ``indices`` / ``offsets``, bad
        ``per_sample_weights`` dtype.
      ValueError: bad shapes, offsets with 2-d indices or missing with 1-d, and (when
        concrete) out-of-range indices, offsets that do not start at 0, decrease or
        pass ``n``.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized.embedding import quantized_embedding_bag
      >>> w = jaxq.quantize_per_channel(jnp.array([[0.0, 1.0], [2.0, 3.0]]),
      ...                               jnp.array([1.0, 1.0]), jnp.array([0.0, -2.0]), 0,
      ...                               jaxq.quint8)
      >>> quantized_embedding_bag(w, jnp.array([0, 1, 1]), jnp.array([0, 1, 1])).tolist()
      [[0.0, 1.0], [0.0, 0.0], [4.0, 6.0]]
    """
    weight = _check_weight(weight)
    indices = _index_array(indices, "indices")
    _check_indices_ndim(indices)
    _check_indices_range(indices, weight.shape[0])
    if not isinstance(include_last_offset, (bool, np.bool_)):
        raise TypeError(f"include_last_offset={include_last_offset!r} must be a bool")
    weights = _check_per_sample_weights(per_sample_weights, indices, weight.dtype)
    if padding_idx is not None:
        padding_idx = _normalize_padding_idx(padding_idx, weight.shape[0])
    flat, starts, ends = _bag_bounds(indices, offsets, bool(include_last_offset))
    return _embedding_bag_kernel(weight, flat, starts, ends, weights, padding_idx)


def _normalize_padding_idx(padding_idx: Any, num_embeddings: int) -> int:
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"padding_idx={padding_idx!r} must be an int or None")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"padding_idx={padding_idx} must be within [-{num_embeddings}, "
                         f"{num_embeddings}) (num_embeddings={num_embeddings})")
    return int(padding_idx) % num_embeddings


# ---------------------------------------------------------------------------
# Modules.
# ---------------------------------------------------------------------------
def _default_weight(num_embeddings: int, embedding_dim: int, dtype: QuantDType) -> QTensor:
    # torch starts from uninitialized values with scale 1 and zero point 0; zeros here.
    values = jnp.zeros((num_embeddings, embedding_dim), jnp.uint8)
    return QTensor.from_int_values(values, jnp.ones((num_embeddings,), jnp.float32),
                                   jnp.zeros((num_embeddings,), jnp.float32), dtype,
                                   QScheme.per_channel_affine_float_qparams, 0)


class EmbeddingPackedParams(nnx.Module):
    """torch's ``EmbeddingPackedParams``: the quantized table.

    Attributes:
      dtype: quint8 or quint4x2 (static).
      _packed_weight: :class:`QuantizedWeight` holding the per-row QTensor ``(N, D)``
        (quint4x2 stored two values per byte). The per-row scale / bias torch's prepack
        derives from it (:func:`packed_scale_bias`) are computed for the gathered rows
        at lookup time, so the table is stored once.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = quint8):
        self.dtype = _check_weight_dtype(dtype)
        _check_embedding_dim(embedding_dim, self.dtype)
        self._packed_weight = QuantizedWeight(
            _default_weight(num_embeddings, embedding_dim, self.dtype))

    def set_weight(self, weight: QTensor) -> None:
        weight = _check_weight(weight)
        if weight.dtype is not self.dtype:
            raise TypeError(f"weight has dtype {weight.dtype.name} but the module was built "
                            f"for {self.dtype.name}")
        self._packed_weight.set_value(weight)

    def _weight(self) -> QTensor:
        return self._packed_weight.get_value()


class Embedding(nnx.Module):
    """Quantized ``Embedding``: a lookup in a per-row quantized table (torch's
    ``nnq.Embedding``), returning float32.

    Args:
      num_embeddings, embedding_dim: table size ``(N, D)``.
      padding_idx: stored (normalized to ``[0, N)``); as in torch (float and quantized)
        it does not change the lookup: the row holds whatever was quantized into it
        (zeros for a float ``Embedding``'s padding row).
      max_norm: must be None (torch accepts and ignores it).
      norm_type, scale_grad_by_freq, sparse: accepted for torch's signature; training
        options without effect on a quantized table.
      _weight: an initial per-row QTensor ``(N, D)``.
      dtype: quint8 (default) or quint4x2 (``D`` must be even).

    Attributes:
      _packed_params: :class:`EmbeddingPackedParams` (state in a ``QuantizedWeight``).

    The default table is zeros with scale 1 and zero point 0 (torch's is uninitialized).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxq.nn.quantized.embedding import Embedding
      >>> Embedding(num_embeddings=10, embedding_dim=12)(jnp.array([9, 6, 5])).shape
      (3, 12)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 padding_idx: int | None = None, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: QTensor | None = None,
                 dtype: Any = quint8):
        self.num_embeddings = _check_size(num_embeddings, "num_embeddings")
        self.embedding_dim = _check_size(embedding_dim, "embedding_dim")
        self.dtype = _check_weight_dtype(dtype)
        _check_embedding_dim(self.embedding_dim, self.dtype)
        if max_norm is not None:
            raise ValueError(f"max_norm={max_norm!r} is not supported by quantized "
                             "embeddings (torch ignores it); pass None")
        self.padding_idx = (None if padding_idx is None else
                            _normalize_padding_idx(padding_idx, self.num_embeddings))
        self.norm_type = float(norm_type)
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        self.sparse = bool(sparse)
        self._packed_params = EmbeddingPackedParams(self.num_embeddings,
                                                    self.embedding_dim, self.dtype)
        if _weight is not None:
            self.set_weight(_weight)

    def __call__(self, indices: Any) -> jax.Array:
        """float32 ``(*indices.shape, D)`` (see :func:`quantized_embedding`)."""
        return quantized_embedding(self._packed_params._weight(), indices)

    forward = __call__

    def set_weight(self, w: QTensor) -> None:
        """Stores ``w``: a per-row float-qparams QTensor ``(N, D)`` of the module's
        dtype."""
        w = _check_weight(w, "w")
        expected = (self.num_embeddings, self.embedding_dim)
        if tuple(w.shape) != expected:
            raise ValueError(f"Shape of weight does not match num_embeddings and "
                             f"embedding_dim: expected {list(expected)}, got "
                             f"{list(w.shape)}")
        self._packed_params.set_weight(w)

    def weight(self) -> QTensor:
        """The per-row quantized table ``(N, D)`` with the qparams it was set with."""
        return self._packed_params._weight()

    def _get_name(self) -> str:
        return "QuantizedEmbedding"

    def extra_repr(self) -> str:
        return (f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, "
                f"dtype={self.dtype!r}, qscheme={self.weight().qscheme()!r}")

    @classmethod
    def _quantized_table(cls, mod: Any) -> tuple[QTensor, QuantDType]:
        """torch's from_float protocol: the observed, quantized table of ``mod``."""
        owner = f"nnq.{cls.__name__}"
        post = getattr(mod, "weight_fake_quant", None)
        if post is None:
            if not isinstance(mod, nnx.Embed):
                raise TypeError(f"{owner}.from_float only works for flax.nnx.Embed (or a "
                                f"QAT embedding); got {type(mod).__name__}")
            if not hasattr(mod, "qconfig"):
                raise ValueError(f"{owner}.from_float: input float module must have "
                                 "qconfig defined")
            qconfig = mod.qconfig
            if qconfig is not None and qconfig.weight is not None:
                post = qconfig.weight()
            else:
                from jaxq.qconfig import float_qparams_weight_only_qconfig
                post = float_qparams_weight_only_qconfig.weight()
        table = getattr(mod, "embedding", None)
        if table is None:
            table = mod.weight
        table = jnp.asarray(variable_value(table)).astype(jnp.float32)
        if getattr(post, "qscheme", None) is not QScheme.per_channel_affine_float_qparams:
            raise ValueError(f"{owner}: embedding quantization is only supported with "
                             "float_qparams_weight_only_qconfig (qscheme "
                             "per_channel_affine_float_qparams); got "
                             f"{getattr(post, 'qscheme', None)!r}")
        dtype = as_quant_dtype(getattr(post, "dtype", None), "weight observer dtype")
        if dtype not in _WEIGHT_DTYPES:
            raise ValueError(f"{owner}: the only supported dtypes are quint8 and quint4x2; "
                             f"got {dtype.name}")
        if table.ndim != 2:
            raise ValueError(f"{owner}: the embedding table must be 2-d; got shape "
                             f"{table.shape}")
        _check_embedding_dim(table.shape[1], dtype)
        ch_axis = int(getattr(post, "ch_axis", 0))
        if ch_axis not in (0, -2):
            raise ValueError(f"{owner}: the weight observer must be per row (ch_axis=0); "
                             f"got ch_axis={ch_axis}")
        post(table)
        scale, zero_point = post.calculate_qparams()
        qweight = quantize_per_channel(table, jnp.asarray(scale, jnp.float32).reshape(-1),
                                       jnp.asarray(zero_point, jnp.float32).reshape(-1), 0,
                                       dtype)
        qmin, qmax = int(post.quant_min), int(post.quant_max)
        if dtype is quint8 and (qmin, qmax) != (quint8.quant_min, quint8.quant_max):
            # torch's _clamp_weights (8-bit dtypes only).
            qweight = QTensor(jnp.clip(qweight.data, qmin, qmax).astype(jnp.uint8),
                              qweight.scale, qweight.zero_point, quint8,
                              QScheme.per_channel_affine_float_qparams, 0)
        return qweight, dtype

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Embedding:
        """A quantized Embedding from a ``flax.nnx.Embed`` carrying a ``qconfig``.

        torch's protocol: the weight observer is ``mod.weight_fake_quant`` (QAT) or
        ``mod.qconfig.weight()`` (``float_qparams_weight_only_qconfig``'s when the
        qconfig has none); it must be ``per_channel_affine_float_qparams`` with dtype
        quint8 or quint4x2. The table ``mod.embedding`` ``(N, D)`` is observed and
        quantized per row (``use_precomputed_fake_quant`` is ignored, as in torch).
        Unlike torch, a quint4x2 observer gives a quint4x2 module.

        Raises:
          TypeError: ``mod`` is not an ``nnx.Embed``.
          ValueError: no qconfig, another qscheme or dtype, odd D with quint4x2.
        """
        qweight, dtype = cls._quantized_table(mod)
        num_embeddings, embedding_dim = qweight.shape
        qembedding = cls(num_embeddings, embedding_dim, dtype=dtype)
        qembedding.set_weight(qweight)
        return qembedding

    @classmethod
    def from_reference(cls, ref_embedding: Any) -> Embedding:
        """From a reference quantized embedding (``get_quantized_weight()``,
        ``num_embeddings``, ``embedding_dim``, ``padding_idx``, ``weight_dtype``)."""
        qweight = ref_embedding.get_quantized_weight()
        return cls(ref_embedding.num_embeddings, ref_embedding.embedding_dim,
                   getattr(ref_embedding, "padding_idx", None), _weight=qweight,
                   dtype=getattr(ref_embedding, "weight_dtype", qweight.dtype))


class EmbeddingBag(Embedding):
    """Quantized ``EmbeddingBag`` (torch's ``nnq.EmbeddingBag``): per-bag sums of rows of a
    per-row quantized table, returning float32.

    Args:
      num_embeddings, embedding_dim, max_norm, norm_type, scale_grad_by_freq, sparse,
      _weight, dtype: as :class:`Embedding`.
      mode: ``"sum"`` only (torch's quantized ops always sum; torch accepts ``"mean"`` /
        ``"max"`` and sums anyway, jaxq raises).
      include_last_offset: ``offsets`` carries the end of the last bag.
      padding_idx: jaxq extension, keyword only: entries equal to it are left out of
        their bag (torch's float EmbeddingBag meaning).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxq.nn.quantized.embedding import EmbeddingBag
      >>> m = EmbeddingBag(num_embeddings=10, embedding_dim=12, include_last_offset=True)
      >>> m(jnp.array([9, 6, 5, 7, 8, 8]), jnp.array([0, 2, 2, 6])).shape
      (3, 12)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, mode: str = "sum", sparse: bool = False,
                 _weight: QTensor | None = None, include_last_offset: bool = False,
                 dtype: Any = quint8, *, padding_idx: int | None = None):
        if mode != "sum":
            raise ValueError(f"mode={mode!r}: quantized EmbeddingBag supports mode='sum' "
                             "only (torch's quantized ops always sum)")
        if not isinstance(include_last_offset, (bool, np.bool_)):
            raise TypeError(f"include_last_offset={include_last_offset!r} must be a bool")
        super().__init__(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                         scale_grad_by_freq, sparse, _weight, dtype)
        self.mode = mode
        self.pruned_weights = False
        self.include_last_offset = bool(include_last_offset)

    def __call__(self, indices: Any, offsets: Any = None, per_sample_weights: Any = None,
                 compressed_indices_mapping: Any = None) -> jax.Array:
        """float32 ``(B, D)`` (see :func:`quantized_embedding_bag`).

        Raises:
          ValueError: ``compressed_indices_mapping`` given (it applies to pruned weights,
            which this module does not have), and the errors of
            :func:`quantized_embedding_bag`.
        """
        if compressed_indices_mapping is not None:
            raise ValueError("compressed_indices_mapping is only used with pruned weights, "
                             "which quantized EmbeddingBag does not have; pass None")
        return quantized_embedding_bag(self._packed_params._weight(), indices, offsets,
                                       per_sample_weights, self.include_last_offset,
                                       self.padding_idx)

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedEmbeddingBag"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False, *,
                   mode: str | None = None, include_last_offset: bool | None = None,
                   padding_idx: int | None = None) -> EmbeddingBag:
        """A quantized EmbeddingBag from a ``flax.nnx.Embed`` carrying a ``qconfig``.

        As :meth:`Embedding.from_float`; Flax has no EmbeddingBag, so ``mode`` and
        ``include_last_offset`` are read from ``mod`` when it has them (a QAT
        EmbeddingBag) or given here (defaults ``"sum"`` / False).
        """
        qweight, dtype = cls._quantized_table(mod)
        num_embeddings, embedding_dim = qweight.shape
        mode = getattr(mod, "mode", "sum") if mode is None else mode
        if include_last_offset is None:
            include_last_offset = getattr(mod, "include_last_offset", False)
        return cls(num_embeddings, embedding_dim, mode=mode, _weight=qweight,
                   include_last_offset=include_last_offset, dtype=dtype,
                   padding_idx=padding_idx)

    @classmethod
    def from_reference(cls, ref_embedding_bag: Any) -> EmbeddingBag:
        """From a reference quantized embedding bag (``get_quantized_weight()``, sizes,
        ``mode``, ``include_last_offset``, ``weight_dtype``)."""
        qweight = ref_embedding_bag.get_quantized_weight()
        return cls(ref_embedding_bag.num_embeddings, ref_embedding_bag.embedding_dim,
                   mode=getattr(ref_embedding_bag, "mode", "sum"), _weight=qweight,
                   include_last_offset=getattr(ref_embedding_bag, "include_last_offset",
                                               False),
                   dtype=getattr(ref_embedding_bag, "weight_dtype", qweight.dtype),
                   padding_idx=getattr(ref_embedding_bag, "padding_idx", None))
