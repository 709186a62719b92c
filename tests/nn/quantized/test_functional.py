"""jaxq.nn.quantized.functional vs torch.ao.nn.quantized.functional (NCHW <-> NHWC).

Element-wise float ops: torch's vectorized kernel handles all but the last
``numel % 128`` elements (its scalar tail rounds differently in rare ties), so those
tests demand >= 99% equal integers and |diff| <= 1; everything else is bit-exact.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.nn.quantized.functional as tqF

from jaxq.core.qtensor import quantize_per_tensor
from jaxq.core.dtypes import quint8
from jaxq.nn.quantized import functional as qF
from tests.nn.quantized.torch_helpers import (
    assert_qtensor_matches, f32, jaxq_weight, random_qtensor, random_weight)

ZERO_POINTS = {"quint8": 120, "qint8": 3}
DTYPES = ["quint8", "qint8"]


@pytest.fixture(params=DTYPES)
def pair(request, rng):
    dtype = request.param
    return random_qtensor(rng, (2, 5, 17, 19), 0.05, ZERO_POINTS[dtype], dtype)


ELEMENTWISE = [
    ("hardtanh", lambda F, q: F.hardtanh(q, -1.3, 2.1), 1.0),
    ("clamp", lambda F, q: F.clamp(q, -0.7, 0.9), 1.0),
    ("threshold", lambda F, q: F.threshold(q, 0.52, 2.0), 0.99),
    ("hardsigmoid", lambda F, q: F.hardsigmoid(q), 0.99),
    ("hardswish", lambda F, q: F.hardswish(q, f32(0.03), 10), 0.99),
    ("elu", lambda F, q: F.elu(q, f32(0.03), 100, 0.7), 0.99),
    ("celu", lambda F, q: F.celu(q, f32(0.03), 100, 0.7), 0.99),
    ("leaky_relu_qparams", lambda F, q: F.leaky_relu(q, 0.1, scale=f32(0.03), zero_point=50),
     0.99),
    ("leaky_relu", lambda F, q: F.leaky_relu(q, 0.1), 0.99),
]


@pytest.mark.parametrize("name,fn,min_equal", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
def test_elementwise_vs_torch(pair, name, fn, min_equal):
    tq, jq = pair
    assert_qtensor_matches(jax.jit(lambda q: fn(qF, q))(jq), fn(tqF, tq), min_equal)


def test_relu6_and_sigmoid_vs_torch(pair):
    tq, jq = pair
    assert_qtensor_matches(qF.relu6(jq), torch.ops.quantized.relu6(tq))
    assert_qtensor_matches(qF.sigmoid(jq), torch.sigmoid(tq), 0.99)
    assert_qtensor_matches(qF.sigmoid(jq, f32(0.004), 3),
                           torch.ops.quantized.sigmoid(tq, f32(0.004), 3), 0.99)


POOLS = [
    ("max_pool2d", lambda F, q: F.max_pool2d(q, 3, 2, 1, 1, True)),
    ("max_pool2d_dilated", lambda F, q: F.max_pool2d(q, (2, 3), (1, 2), (1, 1), (2, 1))),
    ("avg_pool2d", lambda F, q: F.avg_pool2d(q, 3, 2, 1)),
    ("avg_pool2d_ceil_nopad", lambda F, q: F.avg_pool2d(q, 3, 2, 1, True, False)),
    ("avg_pool2d_divisor", lambda F, q: F.avg_pool2d(q, 2, 2, 0, False, True, 3)),
    ("adaptive_avg_pool2d", lambda F, q: F.adaptive_avg_pool2d(q, (4, 7))),
    ("nearest_scale", lambda F, q: F.interpolate(q, scale_factor=1.7, mode="nearest")),
    ("nearest_size", lambda F, q: F.interpolate(q, size=(30, 11), mode="nearest")),
    ("upsample_nearest", lambda F, q: F.upsample_nearest(q, scale_factor=2)),
    ("bilinear", lambda F, q: F.interpolate(q, size=(30, 25), mode="bilinear")),
    ("upsample_bilinear", lambda F, q: F.upsample_bilinear(q, scale_factor=2)),
]


@pytest.mark.parametrize("name,fn", POOLS, ids=[p[0] for p in POOLS])
def test_pooling_and_interpolation_vs_torch(pair, name, fn):
    tq, jq = pair
    # bilinear: torch's float expression; a rare tie may round differently.
    assert_qtensor_matches(jax.jit(lambda q: fn(qF, q))(jq), fn(tqF, tq),
                           0.999 if "bilinear" in name else 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_3d_and_1d_vs_torch(rng, dtype):
    tq, jq = random_qtensor(rng, (2, 3, 6, 7, 9), 0.05, ZERO_POINTS[dtype], dtype)
    got = jax.jit(lambda q: (qF.avg_pool3d(q, 3, 2, 1), qF.adaptive_avg_pool3d(q, (4, 3, 5))))(jq)
    assert_qtensor_matches(got[0], tqF.avg_pool3d(tq, 3, 2, 1))
    assert_qtensor_matches(got[1], tqF.adaptive_avg_pool3d(tq, (4, 3, 5)))
    tq1, jq1 = random_qtensor(rng, (2, 3, 20), 0.05, ZERO_POINTS[dtype], dtype)
    assert_qtensor_matches(qF.max_pool1d(jq1, 3, 2, 1), tqF.max_pool1d(tq1, 3, 2, 1))


@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_vs_torch(rng, per_channel):
    tq, jq = random_qtensor(rng, (7, 13), 0.05, 120)
    wq = random_weight(rng, (5, 13), per_channel)
    bias = rng.normal(size=5).astype(np.float32)
    expected = tqF.linear(tq, wq, torch.tensor(bias), f32(0.07), 64)
    assert_qtensor_matches(qF.linear(jq, jaxq_weight(wq), bias, f32(0.07), 64), expected)


CONVS = [
    # (spatial, kernel, stride, padding, dilation, groups)
    ((11,), (3,), 2, 1, 1, 2),
    ((9, 7), (3, 2), (2, 1), (1, 0), (1, 2), 2),
    ((5, 6, 7), (3, 2, 3), (2, 1, 1), (1, 0, 1), (1, 1, 2), 1),
]


@pytest.mark.parametrize("spatial,kernel,stride,padding,dilation,groups", CONVS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_conv_vs_torch(rng, spatial, kernel, stride, padding, dilation, groups,
                       per_channel):
    n = len(spatial)
    tq, jq = random_qtensor(rng, (2, 4) + spatial, 0.03, 77)
    wq = random_weight(rng, (6, 4 // groups) + kernel, per_channel)
    bias = rng.normal(size=6).astype(np.float32)
    t_fn, j_fn = [getattr(m, f"conv{n}d") for m in (tqF, qF)]
    expected = t_fn(tq, wq, torch.tensor(bias), stride, padding, dilation, groups,
                    scale=f32(0.05), zero_point=60)
    got = j_fn(jq, jaxq_weight(wq), bias, stride, padding, dilation, groups,
               scale=f32(0.05), zero_point=60)
    assert_qtensor_matches(got, expected)


def test_functional_under_jit_does_not_retrace(rng):
    _, jq = random_qtensor(rng, (2, 5, 8, 8), 0.05, 120)
    traces = []

    @jax.jit
    def f(q):
        traces.append(1)
        return qF.avg_pool2d(qF.hardswish(q, 0.05, 3), 2).int_repr()

    first = f(jq)
    _, other = random_qtensor(rng, (2, 5, 8, 8), 0.05, 120)
    f(other)
    assert len(traces) == 1
    assert first.shape == (2, 4, 4, 5)


def test_bad_input():
    x = jnp.ones((1, 4, 4, 2))
    with pytest.raises(TypeError, match="Could not run 'quantized::max_pool2d'"):
        qF.max_pool2d(x, 2)
    q = quantize_per_tensor(x, 0.1, 0, quint8)
    with pytest.raises(ValueError, match="mode"):
        qF.interpolate(q, scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        qF.interpolate(q)
    with pytest.raises(ValueError, match="padding_mode"):
        qF.conv2d(q, None, padding_mode="reflect")
    with pytest.raises(ValueError, match="scale"):
        qF.hardswish(q, -1.0, 0)
    with pytest.raises(ValueError, match="zero_point"):
        qF.hardswish(q, 0.1, 300)
