"""Dynamic activation qparams / quantize and the exact FMA against torch and exact maths."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxq.kernels.activation import (  # noqa: E402
    fbgemm_quantize, fma_f32, torch_choose_qparams)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


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


@pytest.mark.parametrize("reduce_range", [True, False])
def test_choose_qparams_matches_aten(rng, reduce_range):
    cases = [rng.standard_normal(50) * s + o for s, o in
             [(1, 0), (3, 2), (0.1, -5), (1e-5, 0), (1e-6, 1e-6), (100, 0)]]
    cases += [np.zeros(4), np.full(4, 3.0), np.full(4, -2.0), np.array([-1.0, 1.0]),
              np.array([0.0, 1e-9]), np.array([-3e-6, 0.0]), np.array([-1e-30, 1e-30]),
              np.array([-0.5, 1.5])]
    qmax = 127 if reduce_range else 255
    fn = jax.jit(lambda mn, mx: torch_choose_qparams(mn, mx, 0, qmax))
    for values in cases:
        values = values.astype(np.float32)
        scale, zp = torch._choose_qparams_per_tensor(torch.from_numpy(values), reduce_range)
        got_scale, got_zp = fn(values.min(), values.max())
        assert np.float32(got_scale) == np.float32(scale), values[:4]
        assert int(got_zp) == zp, values[:4]


def test_fbgemm_quantize_matches_torch_quantize_per_tensor(rng):
    x = (rng.standard_normal(20000) * 2).astype(np.float32)
    for scale, zp in [(0.0173, 131), (0.02, 0), (0.5 / 3, 77), (0.1, 255)]:
        expected = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, torch.quint8
                                             ).int_repr().numpy()
        got = np.asarray(fbgemm_quantize(jnp.asarray(x), np.float32(scale), zp, jnp.uint8))
        np.testing.assert_array_equal(got, expected)
