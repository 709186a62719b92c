"""Dynamic quantized recurrent cells and layers (``torch.ao.nn.quantized.dynamic``
``RNNCell`` / ``LSTMCell`` / ``GRUCell`` / ``LSTM`` / ``GRU``) on NNX.

Float in, float out. Every gate GEMM (``W_ih x + b_ih`` and ``W_hh h + b_hh``) is torch's
x86 ``quantized::linear_dynamic``: an int8 weight (packed once) and an activation
quantized per call to quint8 ``[0, 127]`` (``reduce_range``) from that call's min/max,
run by :func:`jaxq.kernels.quantized_matmul` - the same path as
:class:`jaxq.nn.quantized.dynamic.Linear`, bit for bit. ``dtype=float16`` keeps float16
weights and computes ``x @ W.T + b`` in float32 (torch's fbgemm fp16 GEMM, equal to
float32 rounding). The element-wise gate math is float32 in ATen's order of operations:

* RNN:  ``h' = act(linear_hh(h) + linear_ih(x))``
* LSTM: ``g = linear_hh(h) + linear_ih(x)``; ``i, f, c~, o = sigmoid, sigmoid, tanh,
  sigmoid`` of the four chunks; ``c' = f * c + i * c~``; ``h' = o * tanh(c')``
* GRU:  ``r = sigmoid(hh_r + ih_r)``, ``z = sigmoid(hh_z + ih_z)``,
  ``n = tanh(ih_n + hh_n * r)``, ``h' = (h - n) * z + n`` (``b_hn`` inside ``r *``).

XLA's ``sigmoid`` / ``tanh`` differ from ATen's vectorized (Sleef) ones by up to 2 / 4
ulp, so outputs agree with torch to a few float32 ulps (the integer GEMMs themselves are
exact; a relu ``RNNCell`` is bit-exact). Over a sequence such an ulp could, rarely, move
the next step's dynamic activation quantization by one level.

The multi-layer :class:`LSTM` / :class:`GRU` follow ``torch.quantized_lstm`` /
``quantized_gru`` on CPU: each layer (and direction) runs its input GEMM once over the
whole sequence - so the activation qparams come from the min/max of the full
``(T, N, I)`` layer input - then scans the recurrent step with ``jax.lax.scan``.

Deviation: torch's dynamic cells only take a batched ``(N, I)`` input; these also take
an unbatched ``(I,)`` one (as ``torch.nn.LSTMCell``), run as a batch of one.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.nn.quantized.dynamic.rnn import LSTMCell
  >>> cell = LSTMCell(3, 2)
  >>> h, c = cell(jnp.ones((4, 3)))
  >>> h.shape, c.shape
  ((4, 2), (4, 2))
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.dtypes import qint8
from jaxq.core.qtensor import QTensor
from jaxq.kernels import PackedWeight, quantized_matmul
from jaxq.nn import layout
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized._utils import QuantizedBuffer, QuantizedWeight
from jaxq.nn.quantized.dynamic.linear import _DYNAMIC, _FP16_MAX
from jaxq.nn.quantized.dynamic.linear import _weight_dtype as _linear_weight_dtype
from jaxq.nn.quantized.functional import pack_linear_weight
from jaxq.nn.quantized.linear import packed_weight_to_qtensor

__all__ = ["RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "LSTM", "GRU",
           "rnn_layers", "dynamic_gate_linear", "rnn_tanh_cell", "rnn_relu_cell", "lstm_cell",
           "gru_cell"]

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


# ----------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------

class RNNCellBase(nnx.Module):
    """Shared state and checks of the dynamic quantized cells.

    Args:
      input_size, hidden_size: sizes.
      bias: keep float biases ``bias_ih`` / ``bias_hh`` (zeros initially).
      num_chunks: gates per cell (1 RNN, 4 LSTM, 3 GRU).
      dtype: qint8 (int8 weights, dynamic int8 activations) or float16.

    State: ``_packed_weight_ih`` ``(num_chunks*H, I)`` and ``_packed_weight_hh``
    ``(num_chunks*H, H)`` (packed int8 or float16, :class:`QuantizedWeight`), ``bias_ih``
    and ``bias_hh`` float32 ``(num_chunks*H,)`` or None (:class:`QuantizedBuffer`). The
    initial weights are zeros (torch draws random ones); load real ones with
    :meth:`set_weight_bias` or :meth:`from_float`.
    """

    _NUM_CHUNKS: ClassVar[int] = 1
    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = ()

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 num_chunks: int | None = None, dtype: Any = qint8):
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if bias not in (True, False):
            raise TypeError(f"bias must be a bool; got {bias!r}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.bias = bool(bias)
        self.num_chunks = int(num_chunks if num_chunks is not None else self._NUM_CHUNKS)
        self.weight_dtype = _weight_dtype(dtype)
        gates = self.num_chunks * self.hidden_size
        self._packed_weight_ih = QuantizedWeight(None)
        self._packed_weight_hh = QuantizedWeight(None)
        self.bias_ih = QuantizedBuffer(None)
        self.bias_hh = QuantizedBuffer(None)
        zero_w = (lambda k: QTensor(jnp.zeros((gates, k), jnp.int8), 1.0, 0, qint8)) \
            if self.weight_dtype == "qint8" else (lambda k: jnp.zeros((gates, k)))
        zero_b = jnp.zeros((gates,), jnp.float32) if self.bias else None
        self.set_weight_bias(zero_w(self.input_size), zero_w(self.hidden_size), zero_b,
                             zero_b)

    def _get_name(self) -> str:
        return "DynamicQuantizedRNNBase"

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    # -- weights -------------------------------------------------------------------------

    def set_weight_bias(self, weight_ih: Any, weight_hh: Any = None, bias_ih: Any = None,
                        bias_hh: Any = None) -> None:
        """Loads torch-layout weights.

        Either torch's form, one dict ``{"weight": {"weight_ih", "weight_hh"}, "bias":
        {"bias_ih", "bias_hh"}}``, or the four arrays: ``weight_ih`` ``(G*H, I)`` and
        ``weight_hh`` ``(G*H, H)`` (qint8 QTensors, per-tensor or per-channel on axis 0,
        for qint8; float arrays for float16, saturated to the float16 range as torch),
        ``bias_ih`` / ``bias_hh`` float ``(G*H,)`` or None. Gate order: torch's (LSTM i, f,
        g, o; GRU r, z, n).
        """
        if isinstance(weight_ih, dict):
            if weight_hh is not None or bias_ih is not None or bias_hh is not None:
                raise TypeError("set_weight_bias takes either one weight_bias_dict or the "
                                "four arrays, not both")
            weights, biases = weight_ih["weight"], weight_ih["bias"]
            weight_ih, weight_hh = weights["weight_ih"], weights["weight_hh"]
            bias_ih, bias_hh = biases["bias_ih"], biases["bias_hh"]
        if weight_hh is None:
            raise TypeError("set_weight_bias needs weight_hh")
        gates = self.num_chunks * self.hidden_size
        w_ih = _pack_gate_weight(weight_ih, (gates, self.input_size), self.weight_dtype,
                                 "weight_ih")
        w_hh = _pack_gate_weight(weight_hh, (gates, self.hidden_size), self.weight_dtype,
                                 "weight_hh")
        b_ih = _gate_bias(bias_ih, gates, "bias_ih")
        b_hh = _gate_bias(bias_hh, gates, "bias_hh")
        self._packed_weight_ih.set_value(w_ih)
        self._packed_weight_hh.set_value(w_hh)
        self.bias_ih.set_value(b_ih)
        self.bias_hh.set_value(b_hh)

    def weight_ih(self) -> Any:
        """qint8 QTensor ``(G*H, I)`` (or the float16 array)."""
        return _unpack_gate_weight(self._packed_weight_ih.get_value(), self.weight_dtype)

    def weight_hh(self) -> Any:
        """qint8 QTensor ``(G*H, H)`` (or the float16 array)."""
        return _unpack_gate_weight(self._packed_weight_hh.get_value(), self.weight_dtype)

    def get_weight(self) -> dict[str, Any]:
        return {"weight_ih": self.weight_ih(), "weight_hh": self.weight_hh()}

    def get_bias(self) -> dict[str, Any]:
        return {"bias_ih": self.bias_ih.get_value(), "bias_hh": self.bias_hh.get_value()}

    # -- checks --------------------------------------------------------------------------

    def _prepare_input(self, input: Any) -> tuple[jax.Array, bool]:
        x = _check_float(input, "input")
        if x.ndim not in (1, 2):
            raise ValueError(f"{type(self).__name__}: input must be 1-D (input_size,) or "
                             f"2-D (batch, input_size); got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input has inconsistent input_size: got {x.shape[-1]}, "
                             f"expected {self.input_size}")
        batched = x.ndim == 2
        return (x if batched else x[None]).astype(jnp.float32), batched

    def _prepare_hidden(self, x: jax.Array, hx: Any, batched: bool, label: str
                        ) -> jax.Array:
        if hx is None:
            return jnp.zeros((x.shape[0], self.hidden_size), jnp.float32)
        name = f"hx{label}"
        h = _check_float(hx, name)
        if h.ndim != (2 if batched else 1):
            raise ValueError(f"{name} must be {'2' if batched else '1'}-D for a "
                             f"{'2' if batched else '1'}-D input; got shape {h.shape}")
        h = h if batched else h[None]
        if h.shape[0] != x.shape[0]:
            raise ValueError(f"Input batch size {x.shape[0]} doesn't match hidden{label} "
                             f"batch size {h.shape[0]}")
        if h.shape[1] != self.hidden_size:
            raise ValueError(f"hidden{label} has inconsistent hidden_size: got "
                             f"{h.shape[1]}, expected {self.hidden_size}")
        return h.astype(jnp.float32)

    def _gates_ih(self, x: jax.Array) -> jax.Array:
        return dynamic_gate_linear(x, self._packed_weight_ih.get_value(),
                                   self.bias_ih.get_value())

    def _recurrent(self) -> tuple[GateWeight, jax.Array | None]:
        return self._packed_weight_hh.get_value(), self.bias_hh.get_value()

    # -- conversion ----------------------------------------------------------------------

    @classmethod
    def _class_for(cls, mod: Any) -> type[RNNCellBase]:
        """The cell class converting ``mod`` (``RNNCellBase.from_float`` picks it by the
        float module's type, as torch does)."""
        candidates = [cls] if cls._FLOAT_MODULE else [RNNCell, LSTMCell, GRUCell]
        for candidate in candidates:
            if isinstance(mod, candidate._FLOAT_MODULE):
                return candidate
        names = ", ".join(f"nnx.{t.__name__}" for c in candidates for t in c._FLOAT_MODULE)
        raise TypeError(f"nn.quantized.dynamic.{cls.__name__}.from_float only works for "
                        f"{names}; got {type(mod).__name__}")

    @classmethod
    def _flax_weights(cls, mod: Any) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Flax kernels ``(I, G*H)``, ``(H, G*H)`` and biases ``(G*H,)`` in torch's gate
        order (each concrete cell defines it)."""
        raise TypeError(f"{cls.__name__} converts no Flax cell; use RNNCell, LSTMCell or "
                        "GRUCell")

    @classmethod
    def _from_float_kwargs(cls, mod: Any) -> dict[str, Any]:
        return {}

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Any:
        """From the Flax cell with a ``qconfig`` (torch's ``RNNCellBase.from_float``).

        A fresh ``qconfig.weight()`` observer (``default_dynamic_qconfig``'s when the
        qconfig has none) is run on each of the input and recurrent kernels; its dtype
        (qint8 or float16) is the weight dtype. Flax keeps one bias per gate (on the input
        side for ``SimpleCell`` / ``GRUCell``, on the recurrent side for the LSTM cells);
        the other side gets a zero bias, which leaves the output unchanged.
        """
        cls = cls._class_for(mod)
        factory = _weight_factory(mod)
        dtype = _weight_dtype(getattr(factory(), "dtype", None))
        kernel_ih, kernel_hh, b_ih, b_hh = cls._flax_weights(mod)
        owner = f"nnqd.{cls.__name__}"
        qmod = cls(int(kernel_ih.shape[0]), int(kernel_hh.shape[0]), bias=True,
                   dtype=dtype, **cls._from_float_kwargs(mod))
        qmod.set_weight_bias(_quantize_flax_kernel(factory, kernel_ih, dtype, owner),
                             _quantize_flax_kernel(factory, kernel_hh, dtype, owner),
                             b_ih, b_hh)
        return qmod

    @classmethod
    def from_reference(cls, ref_mod: Any) -> Any:
        """From a reference cell (``get_quantized_weight_ih/hh()``, ``bias_ih/hh``)."""
        kwargs = {}
        if hasattr(ref_mod, "nonlinearity"):
            kwargs["nonlinearity"] = ref_mod.nonlinearity
        qmod = cls(ref_mod.input_size, ref_mod.hidden_size, ref_mod.bias,
                   dtype=getattr(ref_mod, "weight_ih_dtype", qint8), **kwargs)
        qmod.set_weight_bias(ref_mod.get_quantized_weight_ih(),
                             ref_mod.get_quantized_weight_hh(),
                             _utils.variable_value(getattr(ref_mod, "bias_ih", None)),
                             _utils.variable_value(getattr(ref_mod, "bias_hh", None)))
        return qmod


def _kernel(linear: Any) -> jax.Array:
    return jnp.asarray(_utils.variable_value(linear.kernel), jnp.float32)


class RNNCell(RNNCellBase):
    """Dynamic quantized Elman cell: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Args:
      input_size, hidden_size, bias, dtype: see :class:`RNNCellBase`.
      nonlinearity: ``'tanh'`` or ``'relu'``.

    Call: ``cell(input, hx=None)`` with ``input`` ``(N, I)`` or ``(I,)`` and ``hx`` ``(N,
    H)`` / ``(H,)`` (zeros when None); returns ``h'`` float32 of ``hx``'s shape.

    ``from_float`` takes an ``nnx.SimpleCell`` (``residual=False``, tanh or relu).

    Example:
      >>> import jax.numpy as jnp
      >>> RNNCell(3, 2, nonlinearity="relu")(jnp.ones((4, 3))).shape
      (4, 2)
    """

    _NUM_CHUNKS = 1
    _FLOAT_MODULE = (nnx.SimpleCell,)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", dtype: Any = qint8):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: nonlinearity={nonlinearity!r} (expected "
                             "'tanh' or 'relu')")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, num_chunks=1, dtype=dtype)

    def _get_name(self) -> str:
        return "DynamicQuantizedRNNCell"

    def __call__(self, input: Any, hx: Any = None) -> jax.Array:
        x, batched = self._prepare_input(input)
        h = self._prepare_hidden(x, hx, batched, "")
        step = rnn_tanh_cell if self.nonlinearity == "tanh" else rnn_relu_cell
        out = step(self._gates_ih(x), h, *self._recurrent())
        return out if batched else out[0]

    forward = __call__

    @classmethod
    def _flax_weights(cls, mod: Any):
        if getattr(mod, "residual", False):
            raise ValueError("RNNCell.from_float: a residual nnx.SimpleCell has no torch "
                             "equivalent (residual=True)")
        hidden = int(mod.hidden_features)
        bias = _utils.float_bias(mod.dense_i)
        return (_kernel(mod.dense_i), _kernel(mod.dense_h),
                bias if bias is not None else jnp.zeros((hidden,), jnp.float32),
                jnp.zeros((hidden,), jnp.float32))

    @classmethod
    def _from_float_kwargs(cls, mod: Any) -> dict[str, Any]:
        fn = mod.activation_fn
        if _activation_is(fn, _TANHS):
            return {"nonlinearity": "tanh"}
        if _activation_is(fn, _RELUS):
            return {"nonlinearity": "relu"}
        raise ValueError(f"RNNCell.from_float: activation_fn must be tanh or relu (torch's "
                         f"nonlinearity); got {fn!r}")


def _check_gate_activations(mod: Any, owner: str) -> None:
    if not _activation_is(mod.gate_fn, _SIGMOIDS):
        raise ValueError(f"{owner}.from_float: gate_fn must be sigmoid (torch's cell); got "
                         f"{mod.gate_fn!r}")
    if not _activation_is(mod.activation_fn, _TANHS):
        raise ValueError(f"{owner}.from_float: activation_fn must be tanh (torch's cell); "
                         f"got {mod.activation_fn!r}")


class LSTMCell(RNNCellBase):
    """Dynamic quantized LSTM cell (torch gate order i, f, g, o).

    Call: ``cell(input, hx=None)`` with ``input`` ``(N, I)`` or ``(I,)`` and ``hx = (h,
    c)``, each ``(N, H)`` / ``(H,)`` (zeros when None); returns ``(h', c')`` float32.

    ``from_float`` takes an ``nnx.LSTMCell`` or ``nnx.OptimizedLSTMCell`` (sigmoid gates,
    tanh activation). Flax's carry is ``(c, h)``; torch's (and this cell's) is ``(h, c)``.

    Example:
      >>> import jax.numpy as jnp
      >>> h, c = LSTMCell(3, 2)(jnp.ones((3,)))
      >>> h.shape
      (2,)
    """

    _NUM_CHUNKS = 4
    _FLOAT_MODULE = (nnx.LSTMCell, nnx.OptimizedLSTMCell)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 dtype: Any = qint8):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, dtype=dtype)

    def _get_name(self) -> str:
        return "DynamicQuantizedLSTMCell"

    def __call__(self, input: Any, hx: Any = None) -> tuple[jax.Array, jax.Array]:
        x, batched = self._prepare_input(input)
        if hx is None:
            h = c = self._prepare_hidden(x, None, batched, "")
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTMCell: hx must be a tuple (h, c) or None; got "
                                f"{type(hx).__name__}")
            h = self._prepare_hidden(x, hx[0], batched, "[0]")
            c = self._prepare_hidden(x, hx[1], batched, "[1]")
        h_new, c_new = lstm_cell(self._gates_ih(x), (h, c), *self._recurrent())
        return (h_new, c_new) if batched else (h_new[0], c_new[0])

    forward = __call__

    @classmethod
    def _flax_weights(cls, mod: Any):
        _check_gate_activations(mod, "LSTMCell")
        hidden = int(mod.hidden_features)
        if isinstance(mod, nnx.OptimizedLSTMCell):
            kernel_ih, kernel_hh = _kernel(mod.dense_i), _kernel(mod.dense_h)
            b_hh = _utils.float_bias(mod.dense_h)
        else:
            inputs = (mod.ii, mod.if_, mod.ig, mod.io)
            hiddens = (mod.hi, mod.hf, mod.hg, mod.ho)
            kernel_ih = jnp.concatenate([_kernel(m) for m in inputs], axis=1)
            kernel_hh = jnp.concatenate([_kernel(m) for m in hiddens], axis=1)
            b_hh = jnp.concatenate([_utils.float_bias(m) for m in hiddens])
        return kernel_ih, kernel_hh, jnp.zeros((4 * hidden,), jnp.float32), b_hh


class GRUCell(RNNCellBase):
    """Dynamic quantized GRU cell (torch gate order r, z, n).

    Call: ``cell(input, hx=None)`` with ``input`` ``(N, I)`` or ``(I,)`` and ``hx`` ``(N,
    H)`` / ``(H,)``; returns ``h'`` float32.

    ``from_float`` takes an ``nnx.GRUCell`` (sigmoid gates, tanh). Flax's GRU is torch's
    formulation (``n = tanh(W_in x + b_in + r * (W_hn h))``) with no recurrent bias, so
    it maps to ``b_hh = 0``; Flax's update ``(1 - z) * n + z * h`` equals torch's ``(h -
    n) * z + n`` up to float rounding (this cell computes torch's).

    Example:
      >>> import jax.numpy as jnp
      >>> GRUCell(3, 2)(jnp.ones((4, 3)), jnp.zeros((4, 2))).shape
      (4, 2)
    """

    _NUM_CHUNKS = 3
    _FLOAT_MODULE = (nnx.GRUCell,)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 dtype: Any = qint8):
        super().__init__(input_size, hidden_size, bias, num_chunks=3, dtype=dtype)

    def _get_name(self) -> str:
        return "DynamicQuantizedGRUCell"

    def __call__(self, input: Any, hx: Any = None) -> jax.Array:
        x, batched = self._prepare_input(input)
        h = self._prepare_hidden(x, hx, batched, "")
        out = gru_cell(self._gates_ih(x), h, *self._recurrent())
        return out if batched else out[0]

    forward = __call__

    @classmethod
    def _flax_weights(cls, mod: Any):
        _check_gate_activations(mod, "GRUCell")
        hidden = int(mod.hidden_features)
        bias = _utils.float_bias(mod.dense_i)
        return (_kernel(mod.dense_i), _kernel(mod.dense_h),
                bias if bias is not None else jnp.zeros((3 * hidden,), jnp.float32),
                jnp.zeros((3 * hidden,), jnp.float32))


# ----------------------------------------------------------------------------------------
# Multi-layer LSTM / GRU
# ----------------------------------------------------------------------------------------

LayerWeights = tuple[GateWeight, Any, GateWeight, Any]  # w_ih, b_ih, w_hh, b_hh


def _scan_direction(mode: str, layer_input: jax.Array, weights: LayerWeights,
                    h0: jax.Array, c0: jax.Array | None, reverse: bool
                    ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """One layer, one direction: ``(T, N, H)`` outputs and the final ``h`` (and ``c``)."""
    w_ih, b_ih, w_hh, b_hh = weights
    # torch (CPU FullLayer / FullBidirectionalLayer) runs the input GEMM once over the
    # whole sequence: its activation qparams come from the (T, N, I) min/max.
    gates_ih = dynamic_gate_linear(layer_input, w_ih, b_ih)
    if mode == "LSTM":
        def step(state, gates):
            state = lstm_cell(gates, state, w_hh, b_hh)
            return state, state[0]
        (h, c), ys = jax.lax.scan(step, (h0, c0), gates_ih, reverse=reverse)
        return ys, h, c

    def gru_step(h, gates):
        h = gru_cell(gates, h, w_hh, b_hh)
        return h, h
    h, ys = jax.lax.scan(gru_step, h0, gates_ih, reverse=reverse)
    return ys, h, None


def rnn_layers(mode: str, input: jax.Array, h0: jax.Array, c0: jax.Array | None,
               weights: list[LayerWeights], num_layers: int, bidirectional: bool
               ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """torch's ``quantized_lstm`` / ``quantized_gru`` (eval, time-major) as pure math.

    Args:
      mode: ``"LSTM"`` or ``"GRU"``.
      input: float32 ``(T, N, I)``.
      h0, c0: float32 ``(num_layers * num_directions, N, H)`` (``c0`` None for GRU).
      weights: per layer then direction, ``(w_ih, b_ih, w_hh, b_hh)`` with packed int8
        (or float16) weights ``(G*H, I_layer)`` / ``(G*H, H)``.
      num_layers, bidirectional: the stack.

    Returns:
      ``(output (T, N, D*H), h_n (L*D, N, H), c_n (L*D, N, H) or None)``.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized.functional import pack_linear_weight
      >>> w = lambda *shape: pack_linear_weight(jaxq.quantize_per_tensor(
      ...     jnp.zeros(shape), 0.1, 0, jaxq.qint8))
      >>> out, h_n, _ = rnn_layers("GRU", jnp.ones((5, 2, 3)), jnp.zeros((1, 2, 4)), None,
      ...                          [(w(12, 3), None, w(12, 4), None)], 1, False)
      >>> out.shape, h_n.shape
      ((5, 2, 4), (1, 2, 4))
    """
    directions = 2 if bidirectional else 1
    layer_input = input
    final_h, final_c = [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            ys, h, c = _scan_direction(mode, layer_input, weights[index], h0[index],
                                       None if c0 is None else c0[index],
                                       reverse=direction == 1)
            outputs.append(ys)
            final_h.append(h)
            final_c.append(c)
        layer_input = outputs[0] if directions == 1 else jnp.concatenate(outputs, axis=-1)
    h_n = jnp.stack(final_h)
    c_n = None if c0 is None else jnp.stack(final_c)
    return layer_input, h_n, c_n


class RNNBase(nnx.Module):
    """Dynamic quantized multi-layer LSTM / GRU (``torch.ao.nn.quantized.dynamic.RNNBase``).

    Args:
      mode: ``"LSTM"`` or ``"GRU"``.
      input_size, hidden_size: sizes.
      num_layers: stacked layers.
      bias: float biases (zeros initially).
      batch_first: input / output ``(N, T, ...)`` instead of ``(T, N, ...)``.
      dropout: validated as torch does and ignored (quantized RNNs run in eval mode).
      bidirectional: add a reverse direction (outputs concatenated on the last axis).
      dtype: qint8 or float16 weights.

    State, per layer ``k`` and direction suffix ``""`` / ``"_reverse"`` (torch's names):
    ``weight_ih_l{k}{suffix}`` / ``weight_hh_l{k}{suffix}`` (packed int8 or float16,
    :class:`QuantizedWeight`) and ``bias_ih_l{k}{suffix}`` / ``bias_hh_l{k}{suffix}``
    (float32 or None, :class:`QuantizedBuffer`). The initial weights are zeros (torch
    draws random ones); load real ones with :meth:`set_weight_bias`.

    The time loop is a ``jax.lax.scan`` (layers and directions are unrolled), so a jitted
    call compiles once per input shape. Packed sequences are not supported.
    """

    _MODE: ClassVar[str] = ""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, dtype: Any = qint8):
        if mode == "LSTM":
            num_chunks = 4
        elif mode == "GRU":
            num_chunks = 3
        else:
            raise ValueError(f"Unrecognized RNN mode: mode={mode!r} (expected 'LSTM' or "
                             "'GRU')")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if (isinstance(dropout, bool) or not isinstance(dropout, (int, float))
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed; got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            import warnings
            warnings.warn("dropout option adds dropout after all but last recurrent layer, "
                          "so non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        for name, value in (("bias", bias), ("batch_first", batch_first),
                            ("bidirectional", bidirectional)):
            if value not in (True, False):
                raise TypeError(f"{name} must be a bool; got {value!r}")
        self.mode = mode
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.dtype = _weight_dtype(dtype)
        self.num_chunks = num_chunks
        self.version = 2
        self.training = False
        gates = num_chunks * self.hidden_size
        zeros: dict[str, Any] = {}
        for name, in_size in self._layer_inputs():
            for kind, size in (("ih", in_size), ("hh", self.hidden_size)):
                setattr(self, f"weight_{kind}_{name}", QuantizedWeight(None))
                setattr(self, f"bias_{kind}_{name}", QuantizedBuffer(None))
                zeros[f"weight_{kind}_{name}"] = (
                    QTensor(jnp.zeros((gates, size), jnp.int8), 1.0, 0, qint8)
                    if self.dtype == "qint8" else jnp.zeros((gates, size), jnp.float32))
                zeros[f"bias_{kind}_{name}"] = (jnp.zeros((gates,), jnp.float32)
                                                if self.bias else None)
        self.set_weight_bias(zeros)

    def _layer_inputs(self) -> list[tuple[str, int]]:
        """``("l{k}{suffix}", layer input size)`` per layer then direction."""
        directions = 2 if self.bidirectional else 1
        names = []
        for layer in range(self.num_layers):
            size = self.input_size if layer == 0 else self.hidden_size * directions
            for direction in range(directions):
                names.append((f"l{layer}{'_reverse' if direction else ''}", size))
        return names

    def _get_name(self) -> str:
        return "DynamicQuantized" + self.mode

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # -- weights -------------------------------------------------------------------------

    def set_weight_bias(self, weight_bias_dict: dict[str, Any]) -> None:
        """Loads torch's flat dict ``{"weight_ih_l0": w, "bias_ih_l0": b, ...,
        "weight_hh_l0_reverse": ...}``: qint8 QTensors (float arrays for float16) in torch's
        ``(G*H, in)`` layout and gate order, float ``(G*H,)`` biases or None."""
        if not isinstance(weight_bias_dict, dict):
            raise TypeError("weight_bias_dict must be a dict of torch-named weights and "
                            f"biases; got {type(weight_bias_dict).__name__}")
        gates = self.num_chunks * self.hidden_size
        packed = {}
        for name, in_size in self._layer_inputs():
            for kind, size in (("ih", in_size), ("hh", self.hidden_size)):
                w_key, b_key = f"weight_{kind}_{name}", f"bias_{kind}_{name}"
                if w_key not in weight_bias_dict:
                    raise ValueError(f"weight_bias_dict is missing {w_key!r}")
                packed[w_key] = _pack_gate_weight(weight_bias_dict[w_key], (gates, size),
                                                  self.dtype, w_key)
                packed[b_key] = _gate_bias(weight_bias_dict.get(b_key), gates, b_key)
        for key, value in packed.items():
            getattr(self, key).set_value(value)

    def _weight_bias(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {"weight": {}, "bias": {}}
        for name, _ in self._layer_inputs():
            for kind in ("ih", "hh"):
                result["weight"][f"weight_{kind}_{name}"] = _unpack_gate_weight(
                    getattr(self, f"weight_{kind}_{name}").get_value(), self.dtype)
                result["bias"][f"bias_{kind}_{name}"] = getattr(
                    self, f"bias_{kind}_{name}").get_value()
        return result

    def get_weight(self) -> dict[str, Any]:
        """``{"weight_ih_l0": QTensor (G*H, I), ...}`` (float16 arrays for float16)."""
        return self._weight_bias()["weight"]

    def get_bias(self) -> dict[str, Any]:
        return self._weight_bias()["bias"]

    @classmethod
    def from_reference(cls, ref_mod: Any) -> RNNBase:
        """From a reference LSTM / GRU (torch's protocol: its sizes, ``weight_ih_l0_dtype``
        and ``get_quantized_weight_bias_dict()``)."""
        if not hasattr(ref_mod, "weight_ih_l0_dtype"):
            raise ValueError("from_reference needs a reference module with "
                             "weight_ih_l0_dtype (weight_ih_l0 must exist)")
        qmod = cls(ref_mod.input_size, ref_mod.hidden_size, ref_mod.num_layers,
                   ref_mod.bias, ref_mod.batch_first, ref_mod.dropout,
                   ref_mod.bidirectional, dtype=ref_mod.weight_ih_l0_dtype)
        qmod.set_weight_bias(ref_mod.get_quantized_weight_bias_dict())
        return qmod

    def _layer_weights(self) -> list[LayerWeights]:
        return [(getattr(self, f"weight_ih_{name}").get_value(),
                 getattr(self, f"bias_ih_{name}").get_value(),
                 getattr(self, f"weight_hh_{name}").get_value(),
                 getattr(self, f"bias_hh_{name}").get_value())
                for name, _ in self._layer_inputs()]

    # -- forward -------------------------------------------------------------------------

    def _check_input(self, input: Any) -> jax.Array:
        x = _check_float(input, "input")
        if x.ndim != 3:
            raise ValueError(f"input must have 3 dimensions, got {x.ndim} (shape {x.shape}; "
                             "packed sequences and unbatched input are not supported)")
        if x.shape[-1] != self.input_size:
            raise ValueError("input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {x.shape[-1]}")
        x = jnp.swapaxes(x, 0, 1) if self.batch_first else x
        if x.shape[0] == 0:
            raise ValueError("Expected sequence length to be larger than 0 in RNN")
        return x.astype(jnp.float32)

    def _initial_state(self, x: jax.Array, hx: Any, label: str) -> jax.Array:
        directions = 2 if self.bidirectional else 1
        expected = (self.num_layers * directions, x.shape[1], self.hidden_size)
        if hx is None:
            return jnp.zeros(expected, jnp.float32)
        h = _check_float(hx, f"hx{label}")
        if tuple(h.shape) != expected:
            raise ValueError(f"Expected hidden{label} size {expected}, got {list(h.shape)}")
        return h.astype(jnp.float32)

    def _output(self, output: jax.Array) -> jax.Array:
        return jnp.swapaxes(output, 0, 1) if self.batch_first else output


class LSTM(RNNBase):
    """Dynamic quantized multi-layer LSTM (torch's ``nnqd.LSTM``, eval mode).

    Call: ``lstm(input, hx=None)`` with ``input`` ``(T, N, I)`` (``(N, T, I)`` when
    ``batch_first``) and ``hx = (h0, c0)`` each ``(num_layers * num_directions, N, H)``
    (zeros when None); returns ``(output (T, N, D*H), (h_n, c_n))``.

    Example:
      >>> import jax.numpy as jnp
      >>> out, (h, c) = LSTM(3, 2, num_layers=2, bidirectional=True)(jnp.ones((5, 4, 3)))
      >>> out.shape, h.shape
      ((5, 4, 4), (4, 4, 2))
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__("LSTM", *args, **kwargs)

    def __call__(self, input: Any, hx: Any = None
                 ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        x = self._check_input(input)
        if hx is None:
            h0 = c0 = self._initial_state(x, None, "")
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0) or None; got "
                                f"{type(hx).__name__}")
            h0 = self._initial_state(x, hx[0], "[0]")
            c0 = self._initial_state(x, hx[1], "[1]")
        output, h_n, c_n = rnn_layers("LSTM", x, h0, c0, self._layer_weights(),
                                      self.num_layers, self.bidirectional)
        return self._output(output), (h_n, c_n)

    forward = __call__


class GRU(RNNBase):
    """Dynamic quantized multi-layer GRU (torch's ``nnqd.GRU``, eval mode).

    Call: ``gru(input, hx=None)`` with ``input`` ``(T, N, I)`` (``(N, T, I)`` when
    ``batch_first``) and ``hx`` ``(num_layers * num_directions, N, H)`` (zeros when None);
    returns ``(output (T, N, D*H), h_n)``.

    Example:
      >>> import jax.numpy as jnp
      >>> out, h = GRU(3, 2, batch_first=True)(jnp.ones((4, 5, 3)))
      >>> out.shape, h.shape
      ((4, 5, 2), (1, 4, 2))
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__("GRU", *args, **kwargs)

    def __call__(self, input: Any, hx: Any = None) -> tuple[jax.Array, jax.Array]:
        x = self._check_input(input)
        h0 = self._initial_state(x, hx, "")
        output, h_n, _ = rnn_layers("GRU", x, h0, None, self._layer_weights(),
                                    self.num_layers, self.bidirectional)
        return self._output(output), h_n

    forward = __call__
