"""Reference quantized modules (``torch.ao.nn.quantized.reference``) on Flax NNX.

Float modules that quantize then dequantize their weight in the forward (``get_weight``)
and otherwise compute in float32; ``convert(..., is_reference=True)`` produces them.
jaxq modules are channels-last and keep Flax kernel layouts; ``get_weight()`` /
``get_quantized_weight()`` return torch's layout.
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
