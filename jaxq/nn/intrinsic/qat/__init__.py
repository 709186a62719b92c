"""``torch.ao.nn.intrinsic.qat``: fused QAT modules.

``jaxq.nn.intrinsic.qat.{LinearReLU, LinearBn1d, ConvReLU1d, ConvReLU2d, ConvReLU3d,
ConvBn1d, ConvBn2d, ConvBn3d, ConvBnReLU1d, ConvBnReLU2d, ConvBnReLU3d,
update_bn_stats, freeze_bn_stats}``.
"""

from jaxq.nn.intrinsic.qat.conv_fused import (
    ConvBn1d,
    ConvBn2d,
    ConvBn3d,
    ConvBnReLU1d,
    ConvBnReLU2d,
    ConvBnReLU3d,
    ConvReLU1d,
    ConvReLU2d,
    ConvReLU3d,
    freeze_bn_stats,
    update_bn_stats,
)
from jaxq.nn.intrinsic.qat.linear_fused import LinearBn1d
from jaxq.nn.intrinsic.qat.linear_relu import LinearReLU

__all__ = ["LinearReLU", "LinearBn1d", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d",
           "ConvBn1d", "ConvBn2d", "ConvBn3d", "ConvBnReLU1d", "ConvBnReLU2d",
           "ConvBnReLU3d", "update_bn_stats", "freeze_bn_stats"]
