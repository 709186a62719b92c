"""Float sources -> the quantizable LSTM: the ``from_float`` half of
:mod:`jaxq.nn.quantizable.rnn`.

Float sources for :meth:`LSTM.from_float <jaxq.nn.quantizable.LSTM.from_float>`
(torch's is ``nn.LSTM``; Flax has no multi-layer LSTM):

* an unprepared :class:`~jaxq.nn.quantizable.LSTM` (jaxq's float LSTM is this class, as
  torch also accepts a quantizable LSTM as the float model);
* ``nnx.RNN`` over an ``nnx.LSTMCell`` / ``nnx.OptimizedLSTMCell`` (one layer;
  ``batch_first = not time_major``; ``reverse`` / ``keep_order`` / ``return_carry``
  are not carried over) and ``nnx.Bidirectional`` of two such RNNs (one bidirectional
  layer; the backward RNN must run reversed with ``keep_order=True``, Flax's usual
  setup). The result follows torch's call convention, not ``nnx.RNN``'s;
* any object with ``nn.LSTM``'s attributes (``input_size``, ..., ``weight_ih_l0``, ...),
  e.g. a ``torch.nn.LSTM`` (weights converted with ``numpy``).

Flax cells keep one bias per gate on the hidden side; the input side gets a zero bias.
:meth:`LSTMCell.from_float <jaxq.nn.quantizable.LSTMCell.from_float>` takes an
``nnx.LSTMCell`` / ``nnx.OptimizedLSTMCell``.

The classes live in :mod:`jaxq.nn.quantizable.rnn` (which imports this module), so they
are imported here where a function needs them.

Example:
  >>> from flax import nnx
  >>> from jaxq.nn.quantizable import LSTM
  >>> from jaxq.qconfig import default_qconfig
  >>> rnn = nnx.RNN(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)))
  >>> rnn.qconfig = default_qconfig
  >>> observed = LSTM.from_float(rnn)
  >>> observed.input_size, observed.hidden_size, observed.batch_first
  (3, 4, True)
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

__all__ = ["cell_from_float", "layer_from_float", "lstm_from_flax", "lstm_from_float"]


def _prepare_like(observed: nnx.Module, training: bool) -> nnx.Module:
    """torch's ``prepare`` / ``prepare_qat`` (in place) of a freshly built module."""
    from jaxq.eager import prepare, prepare_qat
    if training:
        return prepare_qat(observed, inplace=True)
    return prepare(observed, inplace=True)


def _flax_cell_params(cell: Any) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """torch-layout ``(wi, wh, bi, bh)`` of a Flax LSTM cell (the dynamic cell's rule)."""
    from jaxq.nn.quantized.dynamic.rnn import LSTMCell as DynamicLSTMCell
    kernel_ih, kernel_hh, b_ih, b_hh = DynamicLSTMCell._flax_weights(cell)
    return kernel_ih.T, kernel_hh.T, b_ih, b_hh


def cell_from_float(cls: type, other: Any, split_gates: bool = False) -> Any:
    """:meth:`LSTMCell.from_float <jaxq.nn.quantizable.LSTMCell.from_float>` for ``cls``."""
    if not isinstance(other, cls._FLOAT_MODULE):
        raise TypeError(f"LSTMCell.from_float expects nnx.LSTMCell or "
                        f"nnx.OptimizedLSTMCell; got {type(other).__name__}")
    if not hasattr(other, "qconfig"):
        raise ValueError("LSTMCell.from_float: the float module must have a 'qconfig'")
    wi, wh, bi, bh = _flax_cell_params(other)
    observed = cls.from_params(wi, wh, bi, bh, split_gates=split_gates)
    observed._set_qconfig(other.qconfig)
    return observed


