"""jaxq: PyTorch's torch.ao.quantization stack rebuilt on JAX and Flax.

torch names live at the analogous jaxq path: ``torch.quantize_per_tensor`` ->
``jaxq.quantize_per_tensor``, ``torch.ao.quantization.X`` -> ``jaxq.X``,
``torch.ao.quantization.observer.X`` -> ``jaxq.observer.X`` (see docs/torch_api.md).
"""

# Layer 1: the numerics core.
from jaxq.core import ranges
from jaxq.core.affine import (
    choose_qparams_affine, choose_qparams_affine_with_min_max, dequantize_affine,
    fake_quantize_affine, fake_quantize_affine_cachemask, quantize_affine,
)
from jaxq.core.dtypes import (
    QuantDType, TorchAODType, as_quant_dtype,
    quint8, qint8, qint32, quint4x2, quint2x4,
    uint8, int8, int16, uint16, int32,
    int1, int2, int3, int4, int5, int6, int7,
    uint1, uint2, uint3, uint4, uint5, uint6, uint7,
    float16, bfloat16, float32, float8_e4m3fn, float8_e5m2,
)
from jaxq.core.fake_quantize_ops import (
    _fake_quantize_learnable_per_channel_affine, _fake_quantize_learnable_per_tensor_affine,
    fake_quantize_learnable_per_channel_affine, fake_quantize_learnable_per_tensor_affine,
    fake_quantize_per_channel_affine, fake_quantize_per_channel_affine_cachemask,
    fake_quantize_per_tensor_affine, fake_quantize_per_tensor_affine_cachemask,
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
from jaxq.core.qtensor import QTensor, dequantize, quantize_per_channel, quantize_per_tensor

# Layers 2-3: observers, fake-quantize, configuration (torch.ao.quantization names).
from jaxq import backend_config, custom_config, fake_quantize, observer, qconfig, qconfig_mapping
from jaxq.observer import (
    AffineQuantizedObserverBase, FixedQParamsObserver, HistogramObserver, MinMaxObserver,
    MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver, NoopObserver,
    ObserverBase, PerChannelMinMaxObserver, PlaceholderObserver, RecordingObserver,
    ReuseInputObserver, UniformQuantizationObserverBase,
    default_affine_fixed_qparams_observer, default_debug_observer,
    default_dynamic_quant_observer, default_fixed_qparams_range_0to1_observer,
    default_fixed_qparams_range_neg1to1_observer, default_float_qparams_observer,
    default_float_qparams_observer_4bit, default_histogram_observer, default_observer,
    default_per_channel_weight_observer, default_placeholder_observer,
    default_reuse_input_observer, default_symmetric_fixed_qparams_observer,
    default_weight_observer, get_observer_state_dict, load_observer_state_dict,
    per_channel_weight_observer_range_neg_127_to_127, weight_observer_range_neg_127_to_127,
)
from jaxq.fake_quantize import (
    FakeQuantize, FakeQuantizeBase, FixedQParamsFakeQuantize, FusedMovingAvgObsFakeQuantize,
    default_affine_fixed_qparams_fake_quant, default_dynamic_fake_quant,
    default_embedding_fake_quant, default_embedding_fake_quant_4bit, default_fake_quant,
    default_fixed_qparams_range_0to1_fake_quant, default_fixed_qparams_range_neg1to1_fake_quant,
    default_fused_act_fake_quant, default_fused_per_channel_wt_fake_quant,
    default_fused_wt_fake_quant, default_histogram_fake_quant,
    default_per_channel_weight_fake_quant, default_symmetric_fixed_qparams_fake_quant,
    default_weight_fake_quant, disable_fake_quant, disable_observer, enable_fake_quant,
    enable_observer, fused_per_channel_wt_fake_quant_range_neg_127_to_127,
    fused_wt_fake_quant_range_neg_127_to_127,
)
from jaxq.qconfig import (
    QConfig, QConfigAny, QConfigDynamic, get_default_qat_qconfig, get_default_qat_qconfig_dict,
    get_default_qconfig, get_default_qconfig_dict, qconfig_equals,
)
from jaxq.qconfig_mapping import (
    QConfigMapping, get_default_qat_qconfig_mapping, get_default_qconfig_mapping,
)
from jaxq.custom_config import QuantType

# Layers 4-5: modules and the eager workflow.
from jaxq import eager, nn
from jaxq.eager import (
    DeQuantStub, QuantStub, QuantWrapper, add_quant_dequant, convert, default_eval_fn,
    fuse_modules, fuse_modules_qat, get_default_custom_config_dict, prepare, prepare_qat,
    propagate_qconfig_, quantize, quantize_dynamic, quantize_qat, swap_module,
)
from jaxq.fuser_method_mappings import (
    fuse_conv_bn, fuse_conv_bn_relu, fuse_convtranspose_bn, fuse_linear_bn, get_fuser_method,
)
from jaxq.quantization_mappings import (
    get_default_compare_output_module_list, get_default_dynamic_quant_module_mappings,
    get_default_float_to_quantized_operator_mappings, get_default_qat_module_mappings,
    get_default_qconfig_propagation_list, get_default_static_quant_module_mappings,
    get_default_static_quant_reference_module_mappings, get_dynamic_quant_module_class,
    get_embedding_qat_module_mappings, get_embedding_static_quant_module_mappings,
    get_quantized_operator, get_static_quant_module_class, no_observer_set,
)

# Graph mode (captured NNX graphs) and the PT2E tools (numeric debugger, x86 lowering).
from jaxq import fx, pt2e, quantize_fx

# PyTorch interop.
from jaxq import interop
from jaxq.interop import (
    TranslationWarning, from_torch, load_qconfig_mapping, load_torch_observer_state_dict,
    load_torch_state_dict, save_qconfig_mapping, to_torch,
)

__version__ = "0.1.0"
