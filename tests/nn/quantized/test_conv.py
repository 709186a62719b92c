"""jaxq.nn.quantized.Conv1d/2d/3d vs torch.ao.nn.quantized (NCHW <-> NHWC), bit-exact."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.qconfig as jqconfig
import torch.ao.quantization as tq
from jaxq.nn import quantized as nnq
from jaxq.nn.layout import kernel_from_torch
from torch.ao.nn import quantized as tnnq
from tests.nn.quantized.torch_helpers import (
    assert_qtensor_matches, f32, jaxq_weight, random_qtensor, random_weight,
    to_channels_last)

CASES = [
    # rank, spatial, kernel, stride, padding, dilation, groups
    (1, (11,), 3, 2, 1, 1, 2),
    (2, (9, 7), (3, 2), (2, 1), (1, 0), (1, 2), 2),
    (2, (8, 8), 3, 1, 1, 1, 4),  # depthwise
    (3, (5, 6, 7), (3, 2, 3), (2, 1, 1), (1, 0, 1), (1, 1, 2), 1),
]


@pytest.mark.parametrize("rank,spatial,kernel,stride,padding,dilation,groups", CASES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_forward_vs_torch(rng, rank, spatial, kernel, stride, padding, dilation, groups,
                          per_channel):
    cls, tcls = getattr(nnq, f"Conv{rank}d"), getattr(tnnq, f"Conv{rank}d")
    ref = tcls(4, 8, kernel, stride, padding, dilation, groups)
    mod = cls(4, 8, kernel, stride, padding, dilation, groups)
    ks = ref.kernel_size
    wq = random_weight(rng, (8, 4 // groups) + tuple(ks), per_channel, zero_points=True)
    bias = rng.normal(size=8).astype(np.float32)
    ref.set_weight_bias(wq, torch.tensor(bias))
    ref.scale, ref.zero_point = f32(0.05), 60
    mod.set_weight_bias(jaxq_weight(wq), bias)
    mod.scale.set_value(jnp.float32(0.05))
    mod.zero_point.set_value(jnp.int32(60))
    tq_x, jq_x = random_qtensor(rng, (2, 4) + spatial, 0.03, 77)
    assert_qtensor_matches(nnx.jit(lambda m, x: m(x))(mod, jq_x), ref(tq_x))
    np.testing.assert_array_equal(mod.weight().int_repr(), ref.weight().int_repr().numpy())


@pytest.mark.parametrize("qconfig_name", ["default_qconfig", "default_per_channel_qconfig"])
def test_from_float_vs_torch(rng, qconfig_name):
    tconv = torch.nn.Conv2d(3, 4, 3, padding=1, stride=2)
    x = rng.normal(size=(2, 3, 9, 9)).astype(np.float32)
    tconv.qconfig = getattr(tq, qconfig_name)
    tconv.activation_post_process = tconv.qconfig.activation()
    y = tconv(torch.tensor(x))
    tconv.activation_post_process(y)
    jconv = nnx.Conv(3, 4, (3, 3), strides=2, padding=1, rngs=nnx.Rngs(0))
    jconv.kernel.set_value(kernel_from_torch(jnp.asarray(tconv.weight.detach().numpy())))
    jconv.bias.set_value(jnp.asarray(tconv.bias.detach().numpy()))
    jconv.qconfig = getattr(jqconfig, qconfig_name)
    jconv.activation_post_process = jconv.qconfig.activation()
    jconv.activation_post_process(jnp.asarray(to_channels_last(y.detach().numpy())))
    ref, mod = tnnq.Conv2d.from_float(tconv), nnq.Conv2d.from_float(jconv)
    np.testing.assert_array_equal(mod.weight().int_repr(), ref.weight().int_repr().numpy())
    tq_x, jq_x = random_qtensor(rng, (2, 3, 9, 9), 0.02, 128)
    assert_qtensor_matches(mod(jq_x), ref(tq_x))


def test_bad_input():
    mod = nnq.Conv2d(2, 4, 3)
    with pytest.raises(TypeError, match="Could not run 'quantized::conv2d'"):
        mod(jnp.ones((1, 5, 5, 2)))
    with pytest.raises(ValueError, match="padding_mode"):
        nnq.Conv2d(2, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="divisible by groups"):
        nnq.Conv2d(3, 4, 3, groups=2)
    conv = nnx.Conv(2, 4, (3,), rngs=nnx.Rngs(0))
    conv.qconfig = jqconfig.default_qconfig
    conv.activation_post_process = jqconfig.default_qconfig.activation()
    conv.activation_post_process(jnp.ones((1, 3, 4)))
    with pytest.raises(TypeError, match="2-d convolution"):
        nnq.Conv2d.from_float(conv)
