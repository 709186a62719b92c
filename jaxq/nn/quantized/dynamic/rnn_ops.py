"""The pure parts of the dynamic quantized recurrent modules: one gate GEMM
(:func:`dynamic_gate_linear`, torch's x86 ``quantized::linear_dynamic``) and the float32
gate math of one step of each cell in ATen's order of operations, plus the weight packing
the cells and layers share. See :mod:`jaxq.nn.quantized.dynamic.rnn` for the semantics."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxq.core.qtensor import QTensor
from jaxq.kernels import PackedWeight, quantized_matmul
from jaxq.nn import layout
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized.dynamic.linear import _DYNAMIC, _FP16_MAX
from jaxq.nn.quantized.dynamic.linear import _weight_dtype as _linear_weight_dtype
from jaxq.nn.quantized.functional import pack_linear_weight
from jaxq.nn.quantized.linear import packed_weight_to_qtensor


__all__ = ["dynamic_gate_linear", "rnn_tanh_cell", "rnn_relu_cell", "lstm_cell", "gru_cell"]

# _DYNAMIC is the dynamic Linear's: torch's x86 linear_dynamic quantizes activations with
# reduce_range in the cells (quantized_*_cell_dynamic) and the layers (cell params v2) alike.
_SIGMOIDS = (jax.nn.sigmoid,)
_TANHS = (jnp.tanh,)
_RELUS = (jax.nn.relu,)

GateWeight = Any  # a PackedWeight (qint8) or a float16 (out, in) array


def _weight_dtype(dtype: Any) -> str:
    """'qint8' or 'float16' (the weight dtypes torch's dynamic RNNs support)."""
    try:
        return _linear_weight_dtype(dtype)
    except (TypeError, ValueError):
        raise ValueError(f"Unsupported dtype for dynamic RNN quantization: dtype={dtype!r} "
                         "(qint8 or float16)") from None


# ----------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------

def dynamic_gate_linear(x: jax.Array, weight: GateWeight, bias: jax.Array | None
                        ) -> jax.Array:
    """One gate GEMM ``x @ W.T + b`` as torch's dynamic RNNs run it.

    Args:
      x: float32 ``(..., K)``; a qint8 weight quantizes it per call from its min/max.
      weight: a :class:`~jaxq.kernels.PackedWeight` ``(G, K)`` (qint8) or a float16
        ``(G, K)`` array.
      bias: float32 ``(G,)`` or None.

    Returns:
      float32 ``(..., G)``.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized.functional import pack_linear_weight
      >>> w = pack_linear_weight(jaxq.quantize_per_tensor(jnp.ones((2, 3)), 0.5, 0,
      ...                                                  jaxq.qint8))
      >>> dynamic_gate_linear(jnp.ones((1, 3)), w, None).shape
      (1, 2)
    """
    x = x.astype(jnp.float32)
    if not isinstance(weight, PackedWeight):
        y = jnp.matmul(x, weight.astype(jnp.float32).T, precision=jax.lax.Precision.HIGHEST)
        return y if bias is None else y + bias
    return quantized_matmul(x, weight, dynamic=_DYNAMIC, bias=bias)


def rnn_tanh_cell(gates_ih: jax.Array, h: jax.Array, w_hh: GateWeight,
                  b_hh: jax.Array | None) -> jax.Array:
    """``tanh(linear_hh(h) + gates_ih)`` with ``gates_ih = linear_ih(x)`` ``(N, H)``."""
    return jnp.tanh(dynamic_gate_linear(h, w_hh, b_hh) + gates_ih)


def rnn_relu_cell(gates_ih: jax.Array, h: jax.Array, w_hh: GateWeight,
                  b_hh: jax.Array | None) -> jax.Array:
    """``relu(linear_hh(h) + gates_ih)`` with ``gates_ih = linear_ih(x)`` ``(N, H)``."""
    return jnp.maximum(dynamic_gate_linear(h, w_hh, b_hh) + gates_ih, 0.0)


def lstm_cell(gates_ih: jax.Array, state: tuple[jax.Array, jax.Array], w_hh: GateWeight,
              b_hh: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """ATen's ``LSTMCell`` step.

    Args:
      gates_ih: ``linear_ih(x)`` float32 ``(N, 4H)``, gates in torch's order i, f, g, o.
      state: ``(h, c)`` float32 ``(N, H)`` each.
      w_hh, b_hh: the recurrent weight ``(4H, H)`` and bias ``(4H,)`` (or None).

    Returns:
      ``(h', c')`` float32 ``(N, H)`` each.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized.functional import pack_linear_weight
      >>> w_hh = pack_linear_weight(jaxq.quantize_per_tensor(jnp.ones((8, 2)), 0.1, 0,
      ...                                                     jaxq.qint8))
      >>> h, c = lstm_cell(jnp.zeros((3, 8)), (jnp.zeros((3, 2)), jnp.ones((3, 2))), w_hh,
      ...                  None)
      >>> round(float(c[0, 0]), 4)  # sigmoid(0) * 1 + sigmoid(0) * tanh(0)
      0.5
    """
    h, c = state
    gates = dynamic_gate_linear(h, w_hh, b_hh) + gates_ih
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c_new = f * c + i * g
    return o * jnp.tanh(c_new), c_new


def gru_cell(gates_ih: jax.Array, h: jax.Array, w_hh: GateWeight,
             b_hh: jax.Array | None) -> jax.Array:
    """ATen's ``GRUCell`` step.

    Args:
      gates_ih: ``linear_ih(x)`` float32 ``(N, 3H)``, gates in torch's order r, z, n.
      h: float32 ``(N, H)``.
      w_hh, b_hh: the recurrent weight ``(3H, H)`` and bias ``(3H,)`` (or None).

    Returns:
      ``h'`` float32 ``(N, H)``: ``(h - n) * z + n`` with
      ``n = tanh(ih_n + r * (W_hn h + b_hn))``.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized.functional import pack_linear_weight
      >>> w_hh = pack_linear_weight(jaxq.quantize_per_tensor(jnp.zeros((6, 2)), 0.1, 0,
      ...                                                     jaxq.qint8))
      >>> gru_cell(jnp.zeros((1, 6)), jnp.ones((1, 2)), w_hh, None).tolist()  # z = 0.5
      [[0.5, 0.5]]
    """
    ih_r, ih_z, ih_n = jnp.split(gates_ih, 3, axis=-1)
    hh_r, hh_z, hh_n = jnp.split(dynamic_gate_linear(h, w_hh, b_hh), 3, axis=-1)
    r = jax.nn.sigmoid(hh_r + ih_r)
    z = jax.nn.sigmoid(hh_z + ih_z)
    n = jnp.tanh(ih_n + hh_n * r)
    return (h - n) * z + n


# ----------------------------------------------------------------------------------------
# Weight handling shared by cells and layers
# ----------------------------------------------------------------------------------------

def _pack_gate_weight(w: Any, shape: tuple[int, int], dtype: str, name: str) -> GateWeight:
    if tuple(w.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}; got {tuple(w.shape)}")
    if dtype == "qint8":
        if not isinstance(w, QTensor):
            raise TypeError(f"{name} must be a qint8 QTensor for a qint8 dynamic RNN; got "
                            f"{type(w).__name__}")
        return pack_linear_weight(w)
    if isinstance(w, QTensor):
        raise TypeError(f"{name} must be a float array for a float16 dynamic RNN; got a "
                        "QTensor")
    w = jnp.clip(jnp.asarray(w, jnp.float32), -_FP16_MAX, _FP16_MAX)
    return w.astype(jnp.float16)


def _gate_bias(b: Any, size: int, name: str) -> jax.Array | None:
    if b is None:
        return None
    b = jnp.asarray(_utils.variable_value(b), jnp.float32)
    if b.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},); got {tuple(b.shape)}")
    return b


