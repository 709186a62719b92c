"""``torch.ao.nn.intrinsic.quantized``: fused quantized modules (QTensor in, QTensor out).

Subpackage ``dynamic``: ``LinearReLU`` (float in, float out). ConvAdd2d, ConvAddReLU2d,
LinearLeakyReLU and LinearTanh (onednn-only in torch) are not provided.
"""

from jaxq.nn.intrinsic.quantized.modules import (
    BNReLU2d, BNReLU3d, ConvReLU1d, ConvReLU2d, ConvReLU3d, LinearReLU)
from jaxq.nn.intrinsic.quantized import dynamic  # noqa: E402,F401

__all__ = ["BNReLU2d", "BNReLU3d", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "LinearReLU"]
