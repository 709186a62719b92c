"""``torch.ao.nn.intrinsic``: fused float containers (``jaxq.nn.intrinsic.ConvReLU2d``...).

Subpackages: ``jaxq.nn.intrinsic.qat`` (fused QAT modules).
"""

from jaxq.nn.intrinsic.fused import (
    BNReLU2d,
    BNReLU3d,
    ConvAdd2d,
    ConvAddReLU2d,
    ConvBn1d,
    ConvBn2d,
    ConvBn3d,
    ConvBnReLU1d,
    ConvBnReLU2d,
    ConvBnReLU3d,
    ConvReLU1d,
    ConvReLU2d,
    ConvReLU3d,
    LinearBn1d,
    LinearLeakyReLU,
    LinearReLU,
    LinearTanh,
    _FusedModule,
)

__all__ = ["ConvBn1d", "ConvBn2d", "ConvBn3d", "ConvBnReLU1d", "ConvBnReLU2d",
           "ConvBnReLU3d", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "LinearReLU",
           "BNReLU2d", "BNReLU3d", "LinearBn1d", "LinearLeakyReLU", "LinearTanh",
           "ConvAdd2d", "ConvAddReLU2d"]

# Subpackages (imported last: they import the containers above).
from jaxq.nn.intrinsic import qat  # noqa: E402,F401

# --- nn-quantized subpackage (added by the nn-quantized helper, one line) ---
from jaxq.nn.intrinsic import quantized  # noqa: E402,F401
