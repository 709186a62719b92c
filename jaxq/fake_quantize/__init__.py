"""Fake-quantize modules: ``torch.ao.quantization.fake_quantize`` on NNX.

``torch.ao.quantization.fake_quantize.X`` is ``jaxq.fake_quantize.X``; torch's
``_LearnableFakeQuantize`` (``torch.ao.quantization._learnable_fake_quantize``) is
``jaxq.fake_quantize._LearnableFakeQuantize``.
"""

from jaxq.fake_quantize.base import (
    FakeQuantizeBase,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
)
from jaxq.fake_quantize.defaults import (
    default_affine_fixed_qparams_fake_quant,
    default_dynamic_fake_quant,
    default_embedding_fake_quant,
    default_embedding_fake_quant_4bit,
    default_fake_quant,
    default_fixed_qparams_range_0to1_fake_quant,
    default_fixed_qparams_range_neg1to1_fake_quant,
    default_fused_act_fake_quant,
    default_fused_per_channel_wt_fake_quant,
    default_fused_wt_fake_quant,
    default_per_channel_weight_fake_quant,
    default_symmetric_fixed_qparams_fake_quant,
    default_weight_fake_quant,
    fused_per_channel_wt_fake_quant_range_neg_127_to_127,
    fused_wt_fake_quant_range_neg_127_to_127,
)
from jaxq.fake_quantize.fake_quantize import (
    FakeQuantize,
    FakeQuantizeCore,
    FixedQParamsFakeQuantize,
)
from jaxq.fake_quantize.fused import (
    FusedFakeQuantizeCore,
    FusedMovingAvgObsFakeQuantize,
    choose_quantization_params,
)
from jaxq.fake_quantize.learnable import _LearnableFakeQuantize

try:  # HistogramObserver is written concurrently by another helper.
    from jaxq.observer.histogram import HistogramObserver as _HistogramObserver
except ImportError:  # pragma: no cover
    pass
else:
    from jaxq.core.dtypes import quint8 as _quint8
    from jaxq.core.qscheme import per_tensor_affine as _per_tensor_affine

    default_histogram_fake_quant = FakeQuantize.with_args(
        observer=_HistogramObserver, quant_min=0, quant_max=255, dtype=_quint8,
        qscheme=_per_tensor_affine, reduce_range=True)
