"""jaxq.nn.intrinsic.quantized (+ dynamic) vs torch.ao.nn.intrinsic.quantized."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.qconfig as jqconfig
import torch.ao.quantization as tq
from jaxq.nn import intrinsic as jnni
from jaxq.nn import modules as jnn
from jaxq.nn.intrinsic import quantized as nniq
from jaxq.nn.intrinsic.quantized import dynamic as nniqd
from jaxq.nn.layout import kernel_from_torch
from torch.ao.nn.intrinsic import quantized as tnniq
from torch.ao.nn.intrinsic.quantized import dynamic as tnniqd
from tests.nn.quantized.torch_helpers import (
    assert_qtensor_matches, f32, jaxq_weight, random_qtensor, random_weight)


@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_relu_vs_torch(rng, per_channel):
    wq = random_weight(rng, (5, 13), per_channel)
    bias = rng.normal(size=5).astype(np.float32)
    ref, mod = tnniq.LinearReLU(13, 5), nniq.LinearReLU(13, 5)
    ref.set_weight_bias(wq, torch.tensor(bias))
    mod.set_weight_bias(jaxq_weight(wq), bias)
    ref.scale, ref.zero_point = f32(0.03), 30
    mod.scale.set_value(jnp.float32(0.03))
    mod.zero_point.set_value(jnp.int32(30))
    tq_x, jq_x = random_qtensor(rng, (6, 13), 0.05, 120)
    assert_qtensor_matches(mod(jq_x), ref(tq_x))
    dref, dmod = tnniqd.LinearReLU(13, 5), nniqd.LinearReLU(13, 5)
    dref.set_weight_bias(wq, torch.tensor(bias))
    dmod.set_weight_bias(jaxq_weight(wq), bias)
    x = rng.normal(size=(6, 13)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(dmod(jnp.asarray(x))),
                                  dref(torch.tensor(x)).numpy())


@pytest.mark.parametrize("rank,spatial", [(1, (10,)), (2, (7, 8)), (3, (4, 5, 6))])
def test_conv_relu_vs_torch(rng, rank, spatial):
    cls, tcls = getattr(nniq, f"ConvReLU{rank}d"), getattr(tnniq, f"ConvReLU{rank}d")
    ref, mod = tcls(4, 6, 3, 1, 1, 1, 2), cls(4, 6, 3, 1, 1, 1, 2)
    wq = random_weight(rng, (6, 2) + (3,) * rank, True)
    bias = rng.normal(size=6).astype(np.float32)
    ref.set_weight_bias(wq, torch.tensor(bias))
    mod.set_weight_bias(jaxq_weight(wq), bias)
    ref.scale, ref.zero_point = f32(0.05), 10
    mod.scale.set_value(jnp.float32(0.05))
    mod.zero_point.set_value(jnp.int32(10))
    tq_x, jq_x = random_qtensor(rng, (2, 4) + spatial, 0.03, 77)
    assert_qtensor_matches(nnx.jit(lambda m, v: m(v))(mod, jq_x), ref(tq_x))


def test_bn_relu_vs_torch(rng):
    tq_x, jq_x = random_qtensor(rng, (2, 5, 6, 7), 0.05, 120)
    ref, mod = tnniq.BNReLU2d(5), nniq.BNReLU2d(5)
    w, b, m = (rng.normal(size=5).astype(np.float32) for _ in range(3))
    ref.weight, ref.bias = (torch.nn.Parameter(torch.tensor(t)) for t in (w, b))
    ref.running_mean = torch.tensor(m)
    ref.scale, ref.zero_point = torch.tensor(f32(0.04)), torch.tensor(100)
    for name, value in (("weight", w), ("bias", b), ("running_mean", m)):
        getattr(mod, name).set_value(jnp.asarray(value))
    mod.scale.set_value(jnp.float32(0.04))
    mod.zero_point.set_value(jnp.int32(100))
    assert_qtensor_matches(mod(jq_x), ref(tq_x))


def test_from_float_fused_containers_vs_torch(rng):
    tconv = torch.nn.Conv2d(3, 4, 3, padding=1)
    tfused = torch.ao.nn.intrinsic.ConvReLU2d(tconv, torch.nn.ReLU())
    tfused.qconfig = tconv.qconfig = tq.default_per_channel_qconfig
    tfused.activation_post_process = tfused.qconfig.activation()
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    y = tfused(torch.tensor(x))
    tfused.activation_post_process(y)
    jconv = nnx.Conv(3, 4, (3, 3), padding=1, rngs=nnx.Rngs(0))
    jconv.kernel.set_value(kernel_from_torch(jnp.asarray(tconv.weight.detach().numpy())))
    jconv.bias.set_value(jnp.asarray(tconv.bias.detach().numpy()))
    jfused = jnni.ConvReLU2d(jconv, jnn.ReLU())
    jfused.qconfig = jqconfig.default_per_channel_qconfig
    jfused.activation_post_process = jfused.qconfig.activation()
    jfused.activation_post_process(jnp.asarray(y.detach().numpy()))
    ref, mod = tnniq.ConvReLU2d.from_float(tfused), nniq.ConvReLU2d.from_float(jfused)
    np.testing.assert_array_equal(mod.weight().int_repr(), ref.weight().int_repr().numpy())
    tq_x, jq_x = random_qtensor(rng, (2, 3, 6, 6), 0.02, 128)
    assert_qtensor_matches(mod(jq_x), ref(tq_x))
    with pytest.raises(TypeError, match="ConvReLU2d"):
        nniq.ConvReLU2d.from_float(jconv)
    with pytest.raises(TypeError, match="Could not run"):
        mod(jnp.ones((1, 6, 6, 3)))
