"""Quantizable LSTM (``torch.ao.nn.quantizable.LSTMCell`` / ``LSTM``) on NNX.

The float LSTM written with observable sub-ops, as torch's: each cell has an input-gate
and a hidden-gate ``nnx.Linear`` (``igates``, ``hgates``; ``4 * hidden`` outputs, gate
order i, f, g, o as torch, split with ``chunk``), a :class:`FloatFunctional` for every
add / mul (``gates``, ``fgate_cx``, ``igate_cgate``, ``fgate_cx_igate_cgate``,
``ogate_cy``), and ``jaxq.nn.Sigmoid`` / ``Tanh`` modules for the gate activations::

    gates = gates.add(igates(x), hgates(h))
    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of gates.chunk(4)
    c' = fgate_cx_igate_cgate.add(fgate_cx.mul(f, c), igate_cgate.mul(i, g))
    h' = ogate_cy.mul(o, tanh(c'))

``jaxq.prepare`` attaches observers to the Linears' and FloatFunctionals' outputs;
``jaxq.convert`` turns the Linears into :class:`jaxq.nn.quantized.Linear` and the
FloatFunctionals into :class:`~jaxq.nn.quantized.QFunctional`, after which the same
module code runs on :class:`jaxq.QTensor` inputs (the quantized form is
:class:`jaxq.nn.quantized.LSTM`). The sub-op helpers of :mod:`jaxq.nn.quantizable._ops`
pick the float or quantized op by the array kind, as torch's tensor dispatch does.

Layout: torch's. ``LSTM`` takes ``(T, N, I)`` (``(N, T, I)`` with ``batch_first=True``,
Flax's ``nnx.RNN`` default) and returns ``(output, (h_n, c_n))`` with ``h_n``/``c_n``
``(num_layers * num_directions, N, H)``; the cell takes ``(N, I)`` and ``(h, c)`` (torch's
order; Flax's carry is ``(c, h)``). Kernels are Flax's ``(in, out)``;
:meth:`LSTM.set_weight_bias` and :meth:`LSTMCell.from_params` take torch's
``(4 * H, in)`` weights. The time loop is a Python loop (unrolled under ``jit``), as
torch's, because every step updates the observers.

Float sources for ``from_float`` (an unprepared :class:`LSTM`, ``nnx.RNN`` /
``nnx.Bidirectional`` over Flax LSTM cells, or anything with ``nn.LSTM``'s attributes such
as a ``torch.nn.LSTM``): see :mod:`jaxq.nn.quantizable.rnn_conversion`, which holds
the conversions.

Deviation: torch's ``nnqa.LSTM.__init__`` sizes every layer after the first for a
``hidden_size`` input, so a directly built ``nnqa.LSTM(..., num_layers=2,
bidirectional=True)`` fails on its first call (its ``from_float`` rebuilds the layers);
jaxq sizes them for ``num_directions * hidden_size`` inputs.

Training mode: torch's quantizable LSTM defaults to eval (``training=False``); jaxq's
module has ``deterministic=True`` (``nnx.Module.train()`` / ``eval()`` flip it), and
``from_float`` runs ``prepare_qat`` instead of ``prepare`` when the source has
``deterministic=False``. ``dropout`` is validated and ignored, as torch's.

Example:
  >>> import jax.numpy as jnp
  >>> lstm = LSTM(3, 4, num_layers=2)
  >>> out, (h, c) = lstm(jnp.ones((5, 2, 3)))
  >>> out.shape, h.shape
  ((5, 2, 4), (2, 2, 4))
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core.dtypes import quint8
from jaxq.core.qtensor import QTensor
from jaxq.nn.modules import Sigmoid, Tanh
from jaxq.nn.quantizable import _ops, rnn_conversion
# Re-exported: jaxq.nn.quantizable.activation imports _prepare_like from here.
from jaxq.nn.quantizable.rnn_conversion import _flax_cell_params, _prepare_like  # noqa: F401
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized.functional_modules import FloatFunctional

__all__ = ["LSTMCell", "LSTM", "_LSTMSingleLayer", "_LSTMLayer"]

_GATE_NAMES = ("input", "forget", "cell", "output")


def _to_array(value: Any, name: str) -> jax.Array:
    """A float32 array from an array, an NNX variable or a torch tensor (duck-typed)."""
    value = _utils.variable_value(value)
    if hasattr(value, "detach"):  # a torch tensor / parameter
        value = value.detach().cpu().numpy()
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(f"{name} must be a float array; got {array.dtype}")
    return array.astype(jnp.float32)


def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def _check_bool(value: Any, name: str) -> bool:
    if value not in (True, False):
        raise TypeError(f"{name} must be a bool; got {value!r}")
    return bool(value)


def _linear(in_features: int, out_features: int, bias: bool, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, use_bias=bias, rngs=rngs)


def _set_linear(linear: nnx.Linear, weight: jax.Array, bias: jax.Array | None) -> None:
    """Loads torch's ``(out, in)`` weight (transposed to Flax's kernel) and bias."""
    linear.kernel.set_value(weight.T)
    if bias is not None:
        linear.bias.set_value(bias)


def _index(x: Any, idx: int) -> Any:
    if isinstance(x, QTensor):
        return QTensor(x.data[idx], x.scale, x.zero_point, x.dtype)
    return x[idx]


class LSTMCell(nnx.Module):
    """A quantizable LSTM cell (torch's ``nnqa.LSTMCell``).

    Args:
      input_dim, hidden_dim: sizes (torch's names).
      bias: gate biases on both Linears.
      split_gates: one Linear / FloatFunctional per gate (``nnx.Dict`` keyed
        ``input``, ``forget``, ``cell``, ``output``) instead of fused ``4 * H`` ones.
      rngs: initialisation of the Linears (default ``nnx.Rngs(0)``).

    Call: ``cell(x, hidden=None)`` with ``x`` ``(N, I)`` (float or QTensor) and
    ``hidden = (h, c)`` ``(N, H)`` each (zeros when None; quantized zeros with
    ``initial_hidden_state_qparams`` / ``initial_cell_state_qparams`` and
    ``hidden_state_dtype`` / ``cell_state_dtype`` when ``x`` is a QTensor); returns
    ``(h', c')``.

    Example:
      >>> import jax.numpy as jnp
      >>> h, c = LSTMCell(3, 2)(jnp.ones((4, 3)))
      >>> h.shape, c.shape
      ((4, 2), (4, 2))
    """

    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = (nnx.LSTMCell, nnx.OptimizedLSTMCell)

    def __init__(self, input_dim: int, hidden_dim: int, bias: bool = True, *,
                 split_gates: bool = False, rngs: nnx.Rngs | None = None):
        self.input_size = _check_size(input_dim, "input_dim")
        self.hidden_size = _check_size(hidden_dim, "hidden_dim")
        self.bias = _check_bool(bias, "bias")
        self.split_gates = _check_bool(split_gates, "split_gates")
        rngs = nnx.Rngs(0) if rngs is None else rngs
        if not split_gates:
            self.igates = _linear(self.input_size, 4 * self.hidden_size, self.bias, rngs)
            self.hgates = _linear(self.hidden_size, 4 * self.hidden_size, self.bias, rngs)
            self.gates = FloatFunctional()
        else:
            self.igates = nnx.Dict({g: _linear(self.input_size, self.hidden_size, self.bias,
                                               rngs) for g in _GATE_NAMES})
            self.hgates = nnx.Dict({g: _linear(self.hidden_size, self.hidden_size,
                                               self.bias, rngs) for g in _GATE_NAMES})
            self.gates = nnx.Dict({g: FloatFunctional() for g in _GATE_NAMES})
        self.input_gate = Sigmoid()
        self.forget_gate = Sigmoid()
        self.cell_gate = Tanh()
        self.output_gate = Sigmoid()
        self.fgate_cx = FloatFunctional()
        self.igate_cgate = FloatFunctional()
        self.fgate_cx_igate_cgate = FloatFunctional()
        self.ogate_cy = FloatFunctional()
        self.initial_hidden_state_qparams: tuple[float, int] = (1.0, 0)
        self.initial_cell_state_qparams: tuple[float, int] = (1.0, 0)
        self.hidden_state_dtype = quint8
        self.cell_state_dtype = quint8

    def __call__(self, x: Any, hidden: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        if getattr(x, "ndim", None) != 2:
            raise ValueError(f"LSTMCell: x must be (batch, input_size); got shape "
                             f"{getattr(x, 'shape', None)}")
        if hidden is None or hidden[0] is None or hidden[1] is None:
            hidden = self.initialize_hidden(x.shape[0], _ops.is_quantized(x))
        hx, cx = hidden
        if not self.split_gates:
            gates = self.gates.add(self.igates(x), self.hgates(hx))
            input_gate, forget_gate, cell_gate, out_gate = _ops.chunk(gates, 4, axis=1)
        else:
            gate = {g: self.gates[g].add(self.igates[g](x), self.hgates[g](hx))
                    for g in _GATE_NAMES}
            input_gate, forget_gate, cell_gate, out_gate = (gate[g] for g in _GATE_NAMES)
        input_gate = _ops.sigmoid(input_gate, self.input_gate)
        forget_gate = _ops.sigmoid(forget_gate, self.forget_gate)
        cell_gate = _ops.tanh(cell_gate, self.cell_gate)
        out_gate = _ops.sigmoid(out_gate, self.output_gate)
        fgate_cx = self.fgate_cx.mul(forget_gate, cx)
        igate_cgate = self.igate_cgate.mul(input_gate, cell_gate)
        cy = self.fgate_cx_igate_cgate.add(fgate_cx, igate_cgate)
        # torch: a bare torch.tanh (not a module), so its qparams are the fixed ones.
        hy = self.ogate_cy.mul(out_gate, _ops.tanh(cy))
        return hy, cy

    forward = __call__

    def initialize_hidden(self, batch_size: int, is_quantized: bool = False
                          ) -> tuple[Any, Any]:
        """Zeros ``(batch_size, H)``; quantized with the initial-state qparams when
        ``is_quantized``."""
        shape = (batch_size, self.hidden_size)
        if is_quantized:
            return (_ops.quantized_zeros(shape, *self.initial_hidden_state_qparams,
                                         self.hidden_state_dtype),
                    _ops.quantized_zeros(shape, *self.initial_cell_state_qparams,
                                         self.cell_state_dtype))
        zeros = jnp.zeros(shape, jnp.float32)
        return zeros, zeros

    def _get_name(self) -> str:
        return "QuantizableLSTMCell"

    @classmethod
    def from_params(cls, wi: Any, wh: Any, bi: Any = None, bh: Any = None,
                    split_gates: bool = False) -> LSTMCell:
        """A cell from torch-layout weights ``wi`` ``(4H, I)``, ``wh`` ``(4H, H)`` and
        biases ``(4H,)`` (both or neither)."""
        if (bi is None) != (bh is None):
            raise ValueError("bi and bh must both be None or both be arrays")
        wi, wh = _to_array(wi, "wi"), _to_array(wh, "wh")
        if wi.ndim != 2 or wh.ndim != 2 or wi.shape[0] != wh.shape[0] \
                or wh.shape[0] != 4 * wh.shape[1]:
            raise ValueError(f"wi must be (4H, I) and wh (4H, H); got {wi.shape} and "
                             f"{wh.shape}")
        cell = cls(int(wi.shape[1]), int(wh.shape[1]), bias=bi is not None,
                   split_gates=split_gates)
        biases = [None, None] if bi is None else [_to_array(bi, "bi"), _to_array(bh, "bh")]
        for b, name in zip(biases, ("bi", "bh")):
            if b is not None and b.shape != (wi.shape[0],):
                raise ValueError(f"{name} must have shape ({wi.shape[0]},); got {b.shape}")
        if not split_gates:
            _set_linear(cell.igates, wi, biases[0])
            _set_linear(cell.hgates, wh, biases[1])
        else:
            for w, b, gates in ((wi, biases[0], cell.igates), (wh, biases[1], cell.hgates)):
                w_chunks = jnp.split(w, 4, axis=0)
                b_chunks = [None] * 4 if b is None else jnp.split(b, 4)
                for g, w_chunk, b_chunk in zip(_GATE_NAMES, w_chunks, b_chunks):
                    _set_linear(gates[g], w_chunk, b_chunk)
        return cell

    def _set_qconfig(self, qconfig: Any) -> None:
        self.qconfig = qconfig
        linears = ([self.igates, self.hgates] if not self.split_gates else
                   [*self.igates.values(), *self.hgates.values()])
        for linear in linears:
            linear.qconfig = qconfig

    @classmethod
    def from_float(cls, other: Any, use_precomputed_fake_quant: bool = False,
                   split_gates: bool = False) -> LSTMCell:
        """From an ``nnx.LSTMCell`` / ``nnx.OptimizedLSTMCell`` with a ``qconfig``
        (torch: ``nn.LSTMCell``). As torch's, the cell gets the qconfig but no observers
        (the enclosing ``prepare`` adds them).

        Raises:
          TypeError: another module type.
          ValueError: no ``qconfig`` attribute.
        """
        del use_precomputed_fake_quant
        return rnn_conversion.cell_from_float(cls, other, split_gates)


class _LSTMSingleLayer(nnx.Module):
    """One direction of one layer: the cell run over ``(T, N, I)`` (torch's)."""

    def __init__(self, input_dim: int, hidden_dim: int, bias: bool = True, *,
                 split_gates: bool = False, rngs: nnx.Rngs | None = None):
        self.cell = LSTMCell(input_dim, hidden_dim, bias=bias, split_gates=split_gates,
                             rngs=rngs)

    def __call__(self, x: Any, hidden: tuple[Any, Any] | None = None
                 ) -> tuple[Any, tuple[Any, Any]]:
        result = []
        for i in range(x.shape[0]):
            hidden = self.cell(_index(x, i), hidden)
            result.append(hidden[0])
        # Every step's h comes from the same ogate_cy: the qparams are shared.
        return _ops.stack_shared_qparams(result, 0), hidden

    forward = __call__

    @classmethod
    def from_params(cls, *args: Any, **kwargs: Any) -> _LSTMSingleLayer:
        cell = LSTMCell.from_params(*args, **kwargs)
        layer = cls(cell.input_size, cell.hidden_size, cell.bias,
                    split_gates=cell.split_gates)
        layer.cell = cell
        return layer


class _LSTMLayer(nnx.Module):
    """One (optionally bidirectional) layer (torch's ``_LSTMLayer``): ``layer_fw`` and,
    when bidirectional, ``layer_bw`` run on the time-reversed input."""

    def __init__(self, input_dim: int, hidden_dim: int, bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False, *,
                 split_gates: bool = False, rngs: nnx.Rngs | None = None):
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.batch_first = _check_bool(batch_first, "batch_first")
        self.bidirectional = _check_bool(bidirectional, "bidirectional")
        self.layer_fw = _LSTMSingleLayer(input_dim, hidden_dim, bias=bias,
                                         split_gates=split_gates, rngs=rngs)
        if self.bidirectional:
            self.layer_bw = _LSTMSingleLayer(input_dim, hidden_dim, bias=bias,
                                             split_gates=split_gates, rngs=rngs)

    def __call__(self, x: Any, hidden: tuple[Any, Any] | None = None
                 ) -> tuple[Any, tuple[Any, Any]]:
        if self.batch_first:
            x = _ops.swapaxes(x, 0, 1)
        hx_fw, cx_fw = (None, None) if hidden is None else hidden
        hidden_bw = None
        if self.bidirectional:
            hx_bw = None if hx_fw is None else hx_fw[1]
            hx_fw = None if hx_fw is None else hx_fw[0]
            cx_bw = None if cx_fw is None else cx_fw[1]
            cx_fw = None if cx_fw is None else cx_fw[0]
            if hx_bw is not None and cx_bw is not None:
                hidden_bw = hx_bw, cx_bw
        hidden_fw = None if hx_fw is None and cx_fw is None else (hx_fw, cx_fw)
        result_fw, hidden_fw = self.layer_fw(x, hidden_fw)
        if self.bidirectional:
            result_bw, hidden_bw = self.layer_bw(_ops.flip(x, 0), hidden_bw)
            result = _ops.cat([result_fw, _ops.flip(result_bw, 0)], axis=result_fw.ndim - 1)
            h = _ops.stack([hidden_fw[0], hidden_bw[0]], 0)
            c = _ops.stack([hidden_fw[1], hidden_bw[1]], 0)
        else:
            result = result_fw
            h, c = hidden_fw
        if self.batch_first:
            result = _ops.swapaxes(result, 0, 1)
        return result, (h, c)

    forward = __call__

    @classmethod
    def from_float(cls, other: Any, layer_idx: int = 0, qconfig: Any = None,
                   **kwargs: Any) -> _LSTMLayer:
        """Layer ``layer_idx`` of an object with ``nn.LSTM``'s attributes (torch's: no
        float counterpart; this mimics ``prepare``'s layer construction)."""
        return rnn_conversion.layer_from_float(cls, other, layer_idx, qconfig, **kwargs)


class LSTM(nnx.Module):
    """A quantizable multi-layer LSTM (torch's ``nnqa.LSTM``); see the module docs.

    Args (torch's): input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
      dropout=0.0 (validated, ignored with a warning), bidirectional=False, and
      keyword-only split_gates=False, rngs (default ``nnx.Rngs(0)``).

    Attributes:
      layers: ``nnx.List`` of :class:`_LSTMLayer` (each time-major; ``batch_first`` is
        handled here).
      deterministic: True (eval, torch's default for this module).

    Call: ``lstm(x, hidden=None)`` -> ``(output, (h_n, c_n))``; ``hidden`` is ``(h_0,
    c_0)`` each ``(num_layers * num_directions, N, H)`` or a list of per-layer tuples.
    """

    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = ()  # set below (the class itself)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, split_gates: bool = False,
                 rngs: nnx.Rngs | None = None):
        self.input_size = _check_size(input_size, "input_size")
        self.hidden_size = _check_size(hidden_size, "hidden_size")
        self.num_layers = _check_size(num_layers, "num_layers")
        self.bias = _check_bool(bias, "bias")
        self.batch_first = _check_bool(batch_first, "batch_first")
        self.bidirectional = _check_bool(bidirectional, "bidirectional")
        self.split_gates = _check_bool(split_gates, "split_gates")
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed; got {dropout!r}")
        self.dropout = float(dropout)
        if dropout > 0:
            warnings.warn("dropout option for quantizable LSTM is ignored. If you are "
                          "training, please, use nn.LSTM version followed by `prepare` "
                          "step.", stacklevel=2)
            if num_layers == 1:
                warnings.warn("dropout option adds dropout after all but last recurrent "
                              "layer, so non-zero dropout expects num_layers greater than "
                              f"1, but got dropout={dropout} and num_layers={num_layers}",
                              stacklevel=2)
        self.deterministic = True
        rngs = nnx.Rngs(0) if rngs is None else rngs
        sizes = [self.input_size] + [self.hidden_size * (2 if bidirectional else 1)] * (
            self.num_layers - 1)
        # Layers > 0 take num_directions * H inputs (torch's __init__ says H; see docs).
        self.layers = nnx.List([
            _LSTMLayer(size, self.hidden_size, self.bias, batch_first=False,
                       bidirectional=self.bidirectional, split_gates=split_gates, rngs=rngs)
            for size in sizes])

    def __call__(self, x: Any, hidden: Any = None) -> tuple[Any, tuple[Any, Any]]:
        if getattr(x, "ndim", None) != 3:
            raise ValueError(f"LSTM: x must be 3-d ((T, N, I), or (N, T, I) with "
                             f"batch_first); got shape {getattr(x, 'shape', None)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: x.shape[-1]={x.shape[-1]} must equal "
                             f"input_size={self.input_size}")
        if self.batch_first:
            x = _ops.swapaxes(x, 0, 1)
        max_batch_size = x.shape[1]
        num_directions = 2 if self.bidirectional else 1
        if hidden is None:
            shape = (num_directions, max_batch_size, self.hidden_size)
            if num_directions == 1:
                shape = shape[1:]  # torch's squeeze_(0)
            zeros = (_ops.quantized_zeros(shape, 1.0, 0, x.dtype) if _ops.is_quantized(x)
                     else jnp.zeros(shape, jnp.float32))
            hxcx = [(zeros, zeros) for _ in range(self.num_layers)]
        elif isinstance(hidden[0], (QTensor, jax.Array, np.ndarray)):
            shape = (self.num_layers, num_directions, max_batch_size, self.hidden_size)
            hx, cx = (_ops.reshape(h, shape) for h in hidden)
            squeeze = (lambda t: _ops.reshape(t, t.shape[1:])) if num_directions == 1 \
                else (lambda t: t)
            hxcx = [(squeeze(_index(hx, idx)), squeeze(_index(cx, idx)))
                    for idx in range(self.num_layers)]
        else:
            hxcx = list(hidden)
        hx_list, cx_list = [], []
        for idx, layer in enumerate(self.layers):
            x, (h, c) = layer(x, hxcx[idx])
            hx_list.append(h)
            cx_list.append(c)
        hx_tensor = _ops.stack(hx_list, 0)
        cx_tensor = _ops.stack(cx_list, 0)
        hx_tensor = _ops.reshape(hx_tensor, (-1,) + tuple(hx_tensor.shape[-2:]))
        cx_tensor = _ops.reshape(cx_tensor, (-1,) + tuple(cx_tensor.shape[-2:]))
        if self.batch_first:
            x = _ops.swapaxes(x, 0, 1)
        return x, (hx_tensor, cx_tensor)

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizableLSTM"

    # -- weights ---------------------------------------------------------------------------

    def _cells(self) -> list[tuple[str, LSTMCell]]:
        cells = []
        for idx, layer in enumerate(self.layers):
            cells.append((f"l{idx}", layer.layer_fw.cell))
            if self.bidirectional:
                cells.append((f"l{idx}_reverse", layer.layer_bw.cell))
        return cells

    def set_weight_bias(self, weight_bias_dict: dict[str, Any]) -> None:
        """Loads torch's flat ``nn.LSTM`` dict (``weight_ih_l0``, ``weight_hh_l0``,
        ``bias_ih_l0``, ``bias_hh_l0``, ``..._reverse``): weights ``(4H, in)``, biases
        ``(4H,)`` (torch tensors or arrays), as :class:`jaxq.nn.quantized.dynamic.LSTM`'s
        method of the same name.

        Raises:
          ValueError: a missing key or a wrong shape.
        """
        if not isinstance(weight_bias_dict, dict):
            raise TypeError("weight_bias_dict must be a dict of torch-named weights; got "
                            f"{type(weight_bias_dict).__name__}")
        for suffix, cell in self._cells():
            params = []
            for kind in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh")
                                                      if self.bias else ()):
                key = f"{kind}_{suffix}"
                if key not in weight_bias_dict:
                    raise ValueError(f"weight_bias_dict is missing {key!r}")
                params.append(weight_bias_dict[key])
            new = LSTMCell.from_params(*params, split_gates=self.split_gates)
            if (new.input_size, new.hidden_size) != (cell.input_size, cell.hidden_size):
                raise ValueError(f"weights for {suffix!r} have sizes (input "
                                 f"{new.input_size}, hidden {new.hidden_size}); expected "
                                 f"({cell.input_size}, {cell.hidden_size})")
            nnx.update(cell, nnx.state(new, nnx.Param))

    # -- conversion ------------------------------------------------------------------------

    @classmethod
    def _from_flax(cls, other: Any, split_gates: bool) -> LSTM:
        return rnn_conversion.lstm_from_flax(cls, other, split_gates)

    @classmethod
    def from_float(cls, other: Any, qconfig: Any = None, split_gates: bool = False) -> LSTM:
        """The observed LSTM: a copy of ``other``'s weights in this class, ``qconfig`` set
        and ``jaxq.prepare`` run on it (``prepare_qat`` when ``other.deterministic`` is
        False), as torch's. The float sources are listed in the module docs.

        Raises:
          TypeError: an unsupported source.
          ValueError: no qconfig (neither ``other.qconfig`` nor ``qconfig``).
        """
        return rnn_conversion.lstm_from_float(cls, other, qconfig, split_gates)

    @classmethod
    def from_observed(cls, other: Any) -> Any:
        raise NotImplementedError("It looks like you are trying to convert a "
                                  "non-quantizable LSTM module. Please, see the examples on "
                                  "quantizable LSTMs (jaxq.nn.quantized.LSTM.from_observed).")


LSTM._FLOAT_MODULE = (LSTM,)

