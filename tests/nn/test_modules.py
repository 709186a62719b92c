"""jaxq.nn activation modules vs torch.nn on random data and edge values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxq import nn as jnn
from jaxq.qconfig import Identity as QConfigIdentity

EDGES = np.array([0.0, -0.0, 3.0, -3.0, 6.0, -6.0, 1e-30, -1e-30, 1e30, -1e30, np.inf,
                  -np.inf, np.nan, 2.9999998, -2.9999998, 88.7, -88.7, 20.0, -20.0],
                 np.float32)

CASES = [  # (jaxq module, torch module, exact)
    (jnn.ReLU(), torch.nn.ReLU(), True),
    (jnn.ReLU6(inplace=True), torch.nn.ReLU6(), True),
    (jnn.Hardswish(), torch.nn.Hardswish(), True),
    (jnn.Hardsigmoid(), torch.nn.Hardsigmoid(), True),
    (jnn.Hardtanh(-2.0, 0.5), torch.nn.Hardtanh(-2.0, 0.5), True),
    (jnn.Hardtanh(min_value=-0.5, max_value=1.0), torch.nn.Hardtanh(-0.5, 1.0), True),
    (jnn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2), True),
    (jnn.Identity(54, unused="x"), torch.nn.Identity(54, unused="x"), True),
    (jnn.ELU(alpha=0.7), torch.nn.ELU(alpha=0.7), False),
    (jnn.Sigmoid(), torch.nn.Sigmoid(), False),
    (jnn.Tanh(), torch.nn.Tanh(), False),
    (jnn.SiLU(), torch.nn.SiLU(), False),
    (jnn.GELU(), torch.nn.GELU(), False),
    (jnn.GELU("tanh"), torch.nn.GELU("tanh"), False),
]


@pytest.mark.parametrize("jmod,tmod,exact", CASES,
                         ids=[f"{type(c[0]).__name__}{i}" for i, c in enumerate(CASES)])
def test_matches_torch(jmod, tmod, exact, rng):
    x = np.concatenate([EDGES, (rng.normal(size=64) * 5).astype(np.float32)])
    y = np.asarray(jax.jit(jmod.__call__)(jnp.asarray(x)))
    expected = tmod(torch.tensor(x)).numpy()
    assert y.dtype == np.float32 and y.shape == x.shape
    if exact:
        np.testing.assert_array_equal(y, expected)
    else:
        # torch's vectorized exact GELU returns NaN for +inf, its scalar path (and
        # jaxq) inf: compare those edge values with torch's scalar path.
        edges = len(EDGES)
        expected[:edges] = [tmod(torch.tensor([v])).item() for v in EDGES]
        # GELU's 1 + erf(x) cancels for x < -3: XLA's and torch's float32 erf
        # approximations differ by a few ulp of 1.0 there (< 1e-6 absolute).
        atol = 1e-6 if isinstance(jmod, jnn.GELU) else 1e-7
        np.testing.assert_allclose(y, expected, rtol=2e-6, atol=atol)


def test_identity_is_the_qconfig_identity_and_shape_preserving():
    assert isinstance(jnn.Identity(), QConfigIdentity)
    x = jnp.ones((2, 3, 4))
    assert jnn.ReLU()(x).shape == (2, 3, 4)
    assert jnn.Hardswish()(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_gradients_match_torch(rng):
    x = (rng.normal(size=16) * 4).astype(np.float32)
    for jmod, tmod in [(jnn.Hardswish(), torch.nn.Hardswish()),
                       (jnn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1)),
                       (jnn.ELU(), torch.nn.ELU())]:
        grad = jax.grad(lambda v: jmod(v).sum())(jnp.asarray(x))
        xt = torch.tensor(x, requires_grad=True)
        tmod(xt).sum().backward()
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_bad_arguments():
    with pytest.raises(TypeError, match="inplace"):
        jnn.ReLU(inplace="yes")
    with pytest.raises(TypeError, match="negative_slope"):
        jnn.LeakyReLU("0.1")
    with pytest.raises(TypeError, match="alpha"):
        jnn.ELU(alpha=None)
    with pytest.raises(ValueError, match="max_val"):
        jnn.Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match="approximate"):
        jnn.GELU("erf")
