"""jaxq.nn.quantized.dynamic.Linear vs torch.ao.nn.quantized.dynamic.Linear."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.qconfig as jqconfig
import torch.ao.quantization as tq
from jaxq.nn.quantized import dynamic as nnqd
from torch.ao.nn.quantized import dynamic as tnnqd
from tests.nn.quantized.torch_helpers import jaxq_weight, random_weight


def _float_pair(rng, qconfig_name, in_features=9, out_features=5):
    weight = rng.normal(size=(out_features, in_features)).astype(np.float32)
    bias = rng.normal(size=out_features).astype(np.float32)
    tlin = torch.nn.Linear(in_features, out_features)
    with torch.no_grad():
        tlin.weight.copy_(torch.tensor(weight))
        tlin.bias.copy_(torch.tensor(bias))
    tlin.qconfig = getattr(tq, qconfig_name)
    jlin = nnx.Linear(in_features, out_features, rngs=nnx.Rngs(0))
    jlin.kernel.set_value(jnp.asarray(weight.T))
    jlin.bias.set_value(jnp.asarray(bias))
    jlin.qconfig = getattr(jqconfig, qconfig_name)
    return tlin, jlin


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(7, 13), (2, 3, 13), (1, 13)])
def test_int8_forward_vs_torch_bit_exact(rng, per_channel, shape):
    wq = random_weight(rng, (5, 13), per_channel)
    bias = rng.normal(size=5).astype(np.float32)
    ref = tnnqd.Linear(13, 5)
    ref.set_weight_bias(wq, torch.tensor(bias))
    mod = nnqd.Linear(13, 5)
    mod.set_weight_bias(jaxq_weight(wq), bias)
    x = rng.normal(size=shape).astype(np.float32) * 2
    got = nnx.jit(lambda m, v: m(v))(mod, jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(got), ref(torch.tensor(x)).numpy())


@pytest.mark.parametrize("qconfig_name", ["default_dynamic_qconfig",
                                          "per_channel_dynamic_qconfig",
                                          "float16_dynamic_qconfig"])
def test_from_float_vs_torch(rng, qconfig_name):
    tlin, jlin = _float_pair(rng, qconfig_name)
    ref, mod = tnnqd.Linear.from_float(tlin), nnqd.Linear.from_float(jlin)
    x = rng.normal(size=(6, 9)).astype(np.float32)
    expected = ref(torch.tensor(x)).detach().numpy()
    got = np.asarray(mod(jnp.asarray(x)))
    if qconfig_name.startswith("float16"):
        assert mod.dtype == "float16"
        np.testing.assert_array_equal(np.asarray(mod.weight()),
                                      tlin.weight.detach().half().numpy())
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(mod.weight().int_repr(),
                                      ref.weight().int_repr().numpy())
        np.testing.assert_array_equal(got, expected)


def test_bad_input(rng):
    mod = nnqd.Linear(3, 2)
    with pytest.raises(TypeError, match="float"):
        mod(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="qint8 or float16"):
        nnqd.Linear(3, 2, dtype="quint8")
    with pytest.raises(TypeError, match="from_float only works"):
        lin = nnx.Conv(3, 2, (3,), rngs=nnx.Rngs(0))
        lin.qconfig = jqconfig.default_dynamic_qconfig
        nnqd.Linear.from_float(lin)
    with pytest.raises(ValueError, match="qconfig"):
        nnqd.Linear.from_float(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
