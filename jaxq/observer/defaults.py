"""torch's ``default_*`` observer factories (``torch.ao.quantization.observer``).

Each is a class or a ``with_args`` factory built exactly as torch builds it; call
it to get a fresh observer.

Example:
  >>> from jaxq.observer import default_weight_observer
  >>> obs = default_weight_observer()
  >>> obs.dtype, obs.qscheme
  (jaxq.qint8, jaxq.per_tensor_symmetric)
"""

from __future__ import annotations

from jaxq.core.dtypes import qint8, quint4x2, quint8
from jaxq.core.qscheme import (
    per_channel_affine_float_qparams,
    per_channel_symmetric,
    per_tensor_symmetric,
)
from jaxq.observer.min_max import MinMaxObserver
from jaxq.observer.per_channel import PerChannelMinMaxObserver
from jaxq.observer.simple import (
    FixedQParamsObserver,
    PlaceholderObserver,
    RecordingObserver,
    ReuseInputObserver,
)

__all__ = [
    "default_observer", "default_placeholder_observer", "default_debug_observer",
    "default_weight_observer", "weight_observer_range_neg_127_to_127",
    "default_per_channel_weight_observer",
    "per_channel_weight_observer_range_neg_127_to_127", "default_dynamic_quant_observer",
    "default_float_qparams_observer", "default_float_qparams_observer_4bit",
    "default_fixed_qparams_range_neg1to1_observer",
    "default_fixed_qparams_range_0to1_observer", "default_symmetric_fixed_qparams_observer",
    "default_affine_fixed_qparams_observer", "default_reuse_input_observer",
]

# Activations restricted to [0, 127].
default_observer = MinMaxObserver.with_args(quant_min=0, quant_max=127)
default_placeholder_observer = PlaceholderObserver
default_debug_observer = RecordingObserver
default_weight_observer = MinMaxObserver.with_args(dtype=qint8,
                                                   qscheme=per_tensor_symmetric)
weight_observer_range_neg_127_to_127 = MinMaxObserver.with_args(
    dtype=qint8, qscheme=per_tensor_symmetric, quant_min=-127, quant_max=127, eps=2**-12)
default_per_channel_weight_observer = PerChannelMinMaxObserver.with_args(
    dtype=qint8, qscheme=per_channel_symmetric)
per_channel_weight_observer_range_neg_127_to_127 = PerChannelMinMaxObserver.with_args(
    dtype=qint8, qscheme=per_channel_symmetric, quant_min=-127, quant_max=127, eps=2**-12)
default_dynamic_quant_observer = PlaceholderObserver.with_args(
    dtype=quint8, quant_min=0, quant_max=255, is_dynamic=True)
default_float_qparams_observer = PerChannelMinMaxObserver.with_args(
    dtype=quint8, qscheme=per_channel_affine_float_qparams, ch_axis=0)
default_float_qparams_observer_4bit = PerChannelMinMaxObserver.with_args(
    dtype=quint4x2, qscheme=per_channel_affine_float_qparams, ch_axis=0)
default_fixed_qparams_range_neg1to1_observer = FixedQParamsObserver.with_args(
    scale=2.0 / 256.0, zero_point=128, dtype=quint8, quant_min=0, quant_max=255)
default_fixed_qparams_range_0to1_observer = FixedQParamsObserver.with_args(
    scale=1.0 / 256.0, zero_point=0, dtype=quint8, quant_min=0, quant_max=255)
# Kept by torch for backwards compatibility.
default_symmetric_fixed_qparams_observer = default_fixed_qparams_range_neg1to1_observer
default_affine_fixed_qparams_observer = default_fixed_qparams_range_0to1_observer
default_reuse_input_observer = ReuseInputObserver
