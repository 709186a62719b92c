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

from jaxq.core.affine import exact_divide
from jaxq.core.float_arithmetic import separately_rounded, two_product, two_sum
from jaxq.fake_quantize.base import branch
from jaxq.fake_quantize.fake_quantize import FakeQuantize, FakeQuantizeCore
from jaxq.observer.base import as_observed_input, is_concrete
from jaxq.observer.min_max import MovingAverageMinMaxObserver
from jaxq.observer.per_channel import MovingAveragePerChannelMinMaxObserver, per_channel_min_max

__all__ = ["choose_quantization_params", "FusedFakeQuantizeCore",
           "FusedMovingAvgObsFakeQuantize"]

SMALL_SCALE_THRESHOLD = np.float32(6.1e-5)


def _difference_over(high: jax.Array, low: jax.Array, divisor: int) -> jax.Array:
    """float32 of the exact ``(high - low) / divisor`` (torch computes it in double)."""
    difference, difference_error = two_sum(high, -low)
    quotient = exact_divide(difference, float(divisor))
    product, product_error = two_product(quotient, jnp.full_like(quotient, divisor))
    remainder = ((difference - product) - product_error) + difference_error
    refined = quotient + exact_divide(remainder, float(divisor))
    # Infinite statistics: the error terms are NaN; torch's double quotient is inf.
    return jnp.where(jnp.isfinite(quotient), refined, quotient)


def choose_quantization_params(min_val: jax.Array, max_val: jax.Array, quant_min: int,
                               quant_max: int, preserve_sparsity: bool
                               ) -> tuple[jax.Array, jax.Array]:
    """torch's C++ ``quant_utils::ChooseQuantizationParams``, element-wise, jittable.

    Args:
      min_val, max_val: float32 arrays of one shape.
      quant_min, quant_max: the integer range.
      preserve_sparsity: torch's symmetric flag (``symmetric_quant``).

    Returns:
      ``(scale, zero_point)``: float32 and int32 arrays of ``min_val``'s shape.

    torch raises when ``min > max``; here the caller checks (eagerly) and the
    jittable function computes with whatever it gets.
    """
    min_val = jnp.asarray(min_val, jnp.float32)
    max_val = jnp.asarray(max_val, jnp.float32)
    width = quant_max - quant_min
    if preserve_sparsity:
        symmetric_qmin = -(width // 2 + 1)
        symmetric_qmax = width // 2
        max_scale = jnp.maximum(jnp.abs(exact_divide(min_val, float(symmetric_qmin))),
                                jnp.abs(exact_divide(max_val, float(symmetric_qmax))))
        straddles = (min_val < 0) & (max_val > 0)
        min_val = jnp.where(straddles, max_scale * np.float32(symmetric_qmin), min_val)
        max_val = jnp.where(straddles, max_scale * np.float32(symmetric_qmax), max_val)
    min_val = jnp.minimum(min_val, 0.0)
    max_val = jnp.maximum(max_val, 0.0)
    scale = _difference_over(max_val, min_val, width)
    degenerate = (scale == 0) | jnp.isinf(jnp.float32(1.0) / scale)
    scale = jnp.where(degenerate, jnp.float32(0.1), scale)
    small = scale < SMALL_SCALE_THRESHOLD
    threshold_width = SMALL_SCALE_THRESHOLD * np.float32(width)
    amplifier = SMALL_SCALE_THRESHOLD / scale
    small_min = jnp.where(min_val == 0, min_val,
                          jnp.where(max_val == 0, -threshold_width, min_val * amplifier))
    small_max = jnp.where(min_val == 0, threshold_width,
                          jnp.where(max_val == 0, max_val, max_val * amplifier))
    min_val = jnp.where(small, small_min, min_val)
    max_val = jnp.where(small, small_max, max_val)
    scale = jnp.where(small, SMALL_SCALE_THRESHOLD, scale)
    min_over_scale = min_val / scale
    max_over_scale = max_val / scale
    from_min = quant_min - min_over_scale
    from_max = quant_max - max_over_scale
    error_min = abs(quant_min) - jnp.abs(min_over_scale)
    error_max = abs(quant_max) - jnp.abs(max_over_scale)
    initial = jnp.where(error_min < error_max, from_min, from_max)
    if preserve_sparsity:
        initial = jnp.where((min_val < 0) & (max_val > 0),
                            jnp.float32((quant_min + quant_max) / 2), initial)
    zero_point = jnp.where(initial < quant_min, jnp.float32(quant_min),
                           jnp.where(initial > quant_max, jnp.float32(quant_max),
                                     jnp.round(initial)))
    # NaN statistics: every comparison is False, nearbyint(NaN) -> INT32_MIN on x86.
    zero_point = jnp.where(jnp.isnan(zero_point), jnp.float32(-(2.0**31)), zero_point)
    return scale.astype(jnp.float32), zero_point.astype(jnp.int32)


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
