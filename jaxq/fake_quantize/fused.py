"""FusedMovingAvgObsFakeQuantize: torch's fused observe + fake-quantize kernel.

torch runs ``torch.fused_moving_avg_obs_fake_quant`` (C++), whose rules differ from
the Python observers in three ways, all reproduced here:

* moving average, per entry: ``m = isinf(m) ? batch : m + c * (batch - m)`` (one
  side at a time, so an infinite running value is replaced by the next batch);
* qparams from ``ChooseQuantizationParams`` (:func:`choose_quantization_params`):
  symmetric ranges are handled only when ``min < 0 < max`` (then
  ``scale = max(|min|/(n//2 + 1), max/(n//2))``-based, zero point the rounded
  midpoint), otherwise the affine rule applies even for symmetric qschemes (so
  one-sided data gives ``zero_point = quant_min`` or ``quant_max``, where the Python
  observer gives 0); a zero or reciprocal-overflowing scale becomes 0.1; scales below
  ``6.1e-5`` are raised to it; the zero point is nudged with ``nearbyint``;
* ``scale``/``zero_point`` are only recomputed when fake quantization is enabled.

``calculate_qparams()`` still delegates to the Python observer, as in torch, so it
can differ from ``fq.scale`` on symmetric schemes. The C++ code works in double;
jaxq computes in float32 with error-free transformations for the scale (equal to
torch's float32 scale up to double-rounding corner cases) and float32 for the zero
point (differs only when ``qmin - min/scale`` lies within float32 rounding of a
half-integer). Flags are int64 in torch, int32 here.

Per-channel: only ``ch_axis == 0`` is supported (as torch's kernel).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.fake_quantize import default_fused_wt_fake_quant
  >>> fq = default_fused_wt_fake_quant()
  >>> y = fq(jnp.array([0.5, 1.0, 2.0]))
  >>> int(fq.zero_point[0])   # one-sided data: the C++ rule gives quant_min
  -128
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.aten_qparams import choose_quantization_params
from jaxq.core.float_arithmetic import separately_rounded
from jaxq.fake_quantize.base import branch
from jaxq.fake_quantize.fake_quantize import FakeQuantize, FakeQuantizeCore
from jaxq.observer.base import as_observed_input, is_concrete
from jaxq.observer.min_max import MovingAverageMinMaxObserver
from jaxq.observer.per_channel import MovingAveragePerChannelMinMaxObserver, per_channel_min_max

__all__ = ["choose_quantization_params", "FusedFakeQuantizeCore",
           "FusedMovingAvgObsFakeQuantize"]

@dataclasses.dataclass(frozen=True, kw_only=True)
class FusedFakeQuantizeCore(FakeQuantizeCore):
    """The fused kernel's step (see the module docstring).

    Attributes:
      averaging_constant: the observer's ``c``.
      is_symmetric_quant: symmetric qscheme (``preserve_sparsity``).
    """

    averaging_constant: float = 0.01
    is_symmetric_quant: bool = False

    def _moving_average(self, running, batch):
        c = jnp.float32(self.averaging_constant)
        averaged = running + separately_rounded(c * (batch - running))
        return jnp.where(jnp.isinf(running), batch, averaged)

    def observe_fused(self, observer_state, x):
        x = as_observed_input(x)
        if self.is_per_channel:
            if self.ch_axis != 0:
                raise ValueError("Per-channel FakeQuant in fused_moving_avg_obs_fake_quant "
                                 f"is only supported on axis == 0; got ch_axis={self.ch_axis}")
            batch_min, batch_max = per_channel_min_max(x, 0)
        else:
            batch_min, batch_max = jnp.min(x), jnp.max(x)
        return {"min_val": self._moving_average(observer_state["min_val"], batch_min),
                "max_val": self._moving_average(observer_state["max_val"], batch_max)}

    def quantize_with_running(self, state, observer_state, x):
        min_val, max_val = observer_state["min_val"], observer_state["max_val"]
        if is_concrete(min_val, max_val):
            if bool(jnp.any(min_val > max_val)):
                raise ValueError("In ChooseQuantizationParams, min should be less than or "
                                 f"equal to max (min_val={min_val}, max_val={max_val})")
            if not bool(jnp.all(jnp.isfinite(min_val) & jnp.isfinite(max_val))):
                # torch computes an infinite scale and an INT32_MIN zero point here.
                raise ValueError("the running min/max is not finite (min_val="
                                 f"{min_val}, max_val={max_val}); torch would produce an "
                                 "infinite scale and an invalid zero point")
        scale, zero_point = choose_quantization_params(
            min_val.reshape(-1), max_val.reshape(-1), self.quant_min, self.quant_max,
            self.is_symmetric_quant)
        state = {**state, "scale": scale, "zero_point": zero_point}
        return self.fake_quantize(x, scale, zero_point), state

    def apply(self, state, observer_state, x):
        x = jnp.asarray(x)
        if self.is_per_channel and x.ndim == 0:
            raise ValueError("per-channel fused fake-quantize needs an input of rank >= 1")
        if self.is_per_channel and observer_state["min_val"].size == 0:
            # torch sizes running min/max (and scale/zero_point) on the first call.
            channels = x.shape[0]
            observer_state = {"min_val": jnp.full((channels,), jnp.inf, jnp.float32),
                              "max_val": jnp.full((channels,), -jnp.inf, jnp.float32)}
            state = {**state, "scale": jnp.ones((channels,), jnp.float32),
                     "zero_point": jnp.zeros((channels,), jnp.int32)}
        observer_state = branch(state["observer_enabled"],
                                lambda s: self.observe_fused(s, x), lambda s: s,
                                observer_state, "observer_enabled")
        y, state = branch(state["fake_quant_enabled"],
                          lambda s: self.quantize_with_running(s, observer_state, x),
                          lambda s: (x, s), state, "fake_quant_enabled")
        return y, state, observer_state


class FusedMovingAvgObsFakeQuantize(FakeQuantize):
    """torch's ``FusedMovingAvgObsFakeQuantize`` (C++ qparams rule; see module doc).

    Args:
      observer: MovingAverageMinMaxObserver or MovingAveragePerChannelMinMaxObserver
        (class or factory).
      quant_min, quant_max: default 0, 255.
      **observer_kwargs: the observer's other arguments.

    Raises:
      TypeError: another observer type.
    """

    def __init__(self, observer: Any = MovingAverageMinMaxObserver, quant_min: int = 0,
                 quant_max: int = 255, **observer_kwargs: Any):
        is_dynamic = observer_kwargs.pop("is_dynamic", False)
        self._build(observer, quant_min, quant_max, is_dynamic, observer_kwargs, jnp.int32)
        obs = self.activation_post_process
        if not isinstance(obs, (MovingAverageMinMaxObserver,
                                MovingAveragePerChannelMinMaxObserver)):
            raise TypeError("Fused observer+fake_quant module only works with "
                            "MovingAverageMinMaxObserver or "
                            "MovingAveragePerChannelMinMaxObserver; got "
                            f"{type(obs).__name__}")
        self.is_symmetric_quant = self.qscheme.is_symmetric
        fields = {f.name: getattr(self.core, f.name)
                  for f in dataclasses.fields(FakeQuantizeCore)}
        self.core = FusedFakeQuantizeCore(
            **fields, averaging_constant=float(obs.averaging_constant),
            is_symmetric_quant=self.is_symmetric_quant)
