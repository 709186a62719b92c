"""jaxq: PyTorch's torch.ao.quantization stack rebuilt on JAX and Flax."""

from jaxq.core import ranges
from jaxq.core.affine import (
    choose_qparams_affine,
    choose_qparams_affine_with_min_max,
    dequantize_affine,
    fake_quantize_affine,
    fake_quantize_affine_cachemask,
    quantize_affine,
)
from jaxq.core.dtypes import (
    QuantDType, TorchAODType, as_quant_dtype,
    quint8, qint8, qint32, quint4x2, quint2x4,
    uint8, int8, int16, uint16, int32,
    int1, int2, int3, int4, int5, int6, int7,
    uint1, uint2, uint3, uint4, uint5, uint6, uint7,
    float16, bfloat16, float32, float8_e4m3fn, float8_e5m2,
)
from jaxq.core.granularity import (
    Granularity, MappingType, PerAxis, PerBlock, PerGroup, PerRow, PerTensor, PerToken,
    ZeroPointDomain, get_block_size,
)
from jaxq.core.qscheme import (
    QScheme, as_qscheme,
    per_channel_affine, per_channel_affine_float_qparams, per_channel_symmetric,
    per_tensor_affine, per_tensor_symmetric,
)

__version__ = "0.1.0"
