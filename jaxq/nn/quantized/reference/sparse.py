"""Reference quantized Embedding (``torch.ao.nn.quantized.reference.Embedding``) on NNX.

An ``nnx.Embed`` whose lookup reads rows of the quantized-dequantized table. The table
``embedding (num_embeddings, embedding_dim)`` is torch's ``weight`` as is (no layout
change); embedding weights are usually quantized per row (``axis=0``) with
per_channel_affine_float_qparams, quint8 or quint4x2.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.nn.quantized.reference import Embedding
  >>> m = Embedding(10, 4)
  >>> m(jnp.array([[1, 2], [3, 9]])).shape
  (2, 2, 4)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.nn.quantized._utils import variable_value
from jaxq.nn.quantized.embedding_ops import _check_size, _normalize_padding_idx
from jaxq.nn.quantized.reference.linear import _check_device
from jaxq.nn.quantized.reference.utils import ReferenceQuantizedModule, _array

__all__ = ["Embedding", "EmbeddingBag", "embedding_bag_float"]


class Embedding(nnx.Embed, ReferenceQuantizedModule):
    """A float embedding looking rows up in its quantize-dequantized table (torch's
    ``QuantizedEmbedding(Reference)``).

    Args:
      num_embeddings, embedding_dim: table size.
      padding_idx: its row starts at zero (torch's init); it only affects gradients in
        torch, and so here too (the lookup is a plain gather).
      max_norm: None only (torch renormalizes rows in place during the lookup; jaxq has
        no in-place update in a forward).
      norm_type, scale_grad_by_freq, sparse: stored (gradient-only in torch).
      _weight: the initial table ``(num_embeddings, embedding_dim)``, float.
      device, dtype: as torch (dtype: the table's dtype, default float32).
      weight_qparams: torch's dict; None: per-tensor quint8, scale 1, zero point 0.
      rngs: initialisation (torch's N(0, 1)) when ``_weight`` is None.

    Input: integer indices of any shape -> float32 ``(*indices.shape, embedding_dim)``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 padding_idx: int | None = None, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Any = None, device: Any = None,
                 dtype: Any = None, weight_qparams: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        _check_device(device)
        _check_size(num_embeddings, "num_embeddings")
        _check_size(embedding_dim, "embedding_dim")
        if max_norm is not None:
            raise ValueError("max_norm is not supported (torch renormalizes the table in "
                             "place during the lookup); pass None")
        if padding_idx is not None:
            padding_idx = _normalize_padding_idx(padding_idx, int(num_embeddings))
        param_dtype = jnp.float32 if dtype is None else dtype
        nnx.Embed.__init__(self, int(num_embeddings), int(embedding_dim),
                           param_dtype=param_dtype,
                           embedding_init=nnx.initializers.normal(1.0),
                           rngs=rngs if rngs is not None else nnx.Rngs(0))
        if _weight is not None:
            table = jnp.asarray(_array(_weight), param_dtype)
            if table.shape != (num_embeddings, embedding_dim):
                raise ValueError(f"_weight must have shape ({num_embeddings}, "
                                 f"{embedding_dim}); got {table.shape}")
            self.embedding.set_value(table)
        elif padding_idx is not None:
            self.embedding.set_value(self.embedding.get_value().at[padding_idx].set(0))
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = float(norm_type)
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        self.sparse = bool(sparse)
        self._init_weight_qparams(weight_qparams)

    @property
    def embedding_dim(self) -> int:
        return self.features

    @property
    def weight(self) -> jax.Array:
        """The float table ``(num_embeddings, embedding_dim)`` (torch's layout)."""
        return variable_value(self.embedding)

    def __call__(self, input: Any) -> jax.Array:
        indices = jnp.asarray(input)
        if not jnp.issubdtype(indices.dtype, jnp.integer):
            raise TypeError(f"reference Embedding takes integer indices; got "
                            f"{indices.dtype}")
        return jnp.take(self.get_weight(), indices, axis=0)

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedEmbedding(Reference)"

    @classmethod
    def from_float(cls, mod: nnx.Embed, weight_qparams: dict[str, Any]) -> Embedding:
        """A reference Embedding with ``mod``'s table (a copy; torch shares it).

        Raises:
          TypeError: ``mod`` is not an ``nnx.Embed``.
        """
        if not isinstance(mod, nnx.Embed):
            raise TypeError(f"nnqr.Embedding.from_float: mod must be an nnx.Embed; got "
                            f"{type(mod).__name__}")
        table = variable_value(mod.embedding)
        return cls(int(mod.num_embeddings), int(mod.features),
                   getattr(mod, "padding_idx", None), None, 2.0, False, False,
                   jnp.array(table), dtype=table.dtype, weight_qparams=weight_qparams)

    @staticmethod
    def _observed_kernel(mod: Any) -> jax.Array:
        """The table as a Flax-ordered kernel (``kernel_to_torch`` of it is the table),
        so ``convert(is_reference=True)``'s weight observer sees torch's rows on axis 0."""
        return jnp.asarray(variable_value(mod.embedding)).T


def embedding_bag_float(weight: jax.Array, indices: Any, offsets: Any = None,
                        mode: str = "mean", per_sample_weights: Any = None,
                        include_last_offset: bool = False,
                        padding_idx: int | None = None) -> jax.Array:
    """torch's float ``F.embedding_bag``: per-bag sum / mean / max of table rows.

    Args:
      weight: float32 table ``(N, D)``.
      indices: integer, 1-d ``(n,)`` with ``offsets`` or 2-d ``(B, L)`` without.
      offsets: ``(B,)`` bag starts (``(B + 1,)`` with ``include_last_offset``);
        ``offsets[0] == 0``, non-decreasing.
      mode: "sum", "mean" or "max".
      per_sample_weights: float, ``indices``' shape, ``mode="sum"`` only.
      include_last_offset: ``offsets`` ends with the end of the last bag.
      padding_idx: entries equal to it are left out (also from the mean's count).

    Returns:
      float32 ``(B, D)``; empty bags are zeros (as torch).

    Raises:
      ValueError: a bad ``mode``, ``per_sample_weights`` with mode != "sum", bad
        offsets (see :func:`jaxq.nn.quantized.embedding_ops.quantized_embedding_bag`).
    """
    from jaxq.nn.quantized.embedding_ops import _bag_bounds, _index_array
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode={mode!r} must be 'sum', 'mean' or 'max'")
    indices = _index_array(indices, "indices")
    if indices.ndim not in (1, 2):
        raise ValueError(f"indices must be 1-d or 2-d; got shape {indices.shape}")
    if per_sample_weights is not None:
        if mode != "sum":
            raise ValueError("embedding_bag: per_sample_weights was not None. "
                             "per_sample_weights is only supported for mode='sum' (got "
                             f"mode={mode!r})")
        per_sample_weights = jnp.asarray(per_sample_weights, jnp.float32)
        if per_sample_weights.shape != indices.shape:
            raise ValueError(f"per_sample_weights must have the shape of indices "
                             f"{indices.shape}; got {per_sample_weights.shape}")
        per_sample_weights = per_sample_weights.reshape(-1)
    flat, starts, ends = _bag_bounds(indices, offsets, bool(include_last_offset))
    num_bags = starts.shape[0]
    positions = jnp.arange(flat.shape[0], dtype=jnp.int32)
    # Empty bags share their start with the next bag: side="right" picks the last one.
    bag = jnp.searchsorted(starts, positions, side="right").astype(jnp.int32) - 1
    bag_clipped = jnp.clip(bag, 0, max(num_bags - 1, 0))
    used = (bag >= 0) & (positions < ends[bag_clipped])
    if padding_idx is not None:
        used = used & (flat != padding_idx)
    rows = jnp.take(weight, flat, axis=0).astype(jnp.float32)
    segment = jnp.where(used, bag_clipped, num_bags)  # unused entries go to a dropped bag
    if mode == "max":
        out = jax.ops.segment_max(rows, segment, num_segments=num_bags + 1)[:num_bags]
        counts = jax.ops.segment_sum(used.astype(jnp.int32), segment,
                                     num_segments=num_bags + 1)[:num_bags]
        return jnp.where(counts[:, None] > 0, out, 0.0)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights[:, None]
    total = jax.ops.segment_sum(rows, segment, num_segments=num_bags + 1)[:num_bags]
    if mode == "sum":
        return total
    counts = jax.ops.segment_sum(used.astype(jnp.float32), segment,
                                 num_segments=num_bags + 1)[:num_bags]
    return jnp.where(counts[:, None] > 0, total / jnp.maximum(counts, 1.0)[:, None], 0.0)


class EmbeddingBag(nnx.Embed, ReferenceQuantizedModule):
    """A float embedding bag over the quantize-dequantized table (torch's reference
    ``EmbeddingBag``; its ``_get_name`` is ``"QuantizedEmbedding(Reference)"``, as
    torch's).

    Args (torch's order): num_embeddings, embedding_dim, max_norm (None only),
      norm_type, scale_grad_by_freq, mode ("sum", "mean", "max"), sparse, _weight,
      include_last_offset, padding_idx, device, dtype, weight_qparams; rngs.

    Forward: ``(input, offsets=None, per_sample_weights=None)`` -> float32
    ``(B, embedding_dim)`` (see :func:`embedding_bag_float`).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, mode: str = "mean",
                 sparse: bool = False, _weight: Any = None,
                 include_last_offset: bool = False, padding_idx: int | None = None,
                 device: Any = None, dtype: Any = None,
                 weight_qparams: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode={mode!r} must be 'sum', 'mean' or 'max'")
        # Embedding's checks and initialisation (it calls nnx.Embed.__init__ directly).
        Embedding.__init__(self, num_embeddings, embedding_dim, padding_idx, max_norm,
                           norm_type, scale_grad_by_freq, sparse, _weight, device, dtype,
                           weight_qparams, rngs=rngs)
        self.mode = mode
        self.include_last_offset = bool(include_last_offset)

    embedding_dim = Embedding.embedding_dim
    weight = Embedding.weight

    def __call__(self, input: Any, offsets: Any = None,
                 per_sample_weights: Any = None) -> jax.Array:
        return embedding_bag_float(self.get_weight(), input, offsets, self.mode,
                                   per_sample_weights, self.include_last_offset,
                                   self.padding_idx)

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedEmbedding(Reference)"

    @classmethod
    def from_float(cls, mod: Any, weight_qparams: dict[str, Any],
                   use_precomputed_fake_quant: bool = False) -> EmbeddingBag:
        """From a module holding an ``embedding`` table (an ``nnx.Embed`` or an
        EmbeddingBag-like module; ``mode`` / ``include_last_offset`` / ``padding_idx``
        are read when present, else torch's defaults "mean" / False / None).

        Raises:
          TypeError: ``mod`` has no ``embedding`` table.
        """
        del use_precomputed_fake_quant  # torch's signature; unused there too
        if not isinstance(getattr(mod, "embedding", None), nnx.Variable):
            raise TypeError(f"nnqr.EmbeddingBag.from_float: mod must hold an embedding "
                            f"table (nnx.Embed); got {type(mod).__name__}")
        table = variable_value(mod.embedding)
        return cls(int(table.shape[0]), int(table.shape[1]), None, 2.0, False,
                   getattr(mod, "mode", "mean"), False, jnp.array(table),
                   getattr(mod, "include_last_offset", False),
                   getattr(mod, "padding_idx", None), dtype=table.dtype,
                   weight_qparams=weight_qparams)

    _observed_kernel = Embedding._observed_kernel
