"""Dynamic quantized multi-layer ``LSTM`` / ``GRU`` (``torch.quantized_lstm`` /
``quantized_gru`` on CPU): each layer and direction runs its input GEMM once over the whole
sequence, then scans the recurrent step with ``jax.lax.scan``. Exported from
:mod:`jaxq.nn.quantized.dynamic.rnn` (see there for the semantics)."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.dtypes import qint8
from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized._utils import QuantizedBuffer, QuantizedWeight

from jaxq.nn.quantized.dynamic.rnn_ops import (
    dynamic_gate_linear, lstm_cell, gru_cell, GateWeight, _weight_dtype, _pack_gate_weight,
    _gate_bias, _unpack_gate_weight, _check_float, _quantize_flax_kernel, _weight_factory)

__all__ = ["RNNBase", "LSTM", "GRU", "rnn_layers"]

LayerWeights = tuple[GateWeight, Any, GateWeight, Any]  # w_ih, b_ih, w_hh, b_hh


def _gate_kernel_and_bias(linears: Any) -> tuple[jax.Array, jax.Array | None]:
    """The Flax ``(in, 4H)`` kernel and ``(4H,)`` bias of a quantizable LSTM cell's input or
    recurrent gates: one ``nnx.Linear``, or (``split_gates``) four in torch's gate order."""
    from jaxq.nn.quantizable.rnn import _GATE_NAMES  # lazy: quantizable imports us
    parts = [linears] if isinstance(linears, nnx.Linear) else [linears[g] for g in _GATE_NAMES]
    kernel = jnp.concatenate([p.kernel.get_value() for p in parts], axis=1)
    biases = [p.bias.get_value() if p.bias is not None else None for p in parts]
    bias = None if any(b is None for b in biases) else jnp.concatenate(biases)
    return kernel, bias


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

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> LSTM:
        """From a :class:`jaxq.nn.quantizable.LSTM` with a ``qconfig``: jaxq's float
        multi-layer LSTM, the role ``nn.LSTM`` plays for torch's ``nnqd.LSTM.from_float``.

        A fresh ``qconfig.weight()`` observer (``default_dynamic_qconfig``'s when the
        qconfig has none) runs on each gate weight, as torch's
        ``_observe_and_quantize_weight``; its dtype (qint8 or float16) is the weight dtype.

        Raises:
          TypeError: ``mod`` is not a ``jaxq.nn.quantizable.LSTM``.
          ValueError: ``mod`` has no ``qconfig``.
        """
        del use_precomputed_fake_quant
        from jaxq.nn import quantizable
        if not isinstance(mod, quantizable.LSTM):
            raise TypeError("nnqd.LSTM.from_float expects a jaxq.nn.quantizable.LSTM (jaxq's "
                            f"float nn.LSTM); got {type(mod).__name__}")
        factory = _weight_factory(mod)
        dtype = _weight_dtype(getattr(factory(), "dtype", None))
        weights: dict[str, Any] = {}
        for suffix, cell in mod._cells():
            for kind, linears in (("ih", cell.igates), ("hh", cell.hgates)):
                kernel, bias = _gate_kernel_and_bias(linears)
                weights[f"weight_{kind}_{suffix}"] = _quantize_flax_kernel(
                    factory, kernel, dtype, "nnqd.LSTM")
                weights[f"bias_{kind}_{suffix}"] = bias
        qmod = cls(mod.input_size, mod.hidden_size, mod.num_layers, mod.bias,
                   mod.batch_first, mod.dropout, mod.bidirectional, dtype=dtype)
        qmod.set_weight_bias(weights)
        return qmod

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
