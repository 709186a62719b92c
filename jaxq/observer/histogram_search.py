"""torch's ``_non_linear_param_search`` for HistogramObserver: the L2-optimal min/max.

alpha/beta step by 1e-5 over the histogram's CDF, the end with more mass to shed
moves, the L2 error is summed from ``density * (end**3 - begin**3) / 3`` pieces, and
the search stops at the first error increase. Every float32 step rounds as torch
rounds it; torch's float64 cumulative sums and thresholds are run in float32 pairs
(see :mod:`jaxq.observer.torch_histogram_ops`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxq.core.affine import exact_divide
from jaxq.core.float_arithmetic import separately_rounded, two_product, two_sum
from jaxq.observer.torch_histogram_ops import _double_sum_cumulative, torch_float32_sum

_SEARCH_STEP = 1e-5          # torch's stepsize in _non_linear_param_search


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
