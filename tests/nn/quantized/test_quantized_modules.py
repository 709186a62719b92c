"""Activations, normalization, functional wrappers and stubs vs torch.ao.nn.quantized."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.qconfig as jqconfig
from jaxq.core.dtypes import quint8
from jaxq.nn import modules as jnn
from jaxq.nn import quantized as nnq
from torch.ao.nn import quantized as tnnq
from tests.nn.quantized.torch_helpers import assert_qtensor_matches, f32, random_qtensor


def P(array):
    return torch.nn.Parameter(torch.tensor(array))


@pytest.fixture
def pair(rng):
    return random_qtensor(rng, (2, 5, 7, 9), 0.05, 120)


def _jit(mod, x):
    return nnx.jit(lambda m, v: m(v))(mod, x)


def test_activation_modules_vs_torch(pair):
    tq_x, jq_x = pair
    cases = [
        (nnq.ReLU6(), tnnq.ReLU6(), 1.0),
        (nnq.Hardswish(f32(0.03), 10), tnnq.Hardswish(f32(0.03), 10), 0.99),
        (nnq.ELU(f32(0.03), 100, 0.5), tnnq.ELU(f32(0.03), 100, 0.5), 0.99),
        (nnq.LeakyReLU(f32(0.03), 50, 0.2), tnnq.LeakyReLU(f32(0.03), 50, 0.2), 0.99),
        (nnq.Sigmoid(f32(1 / 256), 0), tnnq.Sigmoid(f32(1 / 256), 0), 0.99),
    ]
    for mod, ref, min_equal in cases:
        assert_qtensor_matches(_jit(mod, jq_x), ref(tq_x), min_equal)


def test_batch_norm_modules_vs_torch(rng, pair):
    tq_x, jq_x = pair
    ref = tnnq.BatchNorm2d(5)
    w, b, m = (rng.normal(size=5).astype(np.float32) for _ in range(3))
    v = rng.uniform(0.5, 2, size=5).astype(np.float32)
    ref.weight, ref.bias = torch.nn.Parameter(torch.tensor(w)), torch.nn.Parameter(
        torch.tensor(b))
    ref.running_mean, ref.running_var = torch.tensor(m), torch.tensor(v)
    ref.scale, ref.zero_point = torch.tensor(f32(0.04)), torch.tensor(100)
    bn = nnx.BatchNorm(5, use_running_average=True, rngs=nnx.Rngs(0))
    bn.scale.set_value(jnp.asarray(w))
    bn.bias.set_value(jnp.asarray(b))
    bn.mean.set_value(jnp.asarray(m))
    bn.var.set_value(jnp.asarray(v))
    bn.epsilon = 1e-5
    bn.qconfig = jqconfig.default_qconfig
    bn.activation_post_process = jqconfig.default_qconfig.activation()
    bn.activation_post_process(jnp.asarray([-2.0, 8.0]))
    mod = nnq.BatchNorm2d.from_float(bn)
    mod.scale.set_value(jnp.float32(0.04))
    mod.zero_point.set_value(jnp.int32(100))
    assert_qtensor_matches(_jit(mod, jq_x), ref(tq_x))
    with pytest.raises(ValueError, match="must be 5-d"):
        nnq.BatchNorm3d(5)(jq_x)


def test_float_normalization_modules_vs_torch(rng, pair):
    tq_x, jq_x = pair
    w, b = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    ref = tnnq.GroupNorm(5, 5, P(w), P(b), f32(0.03), 120)
    assert_qtensor_matches(nnq.GroupNorm(5, 5, w, b, f32(0.03), 120)(jq_x), ref(tq_x), 0.99)
    ref = tnnq.InstanceNorm2d(5, P(w), P(b), f32(0.03), 120)
    assert_qtensor_matches(nnq.InstanceNorm2d(5, w, b, f32(0.03), 120)(jq_x), ref(tq_x),
                           0.99)
    tq_l, jq_l = random_qtensor(rng, (4, 6), 0.05, 120)
    ref = tnnq.LayerNorm([6], P(np.ones(6, np.float32)), P(np.zeros(6, np.float32)), f32(0.03), 128)
    assert_qtensor_matches(nnq.LayerNorm(6, jnp.ones(6), jnp.zeros(6), f32(0.03), 128)(jq_l),
                           ref(tq_l), 0.99)


def test_qfunctional_vs_torch(rng, pair):
    tq_x, jq_x = pair
    tq_y, jq_y = random_qtensor(rng, (2, 5, 7, 9), 0.07, 60)
    ref, mod = tnnq.QFunctional(), nnq.QFunctional()
    ref.scale, ref.zero_point = f32(0.09), 120
    mod.scale.set_value(jnp.float32(0.09))
    mod.zero_point.set_value(jnp.int32(120))
    for name in ("add", "mul", "add_relu"):
        assert_qtensor_matches(getattr(mod, name)(jq_x, jq_y), getattr(ref, name)(tq_x, tq_y))
    assert_qtensor_matches(mod.cat([jq_x, jq_y], dim=-1), ref.cat([tq_x, tq_y], dim=1))
    assert_qtensor_matches(mod.add_scalar(jq_x, 0.3), ref.add_scalar(tq_x, 0.3))
    assert_qtensor_matches(mod.mul_scalar(jq_x, -2.0), ref.mul_scalar(tq_x, -2.0))
    with pytest.raises(RuntimeError, match="not intended to use the 'forward'"):
        mod(jq_x)


def test_float_functional_and_from_float(rng):
    ff = nnq.FloatFunctional()
    a, b = jnp.asarray([1.0, -2.0]), jnp.asarray([0.5, 0.5])
    np.testing.assert_allclose(ff.add_relu(a, b), [1.5, 0.0])
    np.testing.assert_allclose(nnq.FXFloatFunctional().mul(a, b), [0.5, -1.0])
    ff.activation_post_process = jqconfig.default_qconfig.activation()
    ff.add(a, b)
    q = nnq.QFunctional.from_float(ff)
    scale, zp = ff.activation_post_process.calculate_qparams()
    assert float(q.scale.get_value()) == float(scale[0])
    assert int(q.zero_point.get_value()) == int(zp[0])
    with pytest.raises(TypeError, match="FloatFunctional"):
        nnq.QFunctional.from_float(nnq.FXFloatFunctional())


def test_stubs_and_dropout():
    x = jnp.asarray([0.26, -1.0, 3.3])
    q = nnq.Quantize(f32(0.1), 10, quint8)(x)
    expected = torch.quantize_per_tensor(torch.tensor(np.asarray(x)), f32(0.1), 10,
                                         torch.quint8)
    np.testing.assert_array_equal(q.int_repr(), expected.int_repr().numpy())
    np.testing.assert_array_equal(nnq.DeQuantize()(q), expected.dequantize().numpy())
    assert nnq.Dropout(0.3)(q) is q
    with pytest.raises(TypeError, match="already a QTensor"):
        nnq.Quantize(0.1, 0, quint8)(q)
    stub = jnn.Identity()
    stub.activation_post_process = jqconfig.default_qconfig.activation()
    stub.activation_post_process(x)
    quant = nnq.Quantize.from_float(stub)
    assert quant.dtype is quint8


def test_activation_from_float(pair):
    _, jq_x = pair
    hs = jnn.Hardswish()
    hs.activation_post_process = jqconfig.default_qconfig.activation()
    hs.activation_post_process(jnp.asarray([-0.5, 4.0]))
    mod = nnq.Hardswish.from_float(hs)
    scale, zp = hs.activation_post_process.calculate_qparams()
    assert float(mod.scale.get_value()) == float(scale[0])
    leaky = jnn.LeakyReLU(0.2)
    leaky.activation_post_process = hs.activation_post_process
    assert nnq.LeakyReLU.from_float(leaky).negative_slope == pytest.approx(0.2)
    with pytest.raises(ValueError, match="activation_post_process"):
        nnq.ELU.from_float(jnn.ELU())
    with pytest.raises(TypeError, match="Could not run"):
        nnq.Hardswish(0.1, 0)(jnp.ones(3))
