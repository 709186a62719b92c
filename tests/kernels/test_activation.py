"""Dynamic activation qparams and quantize against torch."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxq.kernels.activation import fbgemm_quantize, torch_choose_qparams  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


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
