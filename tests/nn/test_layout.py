"""jaxq.nn.layout: torch <-> Flax kernel axes; weight observers/fake-quants built for
Flax kernels give torch's qparams on the transposed weight."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import fake_quantize as tfq
from torch.ao.quantization import observer as tobs
from torch.ao.quantization import qconfig as tqc

import jaxq
import jaxq.fake_quantize as jfq
import jaxq.observer as jobs
from jaxq import qconfig as jqc
from jaxq.nn.layout import (
    KernelFusedFakeQuantizeCore,
    flax_kernel_axis,
    kernel_from_torch,
    kernel_to_torch,
    torch_weight_axis,
    weight_fake_quant_for_kernel,
    weight_observer_for_kernel,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPES = [(6, 4), (3, 5, 4), (3, 2, 5, 4), (2, 3, 2, 5, 4)]  # Flax kernels, out = 4


@pytest.mark.parametrize("shape", SHAPES)
def test_axis_translation_matches_transpose(shape):
    kernel = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    weight = np.asarray(kernel_to_torch(kernel))
    assert weight.shape == (shape[-1], shape[-2], *shape[:-2])
    np.testing.assert_array_equal(kernel_from_torch(weight), kernel)
    for torch_axis in range(-len(shape), len(shape)):
        axis = flax_kernel_axis(torch_axis, len(shape))
        assert kernel.shape[axis] == weight.shape[torch_axis]
        # The same slices: moving each axis first gives the same matrices.
        np.testing.assert_array_equal(
            np.moveaxis(kernel, axis, 0).reshape(kernel.shape[axis], -1).sum(1),
            np.moveaxis(weight, torch_axis, 0).reshape(weight.shape[torch_axis], -1).sum(1))
        assert torch_weight_axis(axis, len(shape)) == torch_axis % len(shape)


def test_axis_errors():
    with pytest.raises(ValueError, match="kernel_ndim"):
        flax_kernel_axis(0, 1)
    with pytest.raises(ValueError, match="torch_axis"):
        flax_kernel_axis(4, 4)
    with pytest.raises(ValueError, match="torch_axis"):
        flax_kernel_axis(True, 2)
    with pytest.raises(TypeError, match="kernel"):
        weight_fake_quant_for_kernel(jfq.default_weight_fake_quant, "kernel")
    with pytest.raises(TypeError, match="factory"):
        weight_fake_quant_for_kernel(None, jnp.ones((2, 2)))


OBSERVERS = {  # name -> (jaxq factory, torch factory)
    "x86_per_channel": (jqc.get_default_qconfig("x86").weight,
                        tqc.get_default_qconfig("x86").weight),
    "per_channel_ch1": (jobs.PerChannelMinMaxObserver.with_args(
        ch_axis=1, dtype=jaxq.qint8, qscheme=jaxq.per_channel_symmetric),
        tobs.PerChannelMinMaxObserver.with_args(ch_axis=1, dtype=torch.qint8,
                                                qscheme=torch.per_channel_symmetric)),
    "per_tensor": (jobs.default_weight_observer, tobs.default_weight_observer),
}


@pytest.mark.parametrize("name", list(OBSERVERS))
@pytest.mark.parametrize("shape", [(6, 4), (3, 3, 2, 4)])
def test_observer_qparams_match_torch_on_transposed_weight(name, shape, rng):
    jfactory, tfactory = OBSERVERS[name]
    kernel = rng.normal(size=shape).astype(np.float32)
    obs = weight_observer_for_kernel(jfactory, kernel)
    obs(jnp.asarray(kernel))
    tobserver = tfactory()
    tobserver(torch.tensor(np.asarray(kernel_to_torch(kernel)).copy()))
    scale, zero_point = obs.calculate_qparams()
    tscale, tzero_point = tobserver.calculate_qparams()
    np.testing.assert_array_equal(scale, tscale.numpy())
    np.testing.assert_array_equal(zero_point, tzero_point.numpy())


FAKE_QUANTS = {  # name -> (jaxq factory, torch factory)
    "fused_per_channel": (jfq.default_fused_per_channel_wt_fake_quant,
                          tfq.default_fused_per_channel_wt_fake_quant),
    "per_channel": (jfq.default_per_channel_weight_fake_quant,
                    tfq.default_per_channel_weight_fake_quant),
    "per_tensor": (jfq.default_weight_fake_quant, tfq.default_weight_fake_quant),
    "fused_per_tensor": (jfq.default_fused_wt_fake_quant, tfq.default_fused_wt_fake_quant),
}


@pytest.mark.parametrize("name", list(FAKE_QUANTS))
def test_fake_quant_matches_torch_under_jit_without_retrace(name, rng):
    """Pre-sized state: the first call already runs under nnx.jit with a fixed shape;
    flags toggle without retracing; outputs/qparams equal torch's on the weight."""
    jfactory, tfactory = FAKE_QUANTS[name]
    shape = (3, 3, 2, 4)
    fq = weight_fake_quant_for_kernel(jfactory, shape)
    tfq_module = tfactory()
    if fq.is_per_channel:
        assert fq.ch_axis == 3 and fq.torch_ch_axis == 0 and fq.scale.shape == (4,)
        assert fq.activation_post_process.min_val.shape == (4,)
    if name == "fused_per_channel":
        assert isinstance(fq.core, KernelFusedFakeQuantizeCore)
    traces = [0]

    @nnx.jit
    def apply(module, kernel):
        traces[0] += 1
        return module(kernel)

    for index in range(3):
        if index == 2:
            jfq.disable_observer(fq)
            tfq_module.disable_observer()
        kernel = rng.normal(size=shape).astype(np.float32)
        y = apply(fq, jnp.asarray(kernel))
        yt = tfq_module(torch.tensor(np.asarray(kernel_to_torch(kernel)).copy()))
        np.testing.assert_array_equal(kernel_to_torch(np.asarray(y)), yt.detach().numpy())
        np.testing.assert_array_equal(fq.scale, tfq_module.scale.numpy())
        np.testing.assert_array_equal(fq.zero_point, tfq_module.zero_point.numpy())
    assert traces[0] == 1


def test_learnable_and_identity_factories():
    learnable = jfq._LearnableFakeQuantize.with_args(
        observer=jobs.MovingAveragePerChannelMinMaxObserver, quant_min=-128,
        quant_max=127, dtype=jaxq.qint8, qscheme=jaxq.per_channel_symmetric,
        channel_len=1)
    fq = weight_fake_quant_for_kernel(learnable, (5, 3))
    assert fq.scale.shape == (3,) and fq.ch_axis == 1
    identity = weight_fake_quant_for_kernel(jqc.Identity, (5, 3))
    assert isinstance(identity, jqc.Identity)
    x = jnp.ones((5, 3))
    assert identity(x) is x
