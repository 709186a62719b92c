"""qat.Linear and qat.dynamic.Linear vs torch on identical weights."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.nn.qat as tnnqat
import torch.ao.nn.qat.dynamic as tnnqatd
import torch.ao.quantization as tq
from flax import nnx

import jaxq.fake_quantize as jfq
from jaxq import qconfig as jqc
from jaxq.nn import ReLU
from jaxq.nn import intrinsic as nni
from jaxq.nn import qat as nnqat
from tests.nn.qat._torch_ref import (
    QCONFIGS,
    assert_close,
    jit_apply,
    make_train_step,
    t,
    torch_step,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _same(x):
    return torch.tensor(np.asarray(x, np.float32))


def _pair(qconfig_name, bias=True, seed=0):
    jqconfig, tqconfig = QCONFIGS[qconfig_name]
    linear = nnx.Linear(6, 4, use_bias=bias, rngs=nnx.Rngs(seed))
    linear.qconfig = jqconfig
    tlinear = torch.nn.Linear(6, 4, bias=bias)
    with torch.no_grad():
        tlinear.weight.copy_(t(np.asarray(linear.kernel[...]).T))
        if bias:
            tlinear.bias.copy_(t(linear.bias[...]))
    tlinear.qconfig = tqconfig
    return linear, tlinear


@pytest.mark.parametrize("qconfig_name,bias", [("x86_fused_per_channel", True),
                                               ("per_tensor", False),
                                               ("per_channel", True)])
def test_forward_grad_qparams_match_torch(qconfig_name, bias, rng):
    linear, tlinear = _pair(qconfig_name, bias)
    jmod = nnqat.Linear.from_float(linear)
    tmod = tnnqat.Linear.from_float(tlinear)
    assert type(jmod) is nnqat.Linear and jmod.qconfig is linear.qconfig
    counter = [0]
    step = make_train_step(counter)
    for index in range(3):
        if index == 2:
            jfq.disable_observer(jmod)
            tmod.apply(tq.disable_observer)
        x = rng.normal(size=(2, 3, 6)).astype(np.float32)
        g = rng.normal(size=(2, 3, 4)).astype(np.float32)
        y, grads, grad_x = step(jmod, jnp.asarray(x), jnp.asarray(g))
        yt, xt_grad = torch_step(tmod, x, g, _same)
        assert_close(y, yt.detach())
        assert_close(grad_x, xt_grad)
        assert_close(grads["kernel"][...], tmod.weight.grad.numpy().T)
        if bias:
            assert_close(grads["bias"][...], tmod.bias.grad)
        np.testing.assert_array_equal(jmod.weight_fake_quant.scale,
                                      tmod.weight_fake_quant.scale.numpy())
        np.testing.assert_array_equal(jmod.weight_fake_quant.zero_point,
                                      tmod.weight_fake_quant.zero_point.numpy())
    assert counter[0] == 1
    back = jmod.to_float()
    assert type(back) is nnx.Linear and back.use_bias == bias
    np.testing.assert_array_equal(back.kernel[...], jmod.kernel[...])


def test_from_float_looks_through_observed_subclasses():
    """jaxq.eager's Observed<Cls> subclasses (torch's forward hooks) are accepted."""
    observed = type("ObservedLinear", (nnx.Linear,), {"_jaxq_observed_base": nnx.Linear})
    linear = observed(3, 2, rngs=nnx.Rngs(0))
    linear.qconfig = QCONFIGS["per_tensor"][0]
    assert type(nnqat.Linear.from_float(linear)) is nnqat.Linear


def test_constructor_and_errors():
    jqconfig = QCONFIGS["per_channel"][0]
    m = nnqat.Linear(3, 5, qconfig=jqconfig)
    assert m.kernel.shape == (3, 5) and m.weight_fake_quant.scale.shape == (5,)
    assert m.weight_fake_quant.ch_axis == 1 and m.weight_fake_quant.torch_ch_axis == 0
    with pytest.raises(ValueError, match="qconfig must be provided"):
        nnqat.Linear(3, 5)
    with pytest.raises(ValueError, match="in_features"):
        nnqat.Linear(0, 5, qconfig=jqconfig)
    linear = nnx.Linear(3, 5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="qconfig defined"):
        nnqat.Linear.from_float(linear)
    linear.qconfig = None
    with pytest.raises(ValueError, match="valid qconfig"):
        nnqat.Linear.from_float(linear)
    linear.qconfig = jqconfig
    fused = nni.LinearReLU(linear, ReLU())
    fused.qconfig = jqconfig
    with pytest.raises(TypeError, match="only works for Linear, got LinearReLU"):
        nnqat.Linear.from_float(fused)
    conv = nnx.Conv(3, 5, (1, 1), rngs=nnx.Rngs(0))
    conv.qconfig = jqconfig
    with pytest.raises(TypeError, match="only works for Linear"):
        nnqat.Linear.from_float(conv)


def test_dynamic_linear_matches_torch(rng):
    jmod = nnqat.dynamic.Linear(4, 3, qconfig=jqc.default_dynamic_qat_qconfig)
    tmod = tnnqatd.Linear(4, 3, qconfig=tq.default_dynamic_qat_qconfig)
    with torch.no_grad():
        tmod.weight.copy_(t(np.asarray(jmod.kernel[...]).T))
        tmod.bias.copy_(t(jmod.bias[...]))
    x = rng.normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        assert_close(jit_apply(jmod, jnp.asarray(x)), tmod(_same(x)))
    with pytest.raises(ValueError, match="memoryless"):
        nnqat.dynamic.Linear(4, 3, qconfig=jqc.default_qat_qconfig)
    linear = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    linear.qconfig = jqc.default_dynamic_qat_qconfig
    assert type(nnqat.dynamic.Linear.from_float(linear)) is nnqat.dynamic.Linear