def _unpack_gate_weight(value: GateWeight, dtype: str) -> Any:
    return packed_weight_to_qtensor(value) if dtype == "qint8" else value


def _check_float(x: Any, name: str) -> jax.Array:
    if isinstance(x, QTensor):
        raise TypeError(f"{name} must be a float array (dynamic quantized RNNs quantize "
                        "activations themselves); got a QTensor")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a float array; got {x.dtype}")
    return x


def _weight_factory(mod: Any) -> Callable[[], Any]:
    if not hasattr(mod, "qconfig"):
        raise ValueError("Input float module must have qconfig defined")
    qconfig = mod.qconfig
    factory = getattr(qconfig, "weight", None) if qconfig is not None else None
    if factory is None:
        from jaxq.qconfig import default_dynamic_qconfig
        factory = default_dynamic_qconfig.weight
    return factory


def _quantize_flax_kernel(factory: Callable[[], Any], kernel: jax.Array, dtype: str,
                          owner: str) -> Any:
    """torch's ``_observe_and_quantize_weight`` on a Flax kernel ``(in, out)``: a fresh
    observer per weight; returns torch's ``(out, in)`` layout."""
    if dtype == "float16":
        return layout.kernel_to_torch(kernel)
    observer = layout.weight_observer_for_kernel(factory, kernel)
    observer(kernel)
    qweight, _ = _utils.quantize_kernel(kernel, observer, owner)
    return qweight


def _activation_is(fn: Any, candidates: tuple[Callable, ...]) -> bool:
    return any(fn is c for c in candidates)
