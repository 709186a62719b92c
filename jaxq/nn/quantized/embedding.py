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

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core.dtypes import QuantDType, as_quant_dtype, quint8
from jaxq.core.qscheme import QScheme
from jaxq.core.qtensor import QTensor, quantize_per_channel
from jaxq.nn.quantized._utils import QuantizedWeight, variable_value
from jaxq.nn.quantized.embedding_ops import (
    _check_weight_dtype, _check_size, _check_embedding_dim, _check_weight, packed_scale_bias,
    quantized_embedding, quantized_embedding_bag, _normalize_padding_idx, _WEIGHT_DTYPES)

__all__ = ["Embedding", "EmbeddingBag", "EmbeddingPackedParams", "quantized_embedding",
           "quantized_embedding_bag", "packed_scale_bias"]

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
