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
import numpy as np
from flax import nnx

from jaxq.nn.quantized._utils import variable_value
from jaxq.nn.quantized.reference.linear import _check_device
from jaxq.nn.quantized.reference.utils import ReferenceQuantizedModule, _array

__all__ = ["Embedding"]


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
        for name, value in (("num_embeddings", num_embeddings),
                            ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int")
        if max_norm is not None:
            raise ValueError("max_norm is not supported (torch renormalizes the table in "
                             "place during the lookup); pass None")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx={padding_idx} must be within "
                                 f"[{-num_embeddings}, {num_embeddings})")
            padding_idx = int(padding_idx) % int(num_embeddings)
        param_dtype = jnp.float32 if dtype is None else dtype
        super().__init__(int(num_embeddings), int(embedding_dim), param_dtype=param_dtype,
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
