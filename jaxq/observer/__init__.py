"""Observers: torch.ao.quantization.observer rebuilt as pure cores plus NNX modules."""

from jaxq.observer.base import (
    FLOAT32_EPS,
    ObserverBase,
    ObserverCore,
    ObserverState,
    UniformQuantizationCore,
    UniformQuantizationObserverBase,
    calculate_qparams_from_min_max,
)
from jaxq.observer.partial import _PartialWrapper, _with_args, _with_callable_args
