"""Quantizable MultiheadAttention (``torch.ao.nn.quantizable.MultiheadAttention``) on NNX.

torch's float ``nn.MultiheadAttention`` fuses the input projections (``in_proj_weight``);
the quantizable one runs them as separate ``nn.Linear``s so that their outputs can be
observed. jaxq's module is that decomposition:

* ``linear_Q`` / ``linear_K`` / ``linear_V`` / ``out_proj``: ``nnx.Linear``
  (Flax kernels ``(in, out)``); their outputs are observed after ``jaxq.prepare``;
* ``q_scaling_product``: a FloatFunctional whose ``mul_scalar`` scales ``q`` by
  ``head_dim ** -0.5`` (not observed, as torch's; quantized it changes the qparams);
* ``dequant_q`` / ``dequant_k`` / ``dequant_v``: DeQuantStubs before the float attention
  core (``q k^T``, masks, softmax, dropout, ``weights v``);
* ``quant_attn_output`` / ``quant_attn_output_weights``: QuantStubs re-entering the
  quantized zone (the attention output before ``out_proj``; the ``(N * heads, L, S)``
  attention weights, averaged over heads afterwards when ``average_attn_weights``).

After ``jaxq.convert`` (:class:`jaxq.nn.quantized.MultiheadAttention`) the same code runs
on :class:`jaxq.QTensor` query / key / value.

Layout: torch's. Inputs ``(L, N, E)`` (``(N, L, E)`` with ``batch_first=True``, Flax's
usual layout); ``attn_mask`` ``(L, S)`` or ``(N * num_heads, L, S)``, bool (True = not
allowed) or float (added); ``key_padding_mask`` ``(N, S)`` bool (True = ignored).

Deviation: torch's quantizable module with ``batch_first=True`` reshapes the attention
output as ``view(N, L, E)`` straight from ``(N * heads, L, head_dim)``, which mixes heads
and positions, so it disagrees with ``nn.MultiheadAttention(batch_first=True)`` (and with
itself at ``batch_first=False`` on transposed inputs). jaxq computes what
``nn.MultiheadAttention`` computes: its ``batch_first=True`` output is the
``batch_first=False`` output transposed.

Float sources for ``from_float`` (torch's is ``nn.MultiheadAttention``):

* an unprepared :class:`MultiheadAttention` (jaxq's float MHA is this class);
* ``nnx.MultiHeadAttention`` with torch's structure: ``in_features == qkv_features ==
  out_features`` (torch's ``embed_dim``), ``num_kv_heads`` equal to ``num_heads``,
  default ``attention_fn``, ``normalize_qk=False``, no ``decode``. Flax's ``in_kv_features``
  becomes ``kdim = vdim``; the result is ``batch_first=True`` and follows torch's call
  convention (``(query, key, value, ...) -> (output, weights)``, torch's mask meaning),
  not Flax's (``mask`` True = attend). Flax scales the query by division by
  ``sqrt(head_dim)``, torch by multiplication with ``head_dim ** -0.5`` (an ulp apart);
* any object with ``nn.MultiheadAttention``'s attributes (``embed_dim``, ``num_heads``,
  ``in_proj_weight`` / ``q_proj_weight``..., ``in_proj_bias``, ``out_proj``,
  ``bias_k`` ...), e.g. a ``torch.nn.MultiheadAttention``.

Training mode: ``deterministic=True`` (eval; torch's ``from_float`` calls ``eval()``);
with ``deterministic=False`` and ``dropout > 0`` the attention weights get dropout, with
the key from the ``rngs`` call argument. ``is_causal=True`` is rejected, as torch's.

Example:
  >>> import jax.numpy as jnp
  >>> mha = MultiheadAttention(8, 2)
  >>> out, weights = mha(jnp.ones((4, 3, 8)), jnp.ones((5, 3, 8)), jnp.ones((5, 3, 8)))
  >>> out.shape, weights.shape
  ((4, 3, 8), (3, 4, 5))
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.eager.stubs import DeQuantStub, QuantStub
from jaxq.nn.quantizable import _ops
from jaxq.nn.quantizable.rnn import _check_bool, _check_size, _prepare_like, _to_array
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized.functional_modules import FloatFunctional

__all__ = ["MultiheadAttention"]


def _pad_last(mask: jax.Array) -> jax.Array:
    """``F.pad(mask, (0, 1))``: one zero (False) column at the end of the last axis."""
    return jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, 1)])


def _repeat_batch(bias: Any, bsz: int) -> Any:
    """``bias.repeat(1, bsz, 1)`` of a ``(1, 1, E)`` bias."""
    return _ops._map_data(bias, lambda d: jnp.tile(d, (1, bsz, 1)))


class MultiheadAttention(nnx.Module):
    """A quantizable multi-head attention (torch's ``nnqa.MultiheadAttention``).

    Args (torch's): embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
      add_zero_attn=False, kdim=None, vdim=None, batch_first=False; keyword-only rngs
      (initialisation, default ``nnx.Rngs(0)``).

    Call: ``mha(query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False, *, rngs=None)`` ->
    ``(attn_output (L, N, E), attn_weights (N, L, S) | (N, heads, L, S) | None)``.
    """

    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = ()  # set below (the class itself)

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0,
                 bias: bool = True, add_bias_kv: bool = False, add_zero_attn: bool = False,
                 kdim: int | None = None, vdim: int | None = None,
                 batch_first: bool = False, *, rngs: nnx.Rngs | None = None):
        self.embed_dim = _check_size(embed_dim, "embed_dim")
        self.num_heads = _check_size(num_heads, "num_heads")
        self.kdim = self.embed_dim if kdim is None else _check_size(kdim, "kdim")
        self.vdim = self.embed_dim if vdim is None else _check_size(vdim, "vdim")
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1]; got {dropout!r}")
        self.dropout = float(dropout)
        self.batch_first = _check_bool(batch_first, "batch_first")
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by "
                             f"num_heads={num_heads}")
        bias = _check_bool(bias, "bias")
        self.add_zero_attn = _check_bool(add_zero_attn, "add_zero_attn")
        rngs = nnx.Rngs(0) if rngs is None else rngs
        if _check_bool(add_bias_kv, "add_bias_kv"):
            init = jax.nn.initializers.xavier_normal()
            self.bias_k = nnx.Param(init(rngs.params(), (1, 1, self.embed_dim)))
            self.bias_v = nnx.Param(init(rngs.params(), (1, 1, self.embed_dim)))
        else:
            self.bias_k = self.bias_v = None
        e = self.embed_dim
        self.out_proj = nnx.Linear(e, e, use_bias=bias, rngs=rngs)
        self.linear_Q = nnx.Linear(e, e, use_bias=bias, rngs=rngs)
        self.linear_K = nnx.Linear(self.kdim, e, use_bias=bias, rngs=rngs)
        self.linear_V = nnx.Linear(self.vdim, e, use_bias=bias, rngs=rngs)
        self.q_scaling_product = FloatFunctional()
        self.quant_attn_output = QuantStub()
        self.quant_attn_output_weights = QuantStub()
        self.dequant_q = DeQuantStub()
        self.dequant_k = DeQuantStub()
        self.dequant_v = DeQuantStub()
        self.deterministic = True

    def _get_name(self) -> str:
        return "QuantizableMultiheadAttention"

    # -- forward ---------------------------------------------------------------------------

    def _check_attn_mask(self, attn_mask: Any, bsz: int, tgt_len: int, src_len: int
                         ) -> jax.Array:
        mask = jnp.asarray(attn_mask)
        if mask.dtype == jnp.uint8:
            warnings.warn("Byte tensor for `attn_mask` in `nn.MultiheadAttention` is "
                          "deprecated. Use bool tensor instead.", stacklevel=4)
            mask = mask.astype(bool)
        if mask.dtype != jnp.bool_ and not jnp.issubdtype(mask.dtype, jnp.floating):
            raise TypeError("Only float and bool types are supported for attn_mask, not "
                            f"{mask.dtype}")
        if mask.ndim == 2:
            mask = mask[None]
            if mask.shape != (1, tgt_len, src_len):
                raise ValueError(f"The size of the 2D attn_mask is not correct: expected "
                                 f"{(tgt_len, src_len)}, got {mask.shape[1:]}")
        elif mask.ndim == 3:
            if mask.shape != (bsz * self.num_heads, tgt_len, src_len):
                raise ValueError(f"The size of the 3D attn_mask is not correct: expected "
                                 f"{(bsz * self.num_heads, tgt_len, src_len)}, got "
                                 f"{mask.shape}")
        else:
            raise ValueError(f"attn_mask's dimension {mask.ndim} is not supported")
        return mask

    def __call__(self, query: Any, key: Any, value: Any, key_padding_mask: Any = None,
                 need_weights: bool = True, attn_mask: Any = None,
                 average_attn_weights: bool = True, is_causal: bool = False, *,
                 rngs: nnx.Rngs | None = None) -> tuple[Any, Any]:
        if attn_mask is not None and is_causal:
            raise ValueError("Only allow causal mask or attn_mask")
        if is_causal:
            raise ValueError("causal mask not supported by AO MHA module (is_causal=True); "
                             "pass attn_mask instead")
        for name, x in (("query", query), ("key", key), ("value", value)):
            if getattr(x, "ndim", None) != 3:
                raise ValueError(f"{name} must be 3-d; got shape {getattr(x, 'shape', None)}")
        if self.batch_first:
            query, key, value = (_ops.swapaxes(x, 0, 1) for x in (query, key, value))
        tgt_len, bsz, embed_dim = query.shape
        if embed_dim != self.embed_dim:
            raise ValueError(f"query.shape[-1]={embed_dim} must equal "
                             f"embed_dim={self.embed_dim}")
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(f"key and value size mismatch: key {key.shape}, value "
                             f"{value.shape}")
        heads, head_dim = self.num_heads, self.head_dim
        scaling = float(head_dim) ** -0.5

        q = self.linear_Q(query)
        k = self.linear_K(key)
        v = self.linear_V(value)
        q = self.q_scaling_product.mul_scalar(q, scaling)

        src_len = key.shape[0]
        if attn_mask is not None:
            attn_mask = self._check_attn_mask(attn_mask, bsz, tgt_len, src_len)
        if key_padding_mask is not None:
            key_padding_mask = jnp.asarray(key_padding_mask)
            if key_padding_mask.dtype == jnp.uint8:
                warnings.warn("Byte tensor for `key_padding_mask` in "
                              "`nn.MultiheadAttention` is deprecated. Use bool tensor "
                              "instead.", stacklevel=2)
                key_padding_mask = key_padding_mask.astype(bool)
            if key_padding_mask.dtype != jnp.bool_:
                raise TypeError("key_padding_mask must be a bool (or uint8) array (True = "
                                f"ignored); got {key_padding_mask.dtype}")
        if self.bias_k is not None:
            k = _ops.cat([k, _repeat_batch(_utils.variable_value(self.bias_k), bsz)])
            v = _ops.cat([v, _repeat_batch(_utils.variable_value(self.bias_v), bsz)])
            if attn_mask is not None:
                attn_mask = _pad_last(attn_mask)
            if key_padding_mask is not None:
                key_padding_mask = _pad_last(key_padding_mask)

        q = _ops.swapaxes(_ops.reshape(q, (tgt_len, bsz * heads, head_dim)), 0, 1)
        k = _ops.swapaxes(_ops.reshape(k, (-1, bsz * heads, head_dim)), 0, 1)
        v = _ops.swapaxes(_ops.reshape(v, (-1, bsz * heads, head_dim)), 0, 1)
        src_len = k.shape[1]
        if key_padding_mask is not None and key_padding_mask.shape != (bsz, src_len):
            raise ValueError(f"key_padding_mask must have shape {(bsz, src_len)} (batch, "
                             f"source length); got {key_padding_mask.shape}")
        if self.add_zero_attn:
            src_len += 1
            zeros_shape = (k.shape[0], 1) + tuple(k.shape[2:])
            if _ops.is_quantized(k):
                k_zeros = _ops.quantized_zeros(zeros_shape, k.scale, k.zero_point, k.dtype)
                v_zeros = _ops.quantized_zeros(zeros_shape, v.scale, v.zero_point, v.dtype)
            else:
                k_zeros = v_zeros = jnp.zeros(zeros_shape, jnp.float32)
            # Same qparams as k / v: torch's cat keeps the integers.
            k = _ops.cat_shared_qparams([k, k_zeros], 1)
            v = _ops.cat_shared_qparams([v, v_zeros], 1)
            if attn_mask is not None:
                attn_mask = _pad_last(attn_mask)
            if key_padding_mask is not None:
                key_padding_mask = _pad_last(key_padding_mask)

        # Leaving the quantized zone.
        q = self.dequant_q(q)
        k = self.dequant_k(k)
        v = self.dequant_v(v)
        hi = jax.lax.Precision.HIGHEST
        weights = jnp.matmul(q, jnp.swapaxes(k, 1, 2), precision=hi)
        if attn_mask is not None:
            if attn_mask.dtype == jnp.bool_:
                weights = jnp.where(attn_mask, -jnp.inf, weights)
            else:
                weights = weights + attn_mask
        if key_padding_mask is not None:
            weights = weights.reshape(bsz, heads, tgt_len, src_len)
            weights = jnp.where(key_padding_mask[:, None, None, :], -jnp.inf, weights)
            weights = weights.reshape(bsz * heads, tgt_len, src_len)
        weights = jax.nn.softmax(weights, axis=-1)
        if not self.deterministic and self.dropout > 0:
            if rngs is None:
                raise ValueError("MultiheadAttention: dropout in training mode "
                                 "(deterministic=False) needs rngs=nnx.Rngs(dropout=...)")
            keep = jax.random.bernoulli(rngs.dropout(), 1.0 - self.dropout, weights.shape)
            weights = jnp.where(keep, weights / (1.0 - self.dropout), 0.0)
        attn_output = jnp.matmul(weights, v, precision=hi)  # (N * heads, L, head_dim)
        attn_output = jnp.swapaxes(attn_output, 0, 1).reshape(tgt_len, bsz, self.embed_dim)
        if self.batch_first:
            attn_output = jnp.swapaxes(attn_output, 0, 1)

        # Re-entering the quantized zone.
        attn_output = self.quant_attn_output(attn_output)
        attn_output = self.out_proj(attn_output)
        weights = self.quant_attn_output_weights(weights)
        if not need_weights:
            return attn_output, None
        weights = _ops.reshape(weights, (bsz, heads, tgt_len, src_len))
        if average_attn_weights:
            weights = _ops.mean(weights, 1)
        return attn_output, weights

    forward = __call__

    # -- conversion ------------------------------------------------------------------------

    def _load(self, q: tuple, k: tuple, v: tuple, out: tuple) -> None:
        """Loads torch-layout ``(weight (out, in), bias | None)`` pairs."""
        for linear, (w, b) in ((self.linear_Q, q), (self.linear_K, k), (self.linear_V, v),
                               (self.out_proj, out)):
            w = _to_array(w, "weight")
            expected = (linear.out_features, linear.in_features)
            if w.shape != expected:
                raise ValueError(f"weight has shape {w.shape}; expected {expected}")
            linear.kernel.set_value(w.T)
            if (b is None) != (linear.bias is None):
                raise ValueError("bias presence must match the module's bias setting")
            if b is not None:
                linear.bias.set_value(_to_array(b, "bias"))

    @classmethod
    def _from_torch_like(cls, other: Any) -> MultiheadAttention:
        in_bias = getattr(other, "in_proj_bias", None)
        observed = cls(other.embed_dim, other.num_heads, float(other.dropout),
                       in_bias is not None, getattr(other, "bias_k", None) is not None,
                       bool(other.add_zero_attn), other.kdim, other.vdim,
                       bool(other.batch_first))
        e = other.embed_dim
        if getattr(other, "_qkv_same_embed_dim", True):
            w = _to_array(other.in_proj_weight, "in_proj_weight")
            weights = [w[:e], w[e:2 * e], w[2 * e:]]
        else:
            weights = [_to_array(getattr(other, f"{n}_proj_weight"), f"{n}_proj_weight")
                       for n in "qkv"]
        if in_bias is None:
            biases = [None] * 3
        else:
            b = _to_array(in_bias, "in_proj_bias")
            biases = [b[:e], b[e:2 * e], b[2 * e:]]
        out_bias = getattr(other.out_proj, "bias", None)
        observed._load(*zip(weights, biases),
                       (other.out_proj.weight, None if out_bias is None else out_bias))
        if observed.bias_k is not None:
            observed.bias_k.set_value(_to_array(other.bias_k, "bias_k"))
            observed.bias_v.set_value(_to_array(other.bias_v, "bias_v"))
        return observed

    @classmethod
    def _from_flax(cls, other: nnx.MultiHeadAttention) -> MultiheadAttention:
        from flax.nnx.nn.attention import dot_product_attention
        e = other.in_features
        if not (other.qkv_features == e and other.out_features == e):
            raise ValueError("MultiheadAttention.from_float: nnx.MultiHeadAttention needs "
                             "in_features == qkv_features == out_features (torch's "
                             f"embed_dim); got {e}, {other.qkv_features}, "
                             f"{other.out_features}")
        if getattr(other, "num_kv_heads", other.num_heads) not in (None, other.num_heads):
            raise ValueError("MultiheadAttention.from_float: grouped-query attention "
                             "(num_kv_heads != num_heads) has no torch counterpart")
        if other.attention_fn is not dot_product_attention or other.normalize_qk \
                or other.decode:
            raise ValueError("MultiheadAttention.from_float: nnx.MultiHeadAttention must use "
                             "the default attention_fn, normalize_qk=False and no decode")
        kv = other.in_kv_features
        observed = cls(e, other.num_heads, float(other.dropout_rate), other.use_bias,
                       kdim=kv, vdim=kv, batch_first=True)

        def torch_pair(general: Any, out: bool = False) -> tuple:
            kernel = _to_array(general.kernel, "kernel")
            kernel = kernel.reshape(e, -1) if out else kernel.reshape(kernel.shape[0], e)
            bias = None if general.bias is None else _to_array(general.bias, "bias").reshape(e)
            return kernel.T, bias

        observed._load(torch_pair(other.query), torch_pair(other.key),
                       torch_pair(other.value), torch_pair(other.out, out=True))
        return observed

    @classmethod
    def from_float(cls, other: Any) -> MultiheadAttention:
        """The observed MHA: ``other``'s weights in this class (dropout kept, eval mode),
        ``qconfig`` set and ``jaxq.prepare`` run on it, as torch's. The float sources are
        listed in the module docs.

        Raises:
          TypeError: an unsupported source.
          ValueError: no ``qconfig``; an ``nnx.MultiHeadAttention`` without torch's
            structure.
        """
        if not hasattr(other, "qconfig"):
            raise ValueError("MultiheadAttention.from_float: the float module must have a "
                             "'qconfig'")
        if isinstance(other, MultiheadAttention):
            from jaxq.eager._tree import copy_model
            observed = copy_model(other)
            observed.__class__ = cls
        elif isinstance(other, nnx.MultiHeadAttention):
            observed = cls._from_flax(other)
        elif isinstance(other, nnx.Module) or not hasattr(other, "embed_dim"):
            raise TypeError("MultiheadAttention.from_float expects a "
                            "jaxq.nn.quantizable.MultiheadAttention, an "
                            "nnx.MultiHeadAttention or an object with "
                            "torch.nn.MultiheadAttention's attributes; got "
                            f"{type(other).__name__}")
        else:
            observed = cls._from_torch_like(other)
        observed.qconfig = other.qconfig
        observed.deterministic = True
        return _prepare_like(observed, training=False)

    @classmethod
    def from_observed(cls, other: Any) -> Any:
        raise NotImplementedError("It looks like you are trying to prepare an MHA module. "
                                  "Please, see the examples on quantizable MHAs "
                                  "(jaxq.nn.quantized.MultiheadAttention.from_observed).")


MultiheadAttention._FLOAT_MODULE = (MultiheadAttention,)
