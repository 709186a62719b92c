"""HistogramObserver: a running histogram and torch's L2 search for min/max.

torch's ``torch.ao.quantization.observer.HistogramObserver`` (2.13), rebuilt as a pure,
jittable core (:class:`HistogramCore`) plus the NNX module :class:`HistogramObserver`.

State (torch's buffer names): ``{"histogram": f32[bins], "min_val": f32[],
"max_val": f32[]}``, initially zeros / ``+inf`` / ``-inf`` ("never observed").

What one update does (torch's ``forward``, step for step):

1. ``x_min, x_max`` of the batch, ignoring ``+-inf`` (torch drops infinite values with
   a warning; a batch of only infinities leaves the state unchanged).
2. First batch: ``histogram = histc(x, bins, x_min, x_max)``. Later batches:
   ``new_min = min(min_val, x_min)``, ``new_max = max(max_val, x_max)`` and
   ``h = histc(x, bins, new_min, new_max)``; an unchanged range adds ``h`` to the
   histogram; otherwise the old histogram is carried into the new range and added:
   a one-point old histogram (``min_val == max_val``) moves its whole mass to the bin
   of that point; any other is split into ``16 * bins`` sub-bins holding ``count / 16``
   each, whose midpoints are re-bucketed into the new bins (``_upscale_histogram``).

``calculate_qparams`` runs torch's ``_non_linear_param_search`` (alpha/beta stepping
by 1e-5 over the CDF, moving the end with more mass to shed, L2 error from
``density * (end**3 - begin**3) / 3`` pieces, stop at the first error increase) and
then torch's ``_calculate_qparams`` rule on ``[min + bw * start, min + bw * (end + 1)]``.

Layout: the search lives in :mod:`jaxq.observer.histogram_search`; torch's float32 CPU
kernels (``torch_histc``, ``torch_linspace``, ``torch_float32_sum``, float32-pair
cumulative sums) in :mod:`jaxq.observer.torch_histogram_ops`, re-exported here.

Exactness. Every float32 step rounds as torch rounds it on x86 CPUs, so histograms,
scales and zero points are bit-equal to torch's in the tests:

* ``torch.histc`` bins with ``int((x - lo) * bins / (hi - lo))`` in float32, the value
  ``hi`` going to the last bin and everything outside ``[lo, hi]`` (inf, NaN) skipped;
  a zero-width range becomes ``[lo - 1, hi + 1]``.
* ``torch.linspace`` (float32, CPU) is ``fma(step, i, start)`` for the first half and
  ``fma(-step, steps - 1 - i, end)`` for the second; jaxq emulates the fused
  multiply-add exactly with error-free products.
* ``torch.sum`` of float32 is a blocked, 8-lane cascade sum; :func:`torch_float32_sum`
  reproduces its order (up to 32768 elements, torch's single-thread grain).
* ``torch.cumsum`` of float32 accumulates in float64 and the search compares those
  sums with float64 thresholds ``alpha * total``; jaxq runs these in float32 pairs
  (about 48 bits), which decides every comparison as float64 does unless a cumulative
  count lies within ``2**-46`` (relative) of a threshold.
* XLA contracts ``a * b + c`` into a fused multiply-add on CPU; where torch rounds the
  product first, jaxq puts a select between the two
  (:func:`~jaxq.core.float_arithmetic.separately_rounded`), and scalar
  divisions use :func:`jaxq.core.affine.exact_divide`.
* ``torch.bincount`` with weights sums each new bin's sub-bins left to right in
  float32; XLA's scatter-add on CPU does the same.

Infinite values and NaN. Eagerly (outside ``jit``) the module warns like torch when a
batch holds ``+-inf`` and raises ``ValueError`` for NaN (torch raises a
``RuntimeError`` from ``histc``). Under ``jit`` the core cannot warn or raise: infinite
values are dropped silently (the same statistics torch keeps), and NaN propagates into
``min_val``/``max_val`` so that ``calculate_qparams`` returns a NaN scale instead of
hiding the bad batch.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxq.observer.histogram import HistogramObserver
  >>> obs = HistogramObserver(bins=256)
  >>> _ = obs(jnp.linspace(-1.0, 3.0, 1000))
  >>> scale, zero_point = obs.calculate_qparams()
  >>> scale.shape, zero_point.dtype
  ((1,), dtype('int32'))
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxq.core.affine import exact_divide
from jaxq.core.dtypes import quint8
from jaxq.core.qscheme import as_qscheme, per_tensor_affine
from jaxq.observer.base import (
    FLOAT32_EPS,
    UniformQuantizationCore,
    UniformQuantizationObserverBase,
    as_observed_input,
    is_concrete,
)
from jaxq.observer.histogram_search import _non_linear_param_search
from jaxq.observer.min_max import _check_symmetric_reduce_range, check_factory_kwargs
from jaxq.observer.torch_histogram_ops import (
    _histc_with_skipped,
    torch_float32_sum,
    torch_histc,
    torch_linspace,
)

__all__ = ["HistogramCore", "HistogramObserver", "default_histogram_observer",
           "torch_histc", "torch_linspace", "torch_float32_sum"]

State = dict[str, jax.Array]

_UPSAMPLE_RATE = 16          # torch's HistogramObserver.upsample_rate (fixed)


# ---------------------------------------------------------------------------
# Carrying a histogram into a wider range (torch's _combine_histograms).
# ---------------------------------------------------------------------------
def _upscale_histogram(histogram, orig_min, orig_max, update_min, update_max):
    """torch's ``_upscale_histogram``: old bins -> 16 sub-bins -> midpoints re-bucketed."""
    bins = histogram.shape[0]
    fine_bins = bins * _UPSAMPLE_RATE
    fine = exact_divide(jnp.repeat(histogram, _UPSAMPLE_RATE), jnp.float32(_UPSAMPLE_RATE))
    bin_size = exact_divide(orig_max - orig_min, jnp.float32(fine_bins))
    half_bin = 0.5 * bin_size
    midpoints = torch_linspace(orig_min, orig_max, fine_bins + 1)[:-1] + half_bin
    boundaries = torch_linspace(update_min, update_max, bins + 1)
    # torch.bucketize(right=True) - 1, clamped into the histogram.
    bucket = jnp.searchsorted(boundaries, midpoints, side="right") - 1
    bucket = jnp.clip(bucket, 0, bins - 1)
    # bincount with weights: left-to-right float32 sums per bin (buckets are sorted).
    return jnp.zeros((bins,), jnp.float32).at[bucket].add(fine, indices_are_sorted=True)