def layer_from_float(cls: type, other: Any, layer_idx: int = 0, qconfig: Any = None,
                     **kwargs: Any) -> Any:
    """``_LSTMLayer.from_float`` for ``cls``: layer ``layer_idx`` of an object with
    ``nn.LSTM``'s attributes."""
    from jaxq.nn.quantizable.rnn import _LSTMSingleLayer
    if not hasattr(other, "qconfig") and qconfig is None:
        raise ValueError("_LSTMLayer.from_float: other must have a qconfig or qconfig "
                         "must be given")
    input_size = kwargs.get("input_size", other.input_size)
    hidden_size = kwargs.get("hidden_size", other.hidden_size)
    bias = kwargs.get("bias", other.bias)
    batch_first = kwargs.get("batch_first", other.batch_first)
    bidirectional = kwargs.get("bidirectional", other.bidirectional)
    split_gates = kwargs.get("split_gates", False)
    layer = cls(input_size, hidden_size, bias, batch_first, bidirectional,
                split_gates=split_gates)
    layer.qconfig = getattr(other, "qconfig", qconfig)
    suffixes = ["", "_reverse"] if other.bidirectional else [""]
    for suffix, name in zip(suffixes, ("layer_fw", "layer_bw")):
        params = [getattr(other, f"{kind}_l{layer_idx}{suffix}", None)
                  for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        setattr(layer, name, _LSTMSingleLayer.from_params(*params,
                                                          split_gates=split_gates))
    return layer


def lstm_from_flax(cls: type, other: Any, split_gates: bool) -> Any:
    """A one-layer ``cls`` (LSTM) from an ``nnx.RNN`` or ``nnx.Bidirectional`` of LSTM
    cells (see the module docs)."""
    from jaxq.nn.quantizable.rnn import LSTMCell
    if isinstance(other, nnx.Bidirectional):
        forward, backward = other.forward_rnn, other.backward_rnn
        for rnn, name in ((forward, "forward_rnn"), (backward, "backward_rnn")):
            if not isinstance(rnn, nnx.RNN):
                raise TypeError(f"LSTM.from_float: nnx.Bidirectional.{name} must be an "
                                f"nnx.RNN; got {type(rnn).__name__}")
        if forward.reverse or not backward.reverse or not backward.keep_order:
            raise ValueError("LSTM.from_float: nnx.Bidirectional must run forward_rnn "
                             "forward and backward_rnn with reverse=True, "
                             "keep_order=True (torch's bidirectional layer)")
        rnns = [forward, backward]
    else:
        if other.reverse:
            raise ValueError("LSTM.from_float: a reversed nnx.RNN has no torch LSTM "
                             "counterpart")
        rnns = [other]
    time_major = rnns[0].time_major
    for rnn in rnns:
        if not isinstance(rnn.cell, LSTMCell._FLOAT_MODULE):
            raise TypeError("LSTM.from_float: the nnx.RNN cell must be an nnx.LSTMCell "
                            f"or nnx.OptimizedLSTMCell; got {type(rnn.cell).__name__}")
        if rnn.time_major != time_major:
            raise ValueError("LSTM.from_float: both RNNs must have the same time_major")
    params = [_flax_cell_params(rnn.cell) for rnn in rnns]
    wi, wh = params[0][0], params[0][1]
    lstm = cls(int(wi.shape[1]), int(wh.shape[1]), 1, True, not time_major, 0.0,
               len(rnns) == 2, split_gates=split_gates)
    weights = {}
    for suffix, (w_ih, w_hh, b_ih, b_hh) in zip(["l0", "l0_reverse"], params):
        weights.update({f"weight_ih_{suffix}": w_ih, f"weight_hh_{suffix}": w_hh,
                        f"bias_ih_{suffix}": b_ih, f"bias_hh_{suffix}": b_hh})
    lstm.set_weight_bias(weights)
    return lstm


def lstm_from_float(cls: type, other: Any, qconfig: Any = None,
                    split_gates: bool = False) -> Any:
    """:meth:`LSTM.from_float <jaxq.nn.quantizable.LSTM.from_float>` for ``cls``."""
    from jaxq.nn.quantizable.rnn import LSTM
    if not hasattr(other, "qconfig") and not qconfig:
        raise ValueError("LSTM.from_float: other must have a qconfig or qconfig must be "
                         "given")
    if isinstance(other, LSTM):
        from jaxq.eager._tree import copy_model
        observed = copy_model(other)
        observed.__class__ = cls
        if split_gates != other.split_gates:
            raise ValueError("LSTM.from_float: split_gates must match the source "
                             f"quantizable LSTM's ({other.split_gates})")
    elif isinstance(other, (nnx.RNN, nnx.Bidirectional)):
        observed = cls._from_flax(other, split_gates)
    elif isinstance(other, nnx.Module) or not hasattr(other, "weight_ih_l0"):
        raise TypeError("LSTM.from_float expects a jaxq.nn.quantizable.LSTM, an nnx.RNN "
                        "/ nnx.Bidirectional over LSTM cells, or an object with "
                        f"torch.nn.LSTM's attributes; got {type(other).__name__}")
    else:
        observed = cls(other.input_size, other.hidden_size, other.num_layers,
                       bool(other.bias), bool(other.batch_first), other.dropout,
                       bool(other.bidirectional), split_gates=split_gates)
        weights = {}
        for suffix, _ in observed._cells():
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                value = getattr(other, f"{kind}_{suffix}", None)
                if value is not None:
                    weights[f"{kind}_{suffix}"] = value
        observed.set_weight_bias(weights)
    observed.qconfig = getattr(other, "qconfig", None) or qconfig
    for layer in observed.layers:
        layer.qconfig = observed.qconfig
    training = getattr(other, "deterministic", True) is False
    observed.deterministic = not training
    return _prepare_like(observed, training)
