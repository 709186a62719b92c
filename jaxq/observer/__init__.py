"""Observers: ``torch.ao.quantization.observer`` as pure cores plus NNX modules.

Every name of torch's ``observer.__all__`` is here (``torch.ao.quantization.observer.X``
is ``jaxq.observer.X``). See :mod:`jaxq.observer.base` for the design: a frozen,
hashable core with pure ``init``/``update``/``calculate_qparams`` and a thin
``nnx.Module`` holding ``ObserverState``.
"""

from jaxq.core.dtypes import TorchAODType
from jaxq.core.granularity import (
    Granularity,
    MappingType,
    PerAxis,
    PerBlock,
    PerGroup,
    PerRow,
    PerTensor,
    PerToken,
    ZeroPointDomain,
    get_block_size,
)
from jaxq.observer.affine_quantized import (
    AffineQuantizedCore,
    AffineQuantizedMinMaxCore,
    AffineQuantizedMinMaxObserver,
    AffineQuantizedObserverBase,
)
from jaxq.observer.base import (
    FLOAT32_EPS,
    ObserverBase,
    ObserverCore,
    ObserverState,
    UniformQuantizationCore,
    UniformQuantizationObserverBase,
    calculate_qparams_from_min_max,
)
from jaxq.observer.defaults import (
    default_affine_fixed_qparams_observer,
    default_debug_observer,
    default_dynamic_quant_observer,
    default_fixed_qparams_range_0to1_observer,
    default_fixed_qparams_range_neg1to1_observer,
    default_float_qparams_observer,
    default_float_qparams_observer_4bit,
    default_observer,
    default_per_channel_weight_observer,
    default_placeholder_observer,
    default_reuse_input_observer,
    default_symmetric_fixed_qparams_observer,
    default_weight_observer,
    per_channel_weight_observer_range_neg_127_to_127,
    weight_observer_range_neg_127_to_127,
)
from jaxq.observer.min_max import (
    MinMaxCore,
    MinMaxObserver,
    MovingAverageMinMaxCore,
    MovingAverageMinMaxObserver,
)
from jaxq.observer.partial import _PartialWrapper, _with_args, _with_callable_args
from jaxq.observer.per_channel import (
    MovingAveragePerChannelMinMaxCore,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxCore,
    PerChannelMinMaxObserver,
)
from jaxq.observer.simple import (
    FixedQParamsCore,
    FixedQParamsObserver,
    NoopObserver,
    PlaceholderCore,
    PlaceholderObserver,
    RecordingObserver,
    ReuseInputObserver,
)
from jaxq.observer.state_dict import get_observer_state_dict, load_observer_state_dict

# torch's alias of UniformQuantizationObserverBase.
_ObserverBase = UniformQuantizationObserverBase

try:  # written concurrently by another helper
    from jaxq.observer.histogram import HistogramObserver  # noqa: F401
except ImportError:  # pragma: no cover - only while histogram.py is missing
    pass
else:
    default_histogram_observer = HistogramObserver.with_args(quant_min=0, quant_max=127)
