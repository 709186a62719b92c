"""The pure functions of the quantized Embedding / EmbeddingBag: argument checks, the
per-row scale / bias torch's prepack stores (:func:`packed_scale_bias`), and the lookups
:func:`quantized_embedding` / :func:`quantized_embedding_bag` with fbgemm's arithmetic.
See :mod:`jaxq.nn.quantized.embedding` for the semantics and the deviations from torch."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core import packing
from jaxq.core.dtypes import QuantDType, as_quant_dtype, quint4x2, quint8
from jaxq.core.float_arithmetic import fma_f32, separately_rounded
from jaxq.core.qscheme import QScheme
from jaxq.core.qtensor import QTensor

__all__ = ["quantized_embedding", "quantized_embedding_bag", "packed_scale_bias"]

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
