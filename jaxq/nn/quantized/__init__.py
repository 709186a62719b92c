"""``torch.ao.nn.quantized`` on Flax NNX: modules that take and return :class:`jaxq.QTensor`.

``torch.ao.nn.quantized.X`` is ``jaxq.nn.quantized.X``; the functional ops are
``jaxq.nn.quantized.functional``, the dynamic modules ``jaxq.nn.quantized.dynamic``, the
reference modules (float compute on quantize-dequantized weights)
``jaxq.nn.quantized.reference``, and
the ``torch.ops.quantized`` element-wise / normalization ops ``jaxq.nn.quantized.ops``.

Layout: activations channels-last (``(N, H, W, C)``...); ``weight()`` returns weights in
torch's layout; Flax kernels are transposed once, in ``from_float``. State (int8 weights,
float bias, output ``scale``/``zero_point``) lives in
:class:`~jaxq.nn.quantized._utils.QuantizedState` variables, not ``nnx.Param``.
Calling a quantized module with a float array raises ``TypeError`` (torch: "Could not
run 'quantized::...' with arguments from the 'CPU' backend").

``LSTM`` and ``MultiheadAttention`` are the converted forms of
:mod:`jaxq.nn.quantizable`'s modules (``from_observed``). Not provided: PReLU.
"""

from jaxq.nn.quantized import dynamic, functional, ops, reference  # noqa: F401
from jaxq.nn.quantized._utils import QuantizedBuffer, QuantizedState, QuantizedWeight
from jaxq.nn.quantized.activation import ELU, Hardswish, LeakyReLU, ReLU6, Sigmoid, Softmax
from jaxq.nn.quantized.conv import Conv1d, Conv2d, Conv3d
from jaxq.nn.quantized.conv_transpose import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from jaxq.nn.quantized.embedding import Embedding, EmbeddingBag, EmbeddingPackedParams
from jaxq.nn.quantized.functional_modules import FloatFunctional, FXFloatFunctional, QFunctional
from jaxq.nn.quantized.linear import Linear, LinearPackedParams
from jaxq.nn.quantized.normalization import (
    BatchNorm2d, BatchNorm3d, GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d,
    LayerNorm)
from jaxq.nn.quantized.stubs import DeQuantize, Dropout, Quantize

__all__ = [
    "BatchNorm2d", "BatchNorm3d", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
    "ConvTranspose2d", "ConvTranspose3d", "DeQuantize", "ELU",
    "Embedding", "EmbeddingBag",
    "GroupNorm", "Hardswish", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
    "LayerNorm", "LeakyReLU", "Linear", "Quantize", "ReLU6", "Sigmoid", "Softmax",
    "Dropout", "FloatFunctional", "FXFloatFunctional", "QFunctional",
    # jaxq extras
    "EmbeddingPackedParams", "LinearPackedParams", "QuantizedState", "QuantizedWeight",
    "QuantizedBuffer",
]

# --- quantized forms of jaxq.nn.quantizable (added by the quantizable helper) ---
from jaxq.nn.quantized.rnn import LSTM  # noqa: E402
from jaxq.nn.quantized.activation_mha import MultiheadAttention  # noqa: E402

__all__ += ["LSTM", "MultiheadAttention"]
