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
import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxq.core.affine import exact_divide
from jaxq.core.dtypes import quint8
from jaxq.core.float_arithmetic import fma_f32, separately_rounded, two_product, two_sum
from jaxq.core.qscheme import as_qscheme, per_tensor_affine
from jaxq.observer.base import (
    FLOAT32_EPS,
    UniformQuantizationCore,
    UniformQuantizationObserverBase,
    as_observed_input,
    is_concrete,
)
from jaxq.observer.min_max import _check_symmetric_reduce_range, check_factory_kwargs

__all__ = ["HistogramCore", "HistogramObserver", "default_histogram_observer",
           "torch_histc", "torch_linspace", "torch_float32_sum"]

State = dict[str, jax.Array]

_UPSAMPLE_RATE = 16          # torch's HistogramObserver.upsample_rate (fixed)
_SEARCH_STEP = 1e-5          # torch's stepsize in _non_linear_param_search
_SUM_LANES = 8               # float lanes of torch's CPU sum kernel (x86 builds)
_SUM_ILP = 4                 # torch's row_sum ilp_factor
_SUM_LEVELS = 4              # torch's multi_row_sum num_levels
_SCATTER_SLICES = 4          # histc scatters this many slices of a large batch
_SCATTER_MIN_SIZE = 1 << 16


# ---------------------------------------------------------------------------
# Float helpers: rounding as torch rounds, and error-free transformations.
# ---------------------------------------------------------------------------
def _pair_add(high, low, other_high, other_low):
    """Float32-pair addition (a double-float stand-in for a float64 add)."""
    total, error = two_sum(high, other_high)
    error = error + (low + other_low)
    new_high = total + error
    return new_high, error - (new_high - total)