def _combine_histograms(histogram, orig_min, orig_max, update_histogram, update_min,
                        update_max):
    """torch's ``_combine_histograms`` for a range that grew (old range inside new)."""
    bins = histogram.shape[0]

    def one_point(_):
        # The old histogram is one value repeated: all its mass goes to that value's bin.
        return torch_histc(orig_min, bins, update_min, update_max) * torch_float32_sum(
            histogram)

    def spread(_):
        return _upscale_histogram(histogram, orig_min, orig_max, update_min, update_max)

    carried = lax.cond(orig_min == orig_max, one_point, spread, None)
    return update_histogram + carried


def _finite_min_max(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Batch min/max without +-inf (torch drops them).

    NaN is detected by the histc pass instead (XLA's CPU min/max reductions skip it).
    """
    x_min, x_max = jnp.min(x), jnp.max(x)

    def without_infinities(_):
        infinite = jnp.isinf(x)
        return (jnp.min(jnp.where(infinite, jnp.inf, x)),
                jnp.max(jnp.where(infinite, -jnp.inf, x)))

    # Plain reductions are several times faster; re-reduce only when one hit an inf.
    return lax.cond(jnp.isinf(x_min) | jnp.isinf(x_max), without_infinities,
                    lambda _: (x_min, x_max), None)


@jax.jit
def _observe(state: State, x: jax.Array) -> State:
    """One ``forward`` of torch's HistogramObserver on a flat, non-empty float32 ``x``.

    Jitted on its own so that eager calls of every configuration with the same bins and
    batch size share one compilation (inside a user's ``jit`` it is simply inlined).
    """
    histogram = state["histogram"]
    bins = histogram.shape[0]
    current_min, current_max = state["min_val"], state["max_val"]
    x_min, x_max = _finite_min_max(x)
    uninitialized = (current_min == jnp.inf) | (current_max == -jnp.inf)
    # min(+inf, x_min) is x_min: the first batch's range falls out of the same rule.
    new_min = jnp.where(uninitialized, x_min, jnp.minimum(current_min, x_min))
    new_max = jnp.where(uninitialized, x_max, jnp.maximum(current_max, x_max))
    counts = _histc_with_skipped(x, bins, new_min, new_max)
    update_histogram = counts[:bins]
    # XLA's CPU min/max reductions skip NaN; the histc pass counts them instead.
    has_nan = counts[bins + 1] > 0
    new_min = jnp.where(has_nan, jnp.float32(jnp.nan), new_min)
    new_max = jnp.where(has_nan, jnp.float32(jnp.nan), new_max)
    unchanged = (new_min == current_min) & (new_max == current_max)

    def add(_):
        return jnp.where(uninitialized, update_histogram, histogram + update_histogram)

    def combine(_):
        return _combine_histograms(histogram, current_min, current_max, update_histogram,
                                   new_min, new_max)

    combined = lax.cond(uninitialized | unchanged, add, combine, None)
    # A batch of only infinities leaves everything as it was (torch returns early).
    observed = ~(x_min > x_max) | has_nan
    return {"histogram": jnp.where(observed, combined, histogram),
            "min_val": jnp.where(observed, new_min, current_min),
            "max_val": jnp.where(observed, new_max, current_max)}


# ---------------------------------------------------------------------------
# The functional core and the module.
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class HistogramCore(UniformQuantizationCore):
    """Pure, jittable HistogramObserver (see the module docstring for the maths).

    Build it with ``HistogramCore.create(bins=..., dtype=..., ...)``.

    Attributes:
      bins: number of histogram bins (default 2048).
      (and the :class:`UniformQuantizationCore` fields)

    Example:
      >>> import jax, jax.numpy as jnp
      >>> core = HistogramCore.create(bins=128)
      >>> state = jax.jit(core.update)(core.init(), jnp.arange(10.0))
      >>> scale, zero_point = jax.jit(core.calculate_qparams)(state)
    """

    bins: int = 2048

    @property
    def upsample_rate(self) -> int:
        """Sub-bins per bin when a histogram is carried into a wider range (16)."""
        return _UPSAMPLE_RATE

    @property
    def dst_nbins(self) -> int:
        """``2 ** bits(dtype)`` (256 for 8-bit dtypes, also with reduce_range)."""
        return 2 ** self.dtype.bits

    def init(self) -> State:
        return {"histogram": jnp.zeros((self.bins,), jnp.float32),
                "min_val": jnp.array(jnp.inf, jnp.float32),
                "max_val": jnp.array(-jnp.inf, jnp.float32)}

    def reset(self, state: State) -> State:
        del state
        return self.init()

    def update(self, state: State, x: Any) -> State:
        """The state after observing ``x`` (any shape; empty batches are skipped).

        Args:
          state: ``{"histogram": f32[bins], "min_val": f32[], "max_val": f32[]}``.
          x: a float or integer array.

        Returns:
          The new state (same structure, shapes and dtypes).
        """
        x = jnp.ravel(as_observed_input(x))
        if x.size == 0:
            return state
        if state["histogram"].shape != (self.bins,):
            raise ValueError(f"state['histogram'] has shape {state['histogram'].shape}; "
                             f"this observer has bins={self.bins}")
        return _observe(state, x)

    def calculate_qparams(self, state: State) -> tuple[jax.Array, jax.Array]:
        """``(scale f32[1], zero_point i32[1])`` from torch's L2 search.

        Never observed (``min_val == +inf and max_val == -inf``): scale 1.0, zero point
        0. torch returns an int64 zero point for symmetric qschemes; jaxq int32.
        """
        min_val, max_val = state["min_val"], state["max_val"]
        never_observed = (min_val == jnp.inf) & (max_val == -jnp.inf)
        safe_min = jnp.where(never_observed, 0.0, min_val)
        safe_max = jnp.where(never_observed, 0.0, max_val)
        new_min, new_max = _non_linear_param_search(state["histogram"], safe_min,
                                                    safe_max, dst_nbins=self.dst_nbins)
        return self._calculate_qparams(jnp.where(never_observed, min_val, new_min),
                                       jnp.where(never_observed, max_val, new_max))


class HistogramObserver(UniformQuantizationObserverBase):
    """torch's ``HistogramObserver``: running histogram + L2-optimal min/max search.

    Args:
      bins: number of histogram bins (default 2048).
      dtype: qint8, quint8, int8, uint8, ... as the other uniform observers (default
        quint8). The search uses ``2 ** bits(dtype)`` destination bins.
      qscheme: ``per_tensor_affine`` (default) or ``per_tensor_symmetric``.
      reduce_range: halve the range (not with quint8 symmetric).
      quant_min, quant_max: custom range (must contain 0).
      factory_kwargs: torch's; only ``device`` (ignored) and ``dtype=float32``.
      eps: smallest scale (default float32 eps).
      is_dynamic: must be False (torch raises NotImplementedError).

    State: ``histogram`` f32[bins], ``min_val``, ``max_val`` f32 scalars.
    ``calculate_qparams()`` returns scale f32[1] and zero point i32[1].

    Eager calls warn when a batch holds +-inf (dropped, as torch) and raise
    ``ValueError`` for NaN; under ``jit`` see the module docstring.

    Raises:
      ValueError: a per-channel qscheme or is_dynamic=True (torch raises
        NotImplementedError), quint8 symmetric with reduce_range, bins < 1, a bad
        custom range or factory_kwargs.
      TypeError: an unsupported dtype or qscheme.

    Example:
      >>> import jax.numpy as jnp
      >>> obs = HistogramObserver(bins=64, reduce_range=True)
      >>> _ = obs(jnp.array([-1.0, 0.0, 2.0, 3.0]))
      >>> obs.histogram.shape
      (64,)
    """

    def __init__(self, bins: int = 2048, dtype: Any = quint8,
                 qscheme: Any = per_tensor_affine, reduce_range: bool = False,
                 quant_min: int | None = None, quant_max: int | None = None,
                 factory_kwargs: Any = None, eps: float = FLOAT32_EPS,
                 is_dynamic: bool = False, **kwargs: Any):
        if kwargs:
            raise TypeError(f"HistogramObserver got unexpected arguments {sorted(kwargs)}")
        if not as_qscheme(qscheme).is_per_tensor:
            raise ValueError(f"qscheme={qscheme!r}: HistogramObserver supports only "
                             "per_tensor_symmetric and per_tensor_affine")
        if is_dynamic:
            raise ValueError("HistogramObserver doesn't support dynamic quantization "
                             "(is_dynamic=True)")
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"bins={bins!r} must be a positive integer")
        if bins > 32768:
            raise ValueError(f"bins={bins} is above 32768: torch sums such histograms "
                             "in a thread-dependent order, which jaxq does not model")
        check_factory_kwargs(factory_kwargs)
        core = HistogramCore.create(dtype=dtype, qscheme=qscheme,
                                    reduce_range=reduce_range, quant_min=quant_min,
                                    quant_max=quant_max, eps=eps, is_dynamic=False,
                                    bins=int(bins))
        _check_symmetric_reduce_range(core, type(self).__name__)
        super().__init__(core)

    @property
    def upsample_rate(self) -> int:
        return self.core.upsample_rate

    @property
    def dst_nbins(self) -> int:
        return self.core.dst_nbins

    def __call__(self, x: jax.Array) -> jax.Array:
        """Records ``x`` in the histogram and returns ``x`` unchanged."""
        state = self.state.get_value()
        new_state = self.core.update(state, x)
        if is_concrete(x, new_state):
            observed = as_observed_input(x)
            if observed.size and bool(jnp.isnan(new_state["min_val"])
                                      | jnp.isnan(new_state["max_val"])):
                raise ValueError("x contains NaN: HistogramObserver cannot bin it (torch "
                                 "raises in torch.histc); the state is unchanged")
            if observed.size and bool(jnp.any(jnp.isinf(observed))):
                warnings.warn("torch.inf detected in input tensor, ignoring input",
                              UserWarning, stacklevel=2)
        self.state.set_value(new_state)
        return x

    forward = __call__

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


default_histogram_observer = HistogramObserver.with_args(quant_min=0, quant_max=127)
"""torch's ``default_histogram_observer``: ``HistogramObserver.with_args(quant_min=0,
quant_max=127)`` (usually used for PTQ)."""
