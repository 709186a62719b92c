"""torch's float32 CPU kernels that HistogramObserver relies on, reproduced bit for bit.

* :func:`torch_histc`: ``torch.histc`` (``int((x - lo) * bins / (hi - lo))`` in
  float32, the value ``hi`` in the last bin, values outside ``[lo, hi]`` skipped, a
  zero-width range widened to ``[lo - 1, hi + 1]``).
* :func:`torch_linspace`: ``torch.linspace`` (``fma(step, i, start)`` for the first
  half, ``fma(-step, steps - 1 - i, end)`` for the second), with the fused multiply-add
  emulated exactly by :func:`jaxq.core.float_arithmetic.fma_f32`.
* :func:`torch_float32_sum`: ``torch.sum`` of float32 in torch's blocked, 8-lane
  cascade order.
* float32-pair helpers standing in for torch's float64 accumulation in
  ``torch.cumsum`` (``_pair_add``, ``_double_sum_cumulative``).

Example:
  >>> import jax.numpy as jnp
  >>> torch_histc(jnp.array([0.0, 0.5, 1.0]), 2, 0.0, 1.0)
  Array([1., 2.], dtype=float32)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxq.core.affine import exact_divide
from jaxq.core.float_arithmetic import fma_f32, two_sum

__all__ = ["torch_histc", "torch_linspace", "torch_float32_sum"]

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
