"""jaxq.nn.quantized.Linear vs torch.ao.nn.quantized.Linear (bit-exact, fbgemm epilogue)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.qconfig as jqconfig
import torch.ao.quantization as tq
from jaxq.nn import qat as jnnqat
from jaxq.nn.quantized import Linear, QuantizedState
from torch.ao.nn import quantized as tnnq
from tests.nn.quantized.torch_helpers import (
    assert_qtensor_matches, f32, jaxq_weight, random_qtensor, random_weight)


def _pair(rng, in_features, out_features, per_channel, zero_points=False):
    wq = random_weight(rng, (out_features, in_features), per_channel, zero_points)
    bias = rng.normal(size=out_features).astype(np.float32)
    ref = tnnq.Linear(in_features, out_features)
    ref.set_weight_bias(wq, torch.tensor(bias))
    ref.scale, ref.zero_point = f32(0.07), 61
    mod = Linear(in_features, out_features)
    mod.set_weight_bias(jaxq_weight(wq), bias)
    mod.scale.set_value(jnp.float32(0.07))
    mod.zero_point.set_value(jnp.int32(61))
    return ref, mod


@pytest.mark.parametrize("per_channel,zero_points", [(False, False), (True, False),
                                                     (False, True), (True, True)])
@pytest.mark.parametrize("shape", [(7, 13), (2, 3, 13), (1, 13)])
def test_forward_vs_torch(rng, per_channel, zero_points, shape):
    ref, mod = _pair(rng, 13, 5, per_channel, zero_points)
    tq_x, jq_x = random_qtensor(rng, shape, 0.05, 120, channels_last=False)
    assert_qtensor_matches(mod(jq_x), ref(tq_x), channels_last=False)
    np.testing.assert_array_equal(mod.weight().int_repr(), ref.weight().int_repr().numpy())


def _observed_pair(rng, qconfig_name):
    """An observed nnx.Linear and torch nn.Linear with the same weights and statistics."""
    kernel = rng.normal(size=(6, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    x = rng.normal(size=(16, 6)).astype(np.float32)
    tlin = torch.nn.Linear(6, 4)
    with torch.no_grad():
        tlin.weight.copy_(torch.tensor(kernel.T))
        tlin.bias.copy_(torch.tensor(bias))
    tlin.qconfig = getattr(tq, qconfig_name)
    tlin.activation_post_process = tlin.qconfig.activation()
    y = tlin(torch.tensor(x))
    tlin.activation_post_process(y)
    jlin = nnx.Linear(6, 4, rngs=nnx.Rngs(0))
    jlin.kernel.set_value(jnp.asarray(kernel))
    jlin.bias.set_value(jnp.asarray(bias))
    jlin.qconfig = getattr(jqconfig, qconfig_name)
    jlin.activation_post_process = jlin.qconfig.activation()
    jlin.activation_post_process(jnp.asarray(y.detach().numpy()))
    return tlin, jlin


@pytest.mark.parametrize("qconfig_name", ["default_qconfig", "default_per_channel_qconfig"])
def test_from_float_vs_torch(rng, qconfig_name):
    tlin, jlin = _observed_pair(rng, qconfig_name)
    ref = tnnq.Linear.from_float(tlin)
    mod = Linear.from_float(jlin)
    assert float(mod.scale.get_value()) == np.float32(ref.scale)
    assert int(mod.zero_point.get_value()) == ref.zero_point
    w, tw = mod.weight(), ref.weight()
    np.testing.assert_array_equal(w.int_repr(), tw.int_repr().numpy())
    if tw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        np.testing.assert_array_equal(w.q_per_channel_scales(),
                                      tw.q_per_channel_scales().float().numpy())
    else:
        assert float(w.scale) == np.float32(tw.q_scale())
    tq_x, jq_x = random_qtensor(rng, (5, 6), 0.02, 128)
    assert_qtensor_matches(mod(jq_x), ref(tq_x), channels_last=False)


def test_from_float_qat_uses_weight_fake_quant(rng):
    qat = jnnqat.Linear(6, 4, qconfig=jqconfig.get_default_qat_qconfig("x86"),
                        rngs=nnx.Rngs(0))
    qat(jnp.asarray(rng.normal(size=(8, 6)), jnp.float32))
    qat.activation_post_process = jqconfig.default_qconfig.activation()
    qat.activation_post_process(jnp.asarray(rng.normal(size=(8, 4)), jnp.float32))
    mod = Linear.from_float(qat)
    scale, _ = qat.weight_fake_quant.calculate_qparams()
    np.testing.assert_array_equal(mod.weight().q_per_channel_scales(), scale)


def test_jit_state_and_no_retrace(rng):
    _, mod = _pair(rng, 13, 5, True)
    traces = []

    @nnx.jit
    def run(m, x):
        traces.append(1)
        return m(x)

    _, x1 = random_qtensor(rng, (4, 13), 0.05, 120)
    _, x2 = random_qtensor(rng, (4, 13), 0.05, 100)
    first = run(mod, x1)
    mod.scale.set_value(jnp.float32(0.5))
    second = run(mod, x2)
    assert len(traces) == 1
    assert float(second.scale) == 0.5 and float(first.scale) == np.float32(0.07)
    assert not jax.tree.leaves(nnx.state(mod, nnx.Param))
    assert jax.tree.leaves(nnx.state(mod, QuantizedState))


def test_bad_input(rng):
    mod = Linear(3, 2)
    with pytest.raises(TypeError, match="Could not run 'quantized::linear'"):
        mod(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        mod.set_weight_bias(jaxq_weight(random_weight(rng, (3, 3), False)), None)
    with pytest.raises(ValueError, match="qconfig"):
        Linear.from_float(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="from_float only works"):
        Linear.from_float(nnx.Conv(3, 2, (3,), rngs=nnx.Rngs(0)))
    lin = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    lin.qconfig = jqconfig.default_qconfig
    with pytest.raises(ValueError, match="activation_post_process"):
        Linear.from_float(lin)
    with pytest.raises(ValueError, match="qint8"):
        Linear(3, 2, dtype="quint8")
