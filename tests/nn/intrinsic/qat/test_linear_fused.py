"""intrinsic.qat LinearBn1d / LinearReLU vs torch on identical weights."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.nn.intrinsic as tnni
import torch.ao.nn.intrinsic.qat as tniqat
from flax import nnx

from jaxq.nn import ReLU
from jaxq.nn import intrinsic as nni
from jaxq.nn.intrinsic import qat as niqat
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


def _copy_linear(jmod, tmod):
    with torch.no_grad():
        tmod.weight.copy_(t(np.asarray(jmod.kernel.get_value()).T))
        if jmod.bias is not None:
            tmod.bias.copy_(t(jmod.bias.get_value()))
        if hasattr(jmod, "bn"):
            tmod.bn.weight.copy_(t(jmod.bn.scale.get_value()))
            tmod.bn.bias.copy_(t(jmod.bn.bias.get_value()))


@pytest.mark.parametrize("qconfig_name", ["x86_fused_per_channel", "per_tensor"])
def test_linear_bn_training_matches_torch(qconfig_name, rng):
    jqconfig, tqconfig = QCONFIGS[qconfig_name]
    jmod = niqat.LinearBn1d(5, 4, qconfig=jqconfig, rngs=nnx.Rngs(2))
    tmod = tniqat.LinearBn1d(5, 4, qconfig=tqconfig)
    _copy_linear(jmod, tmod)
    counter = [0]
    step = make_train_step(counter)
    for index in range(4):
        if index == 2:  # freeze mid-training
            niqat.freeze_bn_stats(jmod)
            tmod.freeze_bn_stats()
        x = rng.normal(size=(6, 5)).astype(np.float32)
        g = rng.normal(size=(6, 4)).astype(np.float32)
        y, grads, grad_x = step(jmod, jnp.asarray(x), jnp.asarray(g))
        yt, xt_grad = torch_step(tmod, x, g, _same)
        assert_close(y, yt.detach())
        assert_close(grad_x, xt_grad)
        assert_close(grads["kernel"][...], tmod.weight.grad.numpy().T)
        assert_close(grads["bias"][...], tmod.bias.grad)
        assert_close(grads["bn"]["scale"][...], tmod.bn.weight.grad)
        assert_close(grads["bn"]["bias"][...], tmod.bn.bias.grad)
        assert_close(jmod.bn.mean[...], tmod.bn.running_mean, rtol=1e-6, atol=1e-6)
        assert_close(jmod.bn.var[...], tmod.bn.running_var, rtol=1e-6, atol=1e-6)
        assert_close(jmod.weight_fake_quant.scale, tmod.weight_fake_quant.scale,
                     rtol=1e-6, atol=0)
    assert counter[0] == 1
    # to_float folds the BN like fuse_linear_bn_weights.
    jfloat, tfloat = jmod.to_float(), tmod.to_float()
    assert type(jfloat) is nnx.Linear
    assert_close(jfloat.kernel[...], tfloat.weight.detach().numpy().T, rtol=1e-6, atol=1e-7)
    assert_close(jfloat.bias[...], tfloat.bias.detach(), rtol=1e-6, atol=1e-7)


def test_linear_bn_from_float():
    jqconfig, tqconfig = QCONFIGS["per_channel"]
    rngs = nnx.Rngs(0)
    linear = nnx.Linear(3, 2, rngs=rngs)
    bn = nnx.BatchNorm(2, momentum=0.8, epsilon=1e-4, rngs=rngs)
    bn.var.set_value(jnp.array([0.5, 2.0]))
    fused = nni.LinearBn1d(linear, bn)
    fused.qconfig = jqconfig
    qat = niqat.LinearBn1d.from_float(fused)
    assert qat.momentum == pytest.approx(0.2) and qat.eps == pytest.approx(1e-4)
    assert qat.bn.momentum == pytest.approx(0.8)
    np.testing.assert_array_equal(qat.bn.var[...], bn.var[...])
    np.testing.assert_array_equal(qat.kernel[...], linear.kernel[...])
    assert qat.weight_fake_quant.scale.shape == (2,)
    with pytest.raises(TypeError, match="only works for LinearBn1d"):
        niqat.LinearBn1d.from_float(linear)


def test_linear_relu_matches_torch(rng):
    jqconfig, tqconfig = QCONFIGS["x86_fused_per_channel"]
    linear = nnx.Linear(5, 3, rngs=nnx.Rngs(4))
    fused = nni.LinearReLU(linear, ReLU())
    fused.qconfig = jqconfig
    jmod = niqat.LinearReLU.from_float(fused)
    tlinear = torch.nn.Linear(5, 3)
    with torch.no_grad():
        tlinear.weight.copy_(t(np.asarray(linear.kernel[...]).T))
        tlinear.bias.copy_(t(linear.bias[...]))
    tfused = tnni.LinearReLU(tlinear, torch.nn.ReLU())
    tfused.qconfig = tlinear.qconfig = tqconfig  # torch reads the child's qconfig
    tmod = tniqat.LinearReLU.from_float(tfused)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    g = rng.normal(size=(4, 3)).astype(np.float32)
    y, grads, grad_x = make_train_step([0])(jmod, jnp.asarray(x), jnp.asarray(g))
    yt, xt_grad = torch_step(tmod, x, g, _same)
    assert_close(y, yt.detach())
    assert_close(grad_x, xt_grad)
    assert_close(grads["kernel"][...], tmod.weight.grad.numpy().T)
    np.testing.assert_array_equal(jmod.weight_fake_quant.scale,
                                  tmod.weight_fake_quant.scale.numpy())
    back = jmod.to_float()
    assert type(back) is nni.LinearReLU and type(back[0]) is nnx.Linear
    np.testing.assert_array_equal(back[0].kernel[...], linear.kernel[...])
    with pytest.raises(TypeError, match="only works for LinearReLU"):
        linear.qconfig = jqconfig
        niqat.LinearReLU.from_float(linear)
    assert jit_apply(back, jnp.asarray(x)).shape == (4, 3)
