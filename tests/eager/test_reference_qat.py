"""Eager ``convert(model, is_reference=True)`` on QAT-prepared models, against torch.

torch's eager reference mapping (``DEFAULT_REFERENCE_STATIC_QUANT_MODULE_MAPPINGS``) has
float modules only (``nn.Linear``, ``nn.Conv2d``, ...), no QAT classes, and
``swap_module`` looks modules up by their exact type: a QAT module (``nnqat.Linear``,
``nnqat.Conv2d``, ``nniqat.ConvBnReLU2d``) is left as it is, and ``_remove_qconfig``
then deletes every ``activation_post_process``, the observer inside each
``weight_fake_quant`` included, so the converted QAT modules cannot run. jaxq does the
same. (Graph mode differs: ``convert_to_reference_fx`` turns QAT modules into
reference modules; see tests/fx/test_convert_reference_qat.py.)

The twins are trained for two QAT steps (SGD in torch, parameters and batch-norm
statistics copied into jaxq after each step).
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx

import jaxq.nn as jnn
from jaxq.eager import fuse_modules_qat, prepare_qat
from jaxq.eager.conversion import convert
from jaxq.eager.hooks import type_before_observation
from jaxq.nn.layout import kernel_from_torch
from jaxq.qconfig import get_default_qat_qconfig
from tests._quantize_fx_twins import from_torch, to_torch
from tests.eager._models import (copy_bn, copy_conv, copy_linear, copy_qat_params,
                                 randomize_bn)


class TorchNet(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        if kind == "linear":
            self.layer = torch.nn.Linear(12, 6)
        else:
            self.layer = torch.nn.Conv2d(3, 4, 3)
            if kind == "conv_bn_relu":
                self.bn = torch.nn.BatchNorm2d(4)
                self.relu = torch.nn.ReLU()

    def forward(self, x):
        x = self.layer(x)
        return self.relu(self.bn(x)) if self.kind == "conv_bn_relu" else x


class FlaxNet(nnx.Module):
    def __init__(self, kind):
        self.kind = kind
        if kind == "linear":
            self.layer = nnx.Linear(12, 6, rngs=nnx.Rngs(0))
        else:
            self.layer = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=nnx.Rngs(0))
            if kind == "conv_bn_relu":
                self.bn = nnx.BatchNorm(4, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
                self.relu = jnn.ReLU()

    def __call__(self, x):
        x = self.layer(x)
        return self.relu(self.bn(x)) if self.kind == "conv_bn_relu" else x


# kind -> (input shape (Flax layout), QAT class of ``layer`` after prepare_qat).
CASES = {"linear": ((4, 12), "Linear"), "conv": ((2, 6, 6, 3), "Conv2d"),
         "conv_bn_relu": ((2, 6, 6, 3), "ConvBnReLU2d")}


def _torch_weight_as_kernel(tlayer):
    weight = tlayer.weight.detach().numpy()
    return weight.T if weight.ndim == 2 else np.asarray(kernel_from_torch(weight))


def _trained_twins(rng, kind, steps=2):
    shape, qat_class = CASES[kind]
    torch.backends.quantized.engine = "x86"
    torch.manual_seed(0)
    tmodel, model = TorchNet(kind), FlaxNet(kind)
    if kind == "linear":
        copy_linear(model.layer, tmodel.layer)
    else:
        copy_conv(model.layer, tmodel.layer)
    if kind == "conv_bn_relu":
        randomize_bn(tmodel.bn, rng)
        copy_bn(model.bn, tmodel.bn)
    tmodel.train()
    model.train()
    tmodel.qconfig = tq.get_default_qat_qconfig("x86")
    model.qconfig = get_default_qat_qconfig("x86")
    if kind == "conv_bn_relu":
        tmodel = tq.fuse_modules_qat(tmodel, [["layer", "bn", "relu"]])
        model = fuse_modules_qat(model, [["layer", "bn", "relu"]])
    tprepared, prepared = tq.prepare_qat(tmodel), prepare_qat(model)
    assert type(tprepared.layer).__name__ == qat_class
    assert type_before_observation(prepared.layer).__name__ == qat_class
    optimizer = torch.optim.SGD(tprepared.parameters(), lr=0.05)
    data = [(rng.normal(size=shape) * 1.5).astype(np.float32) for _ in range(steps)]
    for x in data:
        expected = tprepared(to_torch(x))
        got = np.asarray(prepared(jnp.asarray(x)))
        np.testing.assert_allclose(got, from_torch(expected), rtol=0, atol=1e-5)
        optimizer.zero_grad()
        expected.square().mean().backward()
        optimizer.step()
        copy_qat_params(prepared.layer, tprepared.layer)
    tprepared.eval()
    prepared.eval()
    return tprepared, prepared


@pytest.mark.parametrize("kind", list(CASES))
def test_reference_convert_leaves_qat_modules_like_torch(rng, kind):
    tprepared, prepared = _trained_twins(rng, kind)
    tref = tq.convert(tprepared, is_reference=True)
    ref = convert(prepared, is_reference=True)
    tlayer, layer = tref.layer, ref.layer
    # torch keeps its QAT class; so does jaxq (jaxq.nn.qat / jaxq.nn.intrinsic.qat).
    assert type(tlayer) is type(tprepared.layer)
    assert type(layer) is type_before_observation(prepared.layer)
    assert type(layer).__name__ == type(tlayer).__name__
    assert type(layer).__module__.startswith(
        "jaxq.nn.intrinsic.qat" if kind == "conv_bn_relu" else "jaxq.nn.qat")
    # The prepared model is unchanged (convert copies by default).
    assert hasattr(prepared.layer.weight_fake_quant, "activation_post_process")
    # Parameters and the weight fake-quant's qparams are the trained ones, as torch's.
    # ConvBnReLU2d: its fake-quant observed ``kernel * gamma / sqrt(running_var + eps)``,
    # and torch's CPU float32 sqrt is not correctly rounded (1 ulp off IEEE sqrt, which
    # XLA computes, for ~15-25% of inputs), so its min/max state and scales may differ
    # by an ulp; the zero points (symmetric: 0) are exact.
    scale = np.asarray(layer.weight_fake_quant.scale).reshape(-1)
    t_scale = tlayer.weight_fake_quant.scale.numpy().reshape(-1)
    if kind == "conv_bn_relu":
        np.testing.assert_allclose(scale, t_scale, rtol=1e-6)
    else:
        np.testing.assert_array_equal(scale, t_scale)
    np.testing.assert_array_equal(
        np.asarray(layer.weight_fake_quant.zero_point).reshape(-1),
        tlayer.weight_fake_quant.zero_point.numpy().reshape(-1))
    np.testing.assert_array_equal(np.asarray(layer.kernel[...]),
                                  _torch_weight_as_kernel(tlayer))
    # Every observer is gone, the weight fake-quant's included, in both.
    assert not any("activation_post_process" in vars(m) for _, m in nnx.iter_modules(ref))
    assert not hasattr(tlayer.weight_fake_quant, "activation_post_process")
    assert not hasattr(layer.weight_fake_quant, "activation_post_process")
    assert not hasattr(tlayer, "qconfig") and not hasattr(layer, "qconfig")
    # ...so neither converted model runs.
    x = rng.normal(size=CASES[kind][0]).astype(np.float32)
    with pytest.raises(AttributeError, match="activation_post_process"):
        tref(to_torch(x))
    with pytest.raises(AttributeError, match="activation_post_process"):
        ref(jnp.asarray(x))