def _double_sum_cumulative(values: jax.Array) -> jax.Array:
    """Prefix sums of float32 ``values`` in float32-pair precision, rounded to float32.

    Stands in for torch's float64 accumulator in ``torch.cumsum`` (CPU, float32): the
    pairs hold the exact sums of histogram counts (about 48 bits), so the result is
    float32(exact prefix sum), as torch's float64 accumulation gives. Blocked as
    64-wide rows (a scan over columns, then over row totals) to stay cheap to compile.
    """
    n = values.shape[0]
    width = 64
    rows = -(-n // width)
    padded = jnp.pad(values, (0, rows * width - n)).reshape(rows, width)
    zeros = jnp.zeros((rows,), jnp.float32)

    def along_row(carry, column):
        carry = _pair_add(*carry, column, jnp.zeros_like(column))
        return carry, carry

    (row_high, row_low), (high, low) = lax.scan(along_row, (zeros, zeros), padded.T)

    def over_rows(carry, row_total):
        return _pair_add(*carry, *row_total), carry

    _, (offset_high, offset_low) = lax.scan(
        over_rows, (jnp.float32(0.0), jnp.float32(0.0)), (row_high, row_low))
    high, low = _pair_add(high, low, offset_high[None, :], offset_low[None, :])
    return (high + low).T.reshape(-1)[:n]


def torch_float32_sum(values: jax.Array) -> jax.Array:
    """``torch.sum`` of a 1-D float32 array in torch's CPU summation order.

    torch's float32 sum (``cascade_sum`` with ``vectorized_inner_sum``) keeps 8 lanes x
    4 independent accumulators, sums blocks of ``2**level_power`` rows sequentially and
    merges the blocks through a 4-level cascade, then folds accumulators and lanes left
    to right. Reproducing that order gives torch's exact float32 result; other orders
    differ in the last bits once the values are not small integers.

    Args:
      values: float32 ``[n]`` (n <= 32768, torch's single-thread grain).

    Returns:
      float32 ``[]``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(torch_float32_sum(jnp.arange(100, dtype=jnp.float32)))
      4950.0
    """
    values = jnp.asarray(values, jnp.float32)
    n = values.shape[0]
    if n < _SUM_LANES:
        # Too short for a vector: torch's scalar row_sum, 4 accumulators then a fold.
        partial = list(values[:_SUM_ILP]) if n >= _SUM_ILP else []
        if not partial:
            partial = [jnp.float32(0.0)]
            tail = range(n)
        else:
            tail = range(_SUM_ILP, n)
        for k in tail:
            partial[0] = partial[0] + values[k]
        for k in range(1, len(partial)):
            partial[0] = partial[0] + partial[k]
        return partial[0]
    vec_size = n // _SUM_LANES
    size_ilp = vec_size // _SUM_ILP
    acc = [jnp.zeros((_SUM_ILP, _SUM_LANES), jnp.float32) for _ in range(_SUM_LEVELS)]
    if size_ilp:
        rows = values[: size_ilp * _SUM_ILP * _SUM_LANES].reshape(size_ilp, _SUM_ILP,
                                                                  _SUM_LANES)
        level_power = max(4, (math.ceil(math.log2(size_ilp)) if size_ilp > 1 else 0)
                          // _SUM_LEVELS)
        level_step = 1 << level_power
        level_mask = level_step - 1
        n_blocks = size_ilp // level_step
        # Sequential sums inside each full block, vectorised over the blocks.
        if n_blocks:
            blocks = rows[: n_blocks * level_step].reshape(n_blocks, level_step, _SUM_ILP,
                                                           _SUM_LANES)
            block_sums = blocks[:, 0]
            for j in range(1, level_step):
                block_sums = block_sums + blocks[:, j]
        i = 0
        for block in range(n_blocks):
            # acc[0] is zero at a block start, so it equals the block's sequential sum.
            acc[0] = block_sums[block]
            i += level_step
            for j in range(1, _SUM_LEVELS):
                acc[j] = acc[j] + acc[j - 1]
                acc[j - 1] = jnp.zeros_like(acc[j - 1])
                if i & (level_mask << (j * level_power)):
                    break
        for row in range(i, size_ilp):
            acc[0] = acc[0] + rows[row]
        for j in range(1, _SUM_LEVELS):
            acc[0] = acc[0] + acc[j]
    partial = [acc[0][k] for k in range(_SUM_ILP)]
    vectors = values[: vec_size * _SUM_LANES].reshape(vec_size, _SUM_LANES)
    for row in range(size_ilp * _SUM_ILP, vec_size):
        partial[0] = partial[0] + vectors[row]
    for k in range(1, _SUM_ILP):
        partial[0] = partial[0] + partial[k]
    final = jnp.float32(0.0)
    for k in range(vec_size * _SUM_LANES, n):
        final = final + values[k]
    for k in range(_SUM_LANES):
        final = final + partial[0][k]
    return final


# ---------------------------------------------------------------------------
# torch.linspace and torch.histc (float32, CPU).
# ---------------------------------------------------------------------------
def torch_linspace(start: jax.Array, end: jax.Array, steps: int) -> jax.Array:
    """``torch.linspace(start, end, steps)`` in float32, bit-equal to torch on CPU.

    ``step = (end - start) / (steps - 1)`` in float32; index ``i`` is
    ``fma(step, i, start)`` below ``steps // 2`` and ``fma(-step, steps - 1 - i, end)``
    from there, so both ends are exact.

    Args:
      start, end: float32 scalars.
      steps: static number of points (>= 2).

    Returns:
      float32 ``[steps]``.
    """
    start = jnp.asarray(start, jnp.float32)
    end = jnp.asarray(end, jnp.float32)
    step = exact_divide(end - start, jnp.float32(steps - 1))
    index = np.arange(steps)
    halfway = steps // 2
    lower = fma_f32(step, jnp.asarray(index, jnp.float32), start)
    upper = fma_f32(-step, jnp.asarray(steps - 1 - index, jnp.float32), end)
    return jnp.where(index < halfway, lower, upper)


def _histc_edges(min_val: jax.Array, max_val: jax.Array) -> tuple[jax.Array, jax.Array]:
    # torch.histc widens a zero-width range to [min - 1, max + 1].
    same = min_val == max_val
    return (jnp.where(same, min_val - 1.0, min_val),
            jnp.where(same, max_val + 1.0, max_val))


def torch_histc(x: jax.Array, bins: int, min_val: jax.Array, max_val: jax.Array
                ) -> jax.Array:
    """``torch.histc(x, bins, min=min_val, max=max_val)`` for float32 on CPU.

    Bin of ``v``: ``int((v - lo) * bins / (hi - lo))`` in float32 (the value ``hi``
    goes to the last bin); values outside ``[lo, hi]``, infinities and NaN are not
    counted. A zero-width range becomes ``[lo - 1, hi + 1]`` (torch first re-reads the
    data's own min/max, which in an observer is that same point).

    Args:
      x: float32 array (any shape).
      bins: static number of bins.
      min_val, max_val: float32 scalars, ``min_val <= max_val``, finite.

    Returns:
      float32 ``[bins]`` counts.

    Example:
      >>> import jax.numpy as jnp
      >>> torch_histc(jnp.array([0.0, 0.5, 1.0]), 2, 0.0, 1.0)
      Array([1., 2.], dtype=float32)
    """
    return _histc_with_skipped(x, bins, min_val, max_val)[:bins]


def _histc_with_skipped(x, bins: int, min_val, max_val) -> jax.Array:
    """:func:`torch_histc` plus two extra counts: ``[bins]`` values outside the range
    (or infinite), ``[bins + 1]`` NaN values. One pass over ``x``."""
    x = jnp.ravel(jnp.asarray(x, jnp.float32))
    lo, hi = _histc_edges(jnp.asarray(min_val, jnp.float32),
                          jnp.asarray(max_val, jnp.float32))

    def slice_counts(part):
        inside = (part >= lo) & (part <= hi)
        # A true division (XLA would multiply by the reciprocal of a broadcast
        # divisor). The divisor is made per-element with ``part * 0`` rather than
        # exact_divide's barrier, which would materialise a batch-sized copy;
        # ``part * 0`` is NaN only where the value is infinite or NaN, and those
        # values are skipped anyway.
        scaled = ((part - lo) * jnp.float32(bins)) / ((hi - lo) + part * jnp.float32(0.0))
        position = jnp.minimum(jnp.where(inside, scaled, 0.0).astype(jnp.int32), bins - 1)
        position = jnp.where(inside, position, jnp.where(part != part, bins + 1, bins))
        return jnp.zeros((bins + 2,), jnp.float32).at[position].add(1.0)

    # Independent scatters over a few slices run faster on XLA's CPU backend than one
    # long serial scatter; the counts are integers, so the sum is exact in any order.
    n = x.shape[0]
    n_slices = _SCATTER_SLICES if n >= _SCATTER_MIN_SIZE else 1
    counts = slice_counts(x[:n // n_slices])
    for k in range(1, n_slices):
        counts = counts + slice_counts(x[k * n // n_slices:(k + 1) * n // n_slices])
    return counts


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


# ---------------------------------------------------------------------------
# _non_linear_param_search.
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _search_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's alpha/beta sequences and the loop bound, exactly as Python makes them.

    ``alpha[k]`` is 0.0 plus ``k`` sequential float64 additions of 1e-5, ``beta[k]`` is
    1.0 minus ``k`` of them; ``limit[a]`` is the first ``k`` with
    ``beta[k] <= alpha[a]``, so ``while alpha < beta`` reads ``b < limit[a]``.
    Returned as float32 triples (exact) plus the int32 limits.
    """
    steps = int(1.0 / _SEARCH_STEP) + 4
    alpha = np.empty(steps, np.float64)
    beta = np.empty(steps, np.float64)
    a, b = 0.0, 1.0
    for k in range(steps):
        alpha[k], beta[k] = a, b
        a += _SEARCH_STEP
        b -= _SEARCH_STEP
    # beta is decreasing: count the betas above alpha[a].
    limit = np.searchsorted(-beta, -alpha, side="left").astype(np.int32)

    def triple(values):
        high = values.astype(np.float32)
        rest = values - high.astype(np.float64)
        middle = rest.astype(np.float32)
        low = (rest - middle.astype(np.float64)).astype(np.float32)
        return np.stack([high, middle, low])

    return triple(alpha), triple(beta), limit


def _scaled_pair(fraction: jax.Array, total: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``fraction * total`` as a float32 pair; ``fraction`` is a float32 triple."""
    high, error = two_product(fraction[0], total)
    middle, middle_error = two_product(fraction[1], total)
    tail = error + (middle + (middle_error + fraction[2] * total))
    new_high = high + tail
    return new_high, tail - (new_high - high)


def _less_than(values: jax.Array, threshold: tuple[jax.Array, jax.Array]) -> jax.Array:
    """float32 ``values < threshold`` with a float32-pair threshold."""
    return (values - threshold[0]) < threshold[1]


def _greater_than(values: jax.Array, threshold: tuple[jax.Array, jax.Array]) -> jax.Array:
    return (values - threshold[0]) > threshold[1]


def _floor_divide(a: jax.Array, b: jax.Array) -> jax.Array:
    """torch's float ``div(a, b, rounding_mode="floor")`` (``div_floor_floating``)."""
    basic = exact_divide(a, b)
    mod = lax.rem(a, jnp.broadcast_to(b, a.shape))
    numerator = jnp.where(jnp.isinf(basic) & ~jnp.isinf(a), a, a - mod)
    div = exact_divide(numerator, b)
    div = jnp.where((mod != 0) & ((b < 0) != (mod < 0)), div - 1.0, div)
    floor = jnp.floor(div)
    floor = jnp.where(div - floor > 0.5, floor + 1.0, floor)
    floor = jnp.where(div == 0, jnp.copysign(jnp.float32(0.0), basic), floor)
    return jnp.where(b == 0, basic, floor)


def _cube_difference(end, begin):
    """``(end**3 - begin**3) / 3`` with torch's roundings."""
    end_cubed = separately_rounded(separately_rounded(end * end) * end)
    begin_cubed = separately_rounded(separately_rounded(begin * begin) * begin)
    return exact_divide(end_cubed - begin_cubed, jnp.float32(3.0))


def _float32_of_width(difference, low_difference, numerator: int, denominator: int):
    """float32 of ``(max - min) * numerator / denominator`` computed in float64.

    ``difference + low_difference`` is the exact ``max - min``; ``denominator`` is a
    power of two (exact scaling), ``numerator`` an integer below 2**24.
    """
    high, error = two_product(difference, jnp.asarray(numerator, jnp.float32))
    rounded = high + (error + low_difference * jnp.asarray(numerator, jnp.float32))
    return exact_divide(rounded, jnp.float32(denominator))


def _quantization_error(histogram, difference, low_difference, start_bin, end_bin,
                        bins: int, dst_nbins: int):
    """torch's ``_compute_quantization_error(start_bin, end_bin)`` as float32."""
    bin_width = _float32_of_width(difference, low_difference, 1, bins)
    count = end_bin - start_bin + 1
    dst_bin_width = _float32_of_width(difference, low_difference, count, bins * dst_nbins)
    half_dst = exact_divide(dst_bin_width, jnp.float32(2.0))
    src_bin = jnp.arange(bins, dtype=jnp.int32)
    src_bin_begin = separately_rounded((src_bin - start_bin).astype(jnp.float32) * bin_width)
    src_bin_end = src_bin_begin + bin_width
    last = jnp.float32(dst_nbins - 1)
    dst_of_begin = jnp.clip(_floor_divide(src_bin_begin, dst_bin_width), 0.0, last)
    dst_of_begin_center = separately_rounded((dst_of_begin + 0.5) * dst_bin_width)
    dst_of_end = jnp.clip(_floor_divide(src_bin_end, dst_bin_width), 0.0, last)
    density = exact_divide(histogram, bin_width)

    norm = separately_rounded(
        density * _cube_difference(half_dst, src_bin_begin - dst_of_begin_center))
    inner = separately_rounded(density * _cube_difference(half_dst, -half_dst))
    norm = norm + separately_rounded((dst_of_end - dst_of_begin - 1.0) * inner)
    dst_of_end_center = separately_rounded(dst_of_end * dst_bin_width) + half_dst
    norm = norm + separately_rounded(density * _cube_difference(src_bin_end - dst_of_end_center,
                                                      -half_dst))
    error = torch_float32_sum(norm)
    return jnp.where(difference == 0, jnp.float32(0.0), error)


@functools.partial(jax.jit, static_argnames="dst_nbins")
def _non_linear_param_search(histogram, min_val, max_val, dst_nbins: int):
    """torch's ``_non_linear_param_search``: the ``(new_min, new_max)`` it selects."""
    bins = histogram.shape[0]
    alpha_table, beta_table, limit_table = (jnp.asarray(t) for t in _search_tables())
    n_steps = alpha_table.shape[1]
    difference, low_difference = two_sum(max_val, -min_val)
    bin_width = exact_divide(max_val - min_val, jnp.float32(bins))
    total = torch_float32_sum(histogram)
    cumulative = _double_sum_cumulative(histogram)
    index = jnp.arange(bins, dtype=jnp.int32)

    def error(start_bin, end_bin):
        return _quantization_error(histogram, difference, low_difference, start_bin,
                                   end_bin, bins, dst_nbins)

    def threshold(table, k):
        return _scaled_pair(table[:, k], total)

    def first_beta_step_below(b, end_bin):
        """Smallest k > b with cSum[end] > beta[k] * total (binary search, beta falls)."""
        value = cumulative[end_bin]

        def body(_, bounds):
            lo, hi = bounds
            mid = (lo + hi) // 2
            found = _greater_than(value, threshold(beta_table, mid))
            return jnp.where(found, lo, mid + 1), jnp.where(found, mid, hi)

        lo, _ = lax.fori_loop(0, int(math.ceil(math.log2(n_steps))) + 1, body,
                              (b + 1, jnp.int32(n_steps - 1)))
        return lo

    def cond(carry):
        a, b, _, _, _, stopped = carry
        return (~stopped) & (b < limit_table[a])

    def body(carry):
        a, b, start_bin, end_bin, norm_min, _ = carry
        below = _less_than(cumulative, threshold(alpha_table, a + 1))
        l = jnp.clip(jnp.sum(below, dtype=jnp.int32), start_bin, end_bin)
        at_most = ~_greater_than(cumulative, threshold(beta_table, b + 1))
        r = jnp.clip(jnp.sum(at_most, dtype=jnp.int32) - 1, start_bin, end_bin)
        move_start = (l - start_bin) > (end_bin - r)
        next_start = jnp.where(move_start, l, start_bin)
        next_end = jnp.where(move_start, end_bin, r)
        changed = (next_start != start_bin) | (next_end != end_bin)

        def evaluate(_):
            norm = error(next_start, next_end)
            worse = norm > norm_min
            return (jnp.where(move_start, a + 1, a), jnp.where(move_start, b, b + 1),
                    jnp.where(worse, start_bin, next_start),
                    jnp.where(worse, end_bin, next_end),
                    jnp.where(worse, norm_min, norm), worse)

        def skip(_):
            # Nothing moves until beta drops below cSum[end]: jump there at once
            # (the loop condition still stops at alpha >= beta).
            target = first_beta_step_below(b, end_bin) - 1
            return (a, jnp.maximum(target, b + 1), start_bin, end_bin, norm_min,
                    jnp.bool_(False))

        return lax.cond(changed, evaluate, skip, None)

    init = (jnp.int32(0), jnp.int32(0), jnp.int32(0), jnp.int32(bins - 1),
            jnp.float32(jnp.inf), jnp.bool_(False))
    _, _, start_bin, end_bin, _, _ = lax.while_loop(cond, body, init)
    new_min = min_val + separately_rounded(bin_width * start_bin.astype(jnp.float32))
    new_max = min_val + separately_rounded(bin_width * (end_bin + 1).astype(jnp.float32))
    return new_min, new_max


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
