"""The eager-mode workflow (``torch.ao.quantization``'s top level) on Flax NNX modules.

``jaxq.eager.prepare`` is torch's ``torch.ao.quantization.prepare``; see
:mod:`jaxq.eager.quantize` for how NNX module trees are walked and observed.
"""

from jaxq.eager.fuse_modules import fuse_known_modules, fuse_modules, fuse_modules_qat
from jaxq.eager.hooks import (
    is_activation_post_process,
    observed_class,
    type_before_observation,
)
from jaxq.eager.quantize import (
    _get_observer_dict,
    add_quant_dequant,
    convert,
    default_eval_fn,
    get_default_custom_config_dict,
    prepare,
    prepare_qat,
    propagate_qconfig_,
    quantize,
    quantize_dynamic,
    quantize_qat,
    swap_module,
)
from jaxq.eager.stubs import DeQuantStub, QuantStub, QuantWrapper

__all__ = [
    "QuantStub", "DeQuantStub", "QuantWrapper",
    "propagate_qconfig_", "add_quant_dequant", "prepare", "prepare_qat", "convert",
    "quantize", "quantize_dynamic", "quantize_qat", "swap_module", "default_eval_fn",
    "get_default_custom_config_dict", "fuse_modules", "fuse_modules_qat",
    "fuse_known_modules", "is_activation_post_process", "observed_class",
    "type_before_observation",
]
