"""qat.Conv1d/2d/3d vs torch on identical weights (channels-last vs NCHW)."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.nn.qat as tnnqat
from flax import nnx

from jaxq.nn import ReLU
from jaxq.nn import intrinsic as nni
from jaxq.nn import qat as nnqat
from tests.nn.qat._torch_ref import (
    QCONFIGS,
    assert_close,
    copy_conv_to_torch,
    flax_grad,
    from_nchw,
    jit_apply,
    make_train_step,
    to_nchw,
    torch_step,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CASES = [  # rank, qconfig, torch kwargs
    (2, "x86_fused_per_channel", dict(stride=2, padding=1, dilation=1, groups=1)),
    (2, "per_tensor", dict(stride=1, padding="same", dilation=2, groups=2)),
    (1, "per_channel", dict(stride=1, padding=2, dilation=1, groups=1,
                            padding_mode="circular")),
    (3, "per_channel", dict(stride=1, padding=0, dilation=1, groups=1)),
]


@pytest.mark.parametrize("rank,qconfig_name,kwargs", CASES)
def test_forward_grad_qparams_match_torch(rank, qconfig_name, kwargs, rng):
    jqconfig, tqconfig = QCONFIGS[qconfig_name]
    name = f"Conv{rank}d"
    kernel = 3 if rank < 3 else 2
    if kwargs.get("padding_mode") == "circular":
        kernel = 5
    jmod = getattr(nnqat, name)(4, 6, kernel, qconfig=jqconfig, rngs=nnx.Rngs(5), **kwargs)
    tmod = getattr(tnnqat, name)(4, 6, kernel, qconfig=tqconfig, **kwargs)
    copy_conv_to_torch(jmod, tmod)
    size = 6 if rank < 3 else 3
    x = rng.normal(size=(2,) + (size,) * rank + (4,)).astype(np.float32)
    with torch.no_grad():
        out_shape = from_nchw(tmod(to_nchw(x))).shape
    g = rng.normal(size=out_shape).astype(np.float32)
    y, grads, grad_x = make_train_step([0])(jmod, jnp.asarray(x), jnp.asarray(g))
    yt, xt_grad = torch_step(tmod, x, g, to_nchw)
    assert y.shape == out_shape
    assert_close(y, from_nchw(yt))
    assert_close(grad_x, from_nchw(xt_grad))
    assert_close(grads["kernel"][...], flax_grad(tmod.weight.grad))
    assert_close(grads["bias"][...], tmod.bias.grad)
    np.testing.assert_array_equal(jmod.weight_fake_quant.scale,
                                  tmod.weight_fake_quant.scale.numpy())
    np.testing.assert_array_equal(jmod.weight_fake_quant.zero_point,
                                  tmod.weight_fake_quant.zero_point.numpy())
    assert (jmod.in_channels, jmod.out_channels, jmod.groups) == (4, 6, kwargs["groups"])


def test_from_float_copies_flax_config_and_round_trips(rng):
    jqconfig = QCONFIGS["per_channel"][0]
    conv = nnx.Conv(3, 4, (3, 3), strides=(2, 1), padding="CIRCULAR",
                    kernel_dilation=(1, 2), rngs=nnx.Rngs(0))
    conv.qconfig = jqconfig
    qat = nnqat.Conv2d.from_float(conv)
    assert type(qat) is nnqat.Conv2d
    for name in ("strides", "padding", "kernel_dilation", "feature_group_count"):
        assert getattr(qat, name) == getattr(conv, name)
    np.testing.assert_array_equal(qat.kernel[...], conv.kernel[...])
    x = jnp.asarray(rng.normal(size=(1, 6, 6, 3)).astype(np.float32))
    # Fake quantization off: the QAT conv computes exactly what the float conv does.
    qat.weight_fake_quant.disable_fake_quant()
    np.testing.assert_array_equal(jit_apply(qat, x), jit_apply(conv, x))
    back = qat.to_float()
    assert type(back) is nnx.Conv and back.padding == "CIRCULAR"
    np.testing.assert_array_equal(jit_apply(back, x), jit_apply(conv, x))


def test_errors():
    jqconfig = QCONFIGS["per_tensor"][0]
    with pytest.raises(ValueError, match="qconfig must be provided"):
        nnqat.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="replicate"):
        nnqat.Conv2d(3, 4, 3, padding=1, padding_mode="replicate", qconfig=jqconfig)
    with pytest.raises(ValueError, match="no nnx.Conv equivalent"):
        nnqat.Conv2d(3, 4, 3, padding=2, padding_mode="reflect", qconfig=jqconfig)
    with pytest.raises(ValueError, match="padding_mode"):
        nnqat.Conv2d(3, 4, 3, padding_mode="mirror", qconfig=jqconfig)
    with pytest.raises(ValueError, match="padding="):
        nnqat.Conv2d(3, 4, 3, padding="full", qconfig=jqconfig)
    with pytest.raises(ValueError, match="strided"):
        nnqat.Conv2d(3, 4, 3, stride=2, padding="same", qconfig=jqconfig)
    conv1d = nnx.Conv(3, 4, (3,), rngs=nnx.Rngs(0))
    conv1d.qconfig = jqconfig
    with pytest.raises(TypeError, match=r"nnx.Conv with 2 spatial dims, got Conv "
                                        r"with kernel_size=\(3,\)"):
        nnqat.Conv2d.from_float(conv1d)
    transpose = nnx.ConvTranspose(3, 4, (3, 3), rngs=nnx.Rngs(0))
    transpose.qconfig = jqconfig
    with pytest.raises(TypeError, match="only works for"):
        nnqat.Conv2d.from_float(transpose)
    masked = nnx.Conv(3, 4, (3,), mask=jnp.ones((3, 3, 4)), rngs=nnx.Rngs(0))
    masked.qconfig = jqconfig
    with pytest.raises(ValueError, match="masked"):
        nnqat.Conv1d.from_float(masked)
    relu_container = nni.ConvReLU1d(conv1d, ReLU())
    relu_container.qconfig = jqconfig
    with pytest.raises(TypeError, match="only works for"):
        nnqat.Conv1d.from_float(relu_container)
