"""intrinsic.qat ConvBn*/ConvBnReLU*/ConvReLU* vs torch on identical weights.

Outputs and gradients are compared with a tight float32 tolerance (the convolution
sums in another order); fake-quant qparams must be equal.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.nn.intrinsic as tnni
import torch.ao.nn.intrinsic.qat as tniqat
import torch.ao.quantization as tq
from flax import nnx

import jaxq.fake_quantize as jfq
from jaxq.nn import ReLU
from jaxq.nn import intrinsic as nni
from jaxq.nn.intrinsic import qat as niqat
from tests.nn.qat._torch_ref import (
    QCONFIGS,
    assert_close,
    copy_conv_to_torch,
    flax_grad,
    from_nchw,
    jit_apply,
    make_train_step,
    t,
    to_nchw,
    torch_step,
    torch_weight,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CASES = [  # (class name, rank, qconfig name)
    ("ConvBnReLU2d", 2, "x86_fused_per_channel"),
    ("ConvBnReLU2d", 2, "per_tensor"),
    ("ConvBn1d", 1, "per_channel"),
    pytest.param("ConvBnReLU3d", 3, "per_tensor", marks=pytest.mark.slow),
]


def _shape(rank, channels, batch=2, size=5):
    return (batch,) + (size if rank < 3 else 3,) * rank + (channels,)


def _compare_grads(jmod, tmod, grad_module, grad_x, xt_grad, what):
    assert_close(grad_x, from_nchw(xt_grad), what=f"{what}: d/dx")
    assert_close(grad_module["kernel"][...], flax_grad(tmod.weight.grad),
                 what=f"{what}: d/dkernel")
    if jmod.bias is not None:
        assert_close(grad_module["bias"][...], tmod.bias.grad, what=f"{what}: d/dbias")
    if hasattr(jmod, "bn"):
        assert_close(grad_module["bn"]["scale"][...], tmod.bn.weight.grad,
                     what=f"{what}: d/dgamma")
        assert_close(grad_module["bn"]["bias"][...], tmod.bn.bias.grad,
                     what=f"{what}: d/dbeta")


def _compare_state(jmod, tmod, what, exact_qparams=False):
    """Running stats and weight qparams. torch accumulates BN statistics in float64,
    jaxq in float32, so after the first update the folded weights (and with them
    the observed qparams) can differ in the last bit; qparams are exact only while
    the running statistics are still identical (``exact_qparams``)."""
    assert_close(jmod.bn.mean[...], tmod.bn.running_mean, rtol=1e-6, atol=1e-6,
                 what=f"{what}: running_mean")
    assert_close(jmod.bn.var[...], tmod.bn.running_var, rtol=1e-6, atol=1e-6,
                 what=f"{what}: running_var")
    scale, zero_point = jmod.weight_fake_quant.scale, jmod.weight_fake_quant.zero_point
    if exact_qparams:
        np.testing.assert_array_equal(scale, tmod.weight_fake_quant.scale.numpy(),
                                      err_msg=what)
    else:
        assert_close(scale, tmod.weight_fake_quant.scale, rtol=1e-6, atol=0, what=what)
    np.testing.assert_array_equal(zero_point, tmod.weight_fake_quant.zero_point.numpy(),
                                  err_msg=what)


@pytest.mark.parametrize("name,rank,qconfig_name", CASES)
def test_training_matches_torch_with_flag_toggles(name, rank, qconfig_name, rng):
    """Train steps under nnx.jit vs torch, toggling freeze_bn, observer and fake-quant
    mid-training: same outputs, gradients, running stats, qparams; one trace."""
    jqconfig, tqconfig = QCONFIGS[qconfig_name]
    jmod = getattr(niqat, name)(3, 4, 3, stride=1, padding=1, bias=True,
                                qconfig=jqconfig, rngs=nnx.Rngs(1))
    tmod = getattr(tniqat, name)(3, 4, 3, stride=1, padding=1, bias=True,
                                 qconfig=tqconfig)
    copy_conv_to_torch(jmod, tmod)
    counter = [0]
    step = make_train_step(counter)
    schedule = [
        ("train", None),
        ("train", None),
        ("freeze_bn", (lambda m: niqat.freeze_bn_stats(m), tniqat.freeze_bn_stats)),
        ("no_observer", (jfq.disable_observer, tq.disable_observer)),
        ("no_fake_quant", (jfq.disable_fake_quant, tq.disable_fake_quant)),
        ("all_on", (lambda m: (jfq.enable_observer(m), jfq.enable_fake_quant(m),
                               niqat.update_bn_stats(m)),
                    lambda m: (tq.enable_observer(m), tq.enable_fake_quant(m),
                               tniqat.update_bn_stats(m)))),
    ]
    for label, toggles in schedule:
        if toggles is not None:
            toggles[0](jmod)
            tmod.apply(toggles[1])
        x = rng.normal(size=_shape(rank, 3)).astype(np.float32)
        g = rng.normal(size=_shape(rank, 4)).astype(np.float32)
        frozen_stats = (np.asarray(jmod.bn.mean[...]), np.asarray(jmod.bn.var[...]))
        y, grad_module, grad_x = step(jmod, jnp.asarray(x), jnp.asarray(g))
        yt, xt_grad = torch_step(tmod, x, g, to_nchw)
        what = f"{name}/{qconfig_name}/{label}"
        assert_close(y, from_nchw(yt), what=f"{what}: output")
        _compare_grads(jmod, tmod, grad_module, grad_x, xt_grad, what)
        _compare_state(jmod, tmod, what, exact_qparams=label == "train" and not counter[1:])
        counter.append(label)
        if label == "freeze_bn":
            np.testing.assert_array_equal(jmod.bn.mean[...], frozen_stats[0])
            np.testing.assert_array_equal(jmod.bn.var[...], frozen_stats[1])
    assert counter[0] == 1, "toggling flags must not retrace the jitted step"
    # Eval mode: running statistics, no update.
    jmod.eval()
    tmod.eval()
    x = rng.normal(size=_shape(rank, 3)).astype(np.float32)
    before = np.asarray(jmod.bn.var[...])
    with torch.no_grad():
        assert_close(jit_apply(jmod, jnp.asarray(x)), from_nchw(tmod(to_nchw(x))),
                     what="eval")
    np.testing.assert_array_equal(jmod.bn.var[...], before)
    _compare_state(jmod, tmod, "eval")


def _float_container(rank, with_relu, rngs, bias=True):
    conv = nnx.Conv(3, 4, (3,) * rank, padding=1, use_bias=bias, rngs=rngs)
    bn = nnx.BatchNorm(4, momentum=0.9, epsilon=1e-3, rngs=rngs)
    bn.scale.set_value(jnp.linspace(0.5, 1.5, 4))
    bn.bias.set_value(jnp.linspace(-0.2, 0.3, 4))
    bn.mean.set_value(jnp.linspace(-0.1, 0.1, 4))
    bn.var.set_value(jnp.linspace(0.5, 2.0, 4))
    cls = {(2, True): nni.ConvBnReLU2d, (2, False): nni.ConvBn2d,
           (1, True): nni.ConvBnReLU1d, (1, False): nni.ConvBn1d}[rank, with_relu]
    return cls(conv, bn, ReLU()) if with_relu else cls(conv, bn)


def _torch_float_container(jfused, rank, with_relu):
    conv_cls = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d}[rank]
    bn_cls = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm2d}[rank]
    jconv, jbn = jfused[0], jfused[1]
    conv = conv_cls(3, 4, 3, padding=1, bias=jconv.bias is not None)
    bn = bn_cls(4, eps=1e-3, momentum=0.1)
    with torch.no_grad():
        conv.weight.copy_(torch_weight(jconv.kernel.get_value()))
        if jconv.bias is not None:
            conv.bias.copy_(t(jconv.bias.get_value()))
        bn.weight.copy_(t(jbn.scale.get_value()))
        bn.bias.copy_(t(jbn.bias.get_value()))
        bn.running_mean.copy_(t(jbn.mean.get_value()))
        bn.running_var.copy_(t(jbn.var.get_value()))
    name = ("ConvBnReLU" if with_relu else "ConvBn") + f"{rank}d"
    fused = getattr(tnni, name)(conv, bn, torch.nn.ReLU()) if with_relu else \
        getattr(tnni, name)(conv, bn)
    return fused, name


@pytest.mark.parametrize("rank,with_relu,bias", [(2, True, True), (1, False, False)])
def test_from_float_to_float_round_trip(rank, with_relu, bias, rng):
    jqconfig, tqconfig = QCONFIGS["x86_fused_per_channel"]
    jfused = _float_container(rank, with_relu, nnx.Rngs(3), bias=bias)
    tfused, name = _torch_float_container(jfused, rank, with_relu)
    jfused.qconfig = jqconfig
    tfused.qconfig = tqconfig
    jqat = getattr(niqat, name).from_float(jfused)
    tqat = getattr(tniqat, name).from_float(tfused)
    assert type(jqat) is getattr(niqat, name)
    assert jqat.momentum == tqat.bn.momentum == 0.1
    assert jqat.eps == tqat.bn.eps
    assert jqat.qconfig is jqconfig
    np.testing.assert_array_equal(jqat.kernel[...], jfused[0].kernel[...])
    np.testing.assert_array_equal(jqat.bn.var[...], jfused[1].var[...])
    step = make_train_step([0])
    for _ in range(2):
        x = rng.normal(size=_shape(rank, 3)).astype(np.float32)
        g = rng.normal(size=_shape(rank, 4)).astype(np.float32)
        y, _, _ = step(jqat, jnp.asarray(x), jnp.asarray(g))
        yt, _ = torch_step(tqat, x, g, to_nchw)
        assert_close(y, from_nchw(yt), what="from_float output")
    _compare_state(jqat, tqat, "from_float")
    jfloat = jqat.to_float()
    tfloat = tqat.to_float()
    if with_relu:
        assert type(jfloat) is getattr(nni, f"ConvReLU{rank}d")
        jconv, tconv = jfloat[0], tfloat[0]
    else:
        assert type(jfloat) is nnx.Conv
        jconv, tconv = jfloat, tfloat
    assert jconv.bias is not None  # the folded BN always gives a bias, as torch
    assert_close(jconv.kernel[...], flax_grad(tconv.weight), rtol=1e-6, atol=1e-7)
    assert_close(jconv.bias[...], tconv.bias.detach(), rtol=1e-6, atol=1e-7)
    x = rng.normal(size=_shape(rank, 3)).astype(np.float32)
    with torch.no_grad():
        assert_close(jit_apply(jfloat, jnp.asarray(x)), from_nchw(tfloat(to_nchw(x))))


@pytest.mark.parametrize("rank", [1, 2, pytest.param(3, marks=pytest.mark.slow)])
def test_conv_relu_matches_torch(rank, rng):
    jqconfig, tqconfig = QCONFIGS["per_channel"]
    name = f"ConvReLU{rank}d"
    conv = nnx.Conv(3, 4, (2,) * rank, strides=2, padding="VALID", rngs=nnx.Rngs(0))
    jfused = getattr(nni, name)(conv, ReLU())
    jfused.qconfig = jqconfig
    jqat = getattr(niqat, name).from_float(jfused)
    tqat = getattr(tniqat, name)(3, 4, 2, stride=2, padding=0, qconfig=tqconfig)
    copy_conv_to_torch(jqat, tqat)
    x = rng.normal(size=_shape(rank, 3, size=4)).astype(np.float32)
    g = rng.normal(size=_shape(rank, 4, size=2)).astype(np.float32)
    y, grad_module, grad_x = make_train_step([0])(jqat, jnp.asarray(x), jnp.asarray(g))
    yt, xt_grad = torch_step(tqat, x, g, to_nchw)
    assert_close(y, from_nchw(yt))
    _compare_grads(jqat, tqat, grad_module, grad_x, xt_grad, name)
    back = jqat.to_float()
    assert type(back) is getattr(nni, name) and type(back[1]) is ReLU
    np.testing.assert_array_equal(back[0].kernel[...], jqat.kernel[...])


def test_freeze_bn_constructor_and_methods():
    jqconfig = QCONFIGS["per_tensor"][0]
    m = niqat.ConvBn2d(2, 3, 1, freeze_bn=True, qconfig=jqconfig)
    assert int(m.freeze_bn[0]) == 1 and m.bias is None
    assert m.update_bn_stats() is m and int(m.freeze_bn[0]) == 0
    before = np.asarray(m.bn.var[...])
    m.freeze_bn_stats()
    jit_apply(m, jnp.ones((2, 3, 3, 2)) * jnp.arange(2.0))
    np.testing.assert_array_equal(m.bn.var[...], before)
    m.update_bn_stats()
    jit_apply(m, jnp.ones((2, 3, 3, 2)) * jnp.arange(2.0))
    assert not np.array_equal(m.bn.var[...], before)
    # The module-level helpers walk a tree and skip other modules.
    tree = nnx.Sequential(m, ReLU(), niqat.ConvBnReLU2d(3, 3, 1, qconfig=jqconfig))
    niqat.freeze_bn_stats(tree)
    assert int(tree.layers[0].freeze_bn[0]) == 1 and int(tree.layers[2].freeze_bn[0]) == 1


def test_errors():
    jqconfig = QCONFIGS["per_tensor"][0]
    with pytest.raises(ValueError, match="qconfig must be provided"):
        niqat.ConvBn2d(2, 3, 3)
    with pytest.raises(ValueError, match="momentum"):
        niqat.ConvBn2d(2, 3, 3, momentum=None, qconfig=jqconfig)
    with pytest.raises(ValueError, match="replicate"):
        niqat.ConvBn2d(2, 3, 3, padding=1, padding_mode="replicate", qconfig=jqconfig)
    with pytest.raises(ValueError, match="divisible by groups"):
        niqat.ConvBn2d(3, 4, 3, groups=2, qconfig=jqconfig)
    with pytest.raises(ValueError, match="kernel_size"):
        niqat.ConvBn2d(2, 3, (3, 3, 3), qconfig=jqconfig)
    m = niqat.ConvBn2d(2, 3, 1, qconfig=jqconfig)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        jit_apply(m, jnp.ones((1, 1, 1, 2)))
    with pytest.raises(ValueError, match="channels"):
        jit_apply(m, jnp.ones((2, 3, 3, 5)))
    rngs = nnx.Rngs(0)
    fused2d = nni.ConvBn2d(nnx.Conv(2, 3, (1, 1), rngs=rngs), nnx.BatchNorm(3, rngs=rngs))
    with pytest.raises(ValueError, match="qconfig defined"):
        niqat.ConvBn2d.from_float(fused2d)
    fused2d.qconfig = None
    with pytest.raises(ValueError, match="valid qconfig"):
        niqat.ConvBn2d.from_float(fused2d)
    fused2d.qconfig = jqconfig
    with pytest.raises(TypeError, match="only works for ConvBnReLU2d"):
        niqat.ConvBnReLU2d.from_float(fused2d)
    with pytest.raises(TypeError, match="only works for ConvBn2d"):
        niqat.ConvBn2d.from_float(fused2d[0])
    no_scale = nni.ConvBn2d(nnx.Conv(2, 3, (1, 1), rngs=rngs),
                            nnx.BatchNorm(3, use_scale=False, rngs=rngs))
    no_scale.qconfig = jqconfig
    with pytest.raises(ValueError, match="use_scale"):
        niqat.ConvBn2d.from_float(no_scale)
