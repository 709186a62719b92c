"""fuse_modules / fuse_modules_qat and the fuser methods, against torch."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.nn as jnn
from jaxq.eager import fuse_modules, fuse_modules_qat
from jaxq.fuser_method_mappings import (
    fuse_conv_bn,
    fuse_conv_bn_weights,
    fuse_convtranspose_bn,
    fuse_linear_bn,
    get_fuser_method,
    get_fuser_method_new,
)
from jaxq.nn import intrinsic as nni
from jaxq.nn.layout import kernel_from_torch
from tests.eager._models import (
    CNN_FUSE,
    MLP_FUSE,
    copy_bn,
    copy_conv,
    nchw,
    randomize_bn,
    twin_cnn,
    twin_mlp,
)


def _state_leaves(model):
    return [np.asarray(v) for v in jax.tree.leaves(nnx.state(model))]


def _assert_unchanged(model, before_leaves, before_types):
    assert [type(m) for _, m in nnx.iter_modules(model)] == before_types
    for a, b in zip(_state_leaves(model), before_leaves):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("conv_bias", [True, False])
def test_conv_bn_folding_matches_torch_bit_exactly(rng, rank, conv_bias):
    tconv = getattr(torch.nn, f"Conv{rank}d")(3, 5, 3, bias=conv_bias)
    tbn = getattr(torch.nn, f"BatchNorm{rank}d")(5)
    randomize_bn(tbn, rng)
    tconv.eval(), tbn.eval()
    tfused = torch.nn.utils.fusion.fuse_conv_bn_eval(tconv, tbn)

    conv = nnx.Conv(3, 5, (3,) * rank, use_bias=conv_bias, rngs=nnx.Rngs(0))
    bn = nnx.BatchNorm(5, use_running_average=True, rngs=nnx.Rngs(0))
    copy_conv(conv, tconv)
    copy_bn(bn, tbn)
    fused = fuse_conv_bn(False, conv, bn)
    np.testing.assert_array_equal(np.asarray(fused.kernel[...]),
                                  kernel_from_torch(tfused.weight.detach().numpy()))
    np.testing.assert_array_equal(np.asarray(fused.bias[...]), tfused.bias.detach().numpy())
    assert fused.use_bias and conv.use_bias == conv_bias  # the input conv is not modified


def test_linear_bn_and_convtranspose_bn_folding_match_torch(rng):
    tlin, tbn = torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4)
    randomize_bn(tbn, rng)
    tlin.eval(), tbn.eval()
    tfused = torch.nn.utils.fusion.fuse_linear_bn_eval(tlin, tbn)
    lin = nnx.Linear(6, 4, rngs=nnx.Rngs(0))
    bn = nnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))
    lin.kernel.set_value(jnp.asarray(tlin.weight.detach().numpy().T))
    lin.bias.set_value(jnp.asarray(tlin.bias.detach().numpy()))
    copy_bn(bn, tbn)
    fused = fuse_linear_bn(False, lin, bn)
    np.testing.assert_array_equal(np.asarray(fused.kernel[...]),
                                  tfused.weight.detach().numpy().T)
    np.testing.assert_array_equal(np.asarray(fused.bias[...]), tfused.bias.detach().numpy())

    # ConvTranspose: torch's weight is (in, out, k...), Flax's kernel (k..., in, out).
    tct, tbn2 = torch.nn.ConvTranspose2d(3, 4, 2), torch.nn.BatchNorm2d(4)
    randomize_bn(tbn2, rng)
    tct.eval(), tbn2.eval()
    tfused = torch.nn.utils.fusion.fuse_conv_bn_eval(tct, tbn2, transpose=True)
    ct = nnx.ConvTranspose(3, 4, (2, 2), rngs=nnx.Rngs(0))
    ct.kernel.set_value(jnp.asarray(tct.weight.detach().numpy().transpose(2, 3, 0, 1)))
    ct.bias.set_value(jnp.asarray(tct.bias.detach().numpy()))
    bn2 = nnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))
    copy_bn(bn2, tbn2)
    fused = fuse_convtranspose_bn(False, ct, bn2)
    np.testing.assert_array_equal(np.asarray(fused.kernel[...]),
                                  tfused.weight.detach().numpy().transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(np.asarray(fused.bias[...]), tfused.bias.detach().numpy())
    with pytest.raises(NotImplementedError, match="QAT"):
        fuse_convtranspose_bn(True, ct, bn2)


def test_fuse_cnn_matches_torch_float_outputs(rng):
    tmodel, model = twin_cnn(rng)
    tfused = torch.ao.quantization.fuse_modules(tmodel, CNN_FUSE)
    fused = fuse_modules(model, CNN_FUSE)
    assert type(fused.conv1) is nni.ConvReLU2d and type(fused.conv2) is nni.ConvReLU2d
    assert type(fused.bn1) is jnn.Identity and type(fused.relu2) is jnn.Identity
    assert type(model.conv1) is nnx.Conv  # inplace=False leaves the input alone
    x = rng.normal(size=(3, 8, 8, 1)).astype(np.float32)
    expected = tfused(nchw(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(fused(jnp.asarray(x))), expected, atol=2e-5)
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), expected, atol=2e-5)


def test_fuse_mlp_and_inplace(rng):
    tmodel, model = twin_mlp(rng)
    tfused = torch.ao.quantization.fuse_modules(tmodel, MLP_FUSE)
    x = rng.normal(size=(4, 16)).astype(np.float32)
    returned = fuse_modules(model, MLP_FUSE, inplace=True)
    assert returned is model
    assert type(model.fc1) is nni.LinearReLU and type(model.fc2) is nnx.Linear
    assert type(model.bn2) is jnn.Identity
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))),
                               tfused(torch.from_numpy(x)).detach().numpy(), atol=2e-5)


def test_fuse_modules_qat_builds_intrinsic_containers():
    model = nnx.Sequential(nnx.Conv(1, 4, (3,), rngs=nnx.Rngs(0)),
                           nnx.BatchNorm(4, rngs=nnx.Rngs(0)), nnx.relu,
                           nnx.Linear(4, 4, rngs=nnx.Rngs(0)), jnn.ReLU())
    fused = fuse_modules_qat(model, [["layers.0", "layers.1", "layers.2"],
                                     ["layers.3", "layers.4"]])
    assert type(fused.layers[0]) is nni.ConvBnReLU1d
    assert type(fused.layers[3]) is nni.LinearReLU
    assert [type(fused.layers[i]) for i in (1, 2, 4)] == [jnn.Identity] * 3
    y = fused(jnp.ones((2, 5, 1)))
    assert y.shape == (2, 5, 4)


def test_get_fuser_method_and_wildcards():
    assert get_fuser_method((nnx.Conv, nnx.BatchNorm)) is fuse_conv_bn
    with pytest.raises(ValueError, match="did not find fuser method"):
        get_fuser_method((nnx.Linear, nnx.Conv))
    mapping = {(jnn.ReLU, nnx.Conv): "conv_relu"}
    from jaxq.fuser_method_mappings import MatchAllNode
    assert get_fuser_method_new((jnn.ReLU, nnx.Conv), mapping) == "conv_relu"
    assert get_fuser_method_new((jnn.ReLU, nnx.Linear),
                                {(jnn.ReLU, MatchAllNode): "any"}) == "any"
    with pytest.raises(ValueError):
        get_fuser_method_new((nnx.Linear,), mapping)


def test_additional_fuser_method_mapping():
    model = nnx.Sequential(nnx.BatchNorm(3, rngs=nnx.Rngs(0)), jnn.ReLU())
    fused = fuse_modules(model, ["layers.0", "layers.1"], fuse_custom_config_dict={
        "additional_fuser_method_mapping": {
            (nnx.BatchNorm, jnn.ReLU): lambda is_qat, bn, relu: nni.BNReLU3d(bn, relu)}})
    assert type(fused.layers[0]) is nni.BNReLU3d
    default = fuse_modules(model, ["layers.0", "layers.1"])
    assert type(default.layers[0]) is nni.BNReLU2d


def _snapshot(model):
    return _state_leaves(model), [type(m) for _, m in nnx.iter_modules(model)]


@pytest.mark.parametrize("inplace", [False, True])
def test_fuse_errors_leave_the_model_unchanged(rng, inplace):
    _, model = twin_cnn(rng)
    leaves, types = _snapshot(model)
    # Second group cannot be fused: the first group must not be applied either.
    with pytest.raises(ValueError, match="did not find fuser method"):
        fuse_modules(model, [["conv1", "bn1", "relu1"], ["fc", "conv2"]], inplace=inplace)
    _assert_unchanged(model, leaves, types)
    with pytest.raises(ValueError, match="has no submodule 'conv9'"):
        fuse_modules(model, [["conv1", "bn1"], ["conv9", "bn2"]], inplace=inplace)
    _assert_unchanged(model, leaves, types)
    with pytest.raises(TypeError, match="modules_to_fuse"):
        fuse_modules(model, "conv1", inplace=inplace)
    with pytest.raises(ValueError, match="more than once"):
        fuse_modules(model, [["conv1", "bn1"], ["conv1", "relu1"]], inplace=inplace)
    model.train()
    leaves, types = _snapshot(model)
    with pytest.raises(ValueError, match="Fusion only for eval"):
        fuse_modules(model, CNN_FUSE, inplace=inplace)
    _assert_unchanged(model, leaves, types)
    with pytest.raises(TypeError, match="flax.nnx.Module"):
        fuse_modules(torch.nn.Linear(1, 1), ["a", "b"])


def test_qat_fusion_checks():
    conv = nnx.Conv(2, 4, (3, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_features"):
        fuse_conv_bn(True, conv, nnx.BatchNorm(3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="affine"):
        fuse_conv_bn(True, conv, nnx.BatchNorm(4, use_scale=False, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="bn must be"):
        fuse_conv_bn(True, conv, jnn.ReLU())


def test_fuser_weights_dtype_and_defaults():
    kernel = jnp.ones((2, 3), jnp.bfloat16)
    k, b = fuse_conv_bn_weights(kernel, None, jnp.zeros(3), jnp.ones(3), 0.0, None, None)
    assert k.dtype == jnp.bfloat16 and b.dtype == jnp.bfloat16
    assert copy.deepcopy(k).shape == (2, 3)
