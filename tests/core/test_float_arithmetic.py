"""jaxq.core.float_arithmetic against exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.float_arithmetic import fma_f32, separately_rounded, two_product, two_sum


def _nearest_f32(value: Fraction) -> np.float32:
    """Correct round-to-nearest-even of an exact rational to float32."""
    guess = np.float32(float(value))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess,
                  np.nextafter(guess, np.float32(np.inf))]
    def key(c):
        bits = int(np.asarray(c).view(np.uint32))
        return (abs(Fraction(float(c)) - value), bits & 1)
    return min(candidates, key=key)


def test_fma_f32_rounds_once(rng):
    a = (rng.standard_normal(400) * 1000).astype(np.float32)
    b = rng.standard_normal(400).astype(np.float32)
    c = (rng.standard_normal(400) * 100).astype(np.float32)
    # Cases where the product cancels c almost exactly, and near-ties.
    c[:100] = -(a[:100] * b[:100]).astype(np.float32)
    got = np.asarray(jax.jit(fma_f32)(a, b, c))
    expected = [_nearest_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
                for x, y, z in zip(a, b, c)]
    np.testing.assert_array_equal(got, np.array(expected, np.float32))




def test_two_sum_and_two_product_are_exact(rng):
    a = (rng.standard_normal(300) * 1e3).astype(np.float32)
    b = (rng.standard_normal(300) * 1e-2).astype(np.float32)
    for function, combine in ((two_sum, lambda x, y: x + y), (two_product, lambda x, y: x * y)):
        high, low = jax.jit(function)(jnp.asarray(a), jnp.asarray(b))
        for x, y, h, l in zip(a, b, np.asarray(high), np.asarray(low)):
            assert Fraction(float(h)) + Fraction(float(l)) == combine(
                Fraction(float(x)), Fraction(float(y)))


def test_separately_rounded_keeps_the_product_rounding(rng):
    a = rng.standard_normal(1000).astype(np.float32)
    b = rng.standard_normal(1000).astype(np.float32)
    c = rng.standard_normal(1000).astype(np.float32)
    got = jax.jit(lambda a, b, c: separately_rounded(a * b) + c)(a, b, c)
    np.testing.assert_array_equal(np.asarray(got), (a * b) + c)
    assert np.isnan(np.asarray(separately_rounded(jnp.float32(jnp.nan))))
