"""``torch.ao.nn.quantized.dynamic``: float-in, float-out modules with quantized weights
(``Linear``, the recurrent cells ``RNNCell`` / ``LSTMCell`` / ``GRUCell``, and the
multi-layer ``LSTM`` / ``GRU``)."""

from jaxq.nn.quantized.dynamic.linear import Linear
from jaxq.nn.quantized.dynamic.rnn import (
    GRU, LSTM, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase)

__all__ = ["Linear", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "LSTM", "GRU"]
