"""``torch.ao.nn.quantizable`` on Flax NNX: float modules written with observable
sub-ops (``LSTMCell``, ``LSTM``, ``MultiheadAttention``), which ``jaxq.prepare`` observes
and ``jaxq.convert`` turns into :class:`jaxq.nn.quantized.LSTM` /
:class:`jaxq.nn.quantized.MultiheadAttention`.
"""

from jaxq.nn.quantizable.rnn import LSTM, LSTMCell, _LSTMLayer, _LSTMSingleLayer  # noqa: F401
from jaxq.nn.quantizable.activation import MultiheadAttention  # noqa: F401

__all__ = ["LSTM", "LSTMCell", "MultiheadAttention"]
