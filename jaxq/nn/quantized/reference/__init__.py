"""Reference quantized modules (``torch.ao.nn.quantized.reference``) on Flax NNX.

Float modules that quantize then dequantize their weight in the forward (``get_weight``)
and otherwise compute in float32; ``convert(..., is_reference=True)`` produces them.
jaxq modules are channels-last and keep Flax kernel layouts; ``get_weight()`` /
``get_quantized_weight()`` return torch's layout.

Modules: :class:`Linear`, :class:`Conv1d` / :class:`Conv2d` / :class:`Conv3d`,
:class:`ConvTranspose1d` / ``2d`` / ``3d``, :class:`Embedding`, :class:`EmbeddingBag`,
:class:`RNNCell` / :class:`LSTMCell` / :class:`GRUCell`; the weight functions live in
:mod:`jaxq.nn.quantized.reference.utils`.
"""

from jaxq.nn.quantized.reference.conv import Conv1d, Conv2d, Conv3d
from jaxq.nn.quantized.reference.conv_transpose import (
    ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)
from jaxq.nn.quantized.reference.linear import Linear
from jaxq.nn.quantized.reference.rnn import GRUCell, LSTMCell, RNNCell, RNNCellBase
from jaxq.nn.quantized.reference.sparse import Embedding, EmbeddingBag
from jaxq.nn.quantized.reference.utils import ReferenceQuantizedModule

__all__ = ["ReferenceQuantizedModule", "Linear", "Conv1d", "Conv2d", "Conv3d",
           "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Embedding",
           "EmbeddingBag", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]
