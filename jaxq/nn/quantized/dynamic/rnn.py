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

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.dtypes import qint8
from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized._utils import QuantizedBuffer, QuantizedWeight

from jaxq.nn.quantized.dynamic.rnn_ops import (
    dynamic_gate_linear, rnn_tanh_cell, rnn_relu_cell, lstm_cell, gru_cell, GateWeight,
    _SIGMOIDS, _TANHS, _RELUS, _weight_dtype, _pack_gate_weight, _gate_bias,
    _unpack_gate_weight, _check_float, _weight_factory, _quantize_flax_kernel, _activation_is)
from jaxq.nn.quantized.dynamic.rnn_layers import GRU, LSTM, RNNBase, rnn_layers

__all__ = ["RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "LSTM", "GRU",
           "rnn_layers", "dynamic_gate_linear", "rnn_tanh_cell", "rnn_relu_cell", "lstm_cell",
           "gru_cell"]

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
