"""convert_to_reference_fx on models prepared with prepare_qat_fx, against torch.

torch's ``convert_weighted_module`` turns every QAT module into its float module
(``to_float()``: batch norm folded into the conv for ``ConvBn*``) and, where the node
is quantized, into the reference module (or the fused container around it), with the
weight qparams of the QAT module's own ``weight_fake_quant`` run once more on the
float weight. The twins are trained for two QAT steps (SGD in torch; after each step
torch's parameters and batch-norm running statistics are copied into jaxq), so both
convert from identical parameters, statistics and fake-quant state; the reference
modules and their weight qparams then match torch bit for bit.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.nn.intrinsic as tnni
import torch.ao.nn.quantized.reference as tnnqr
import torch.ao.quantization as tq
from flax import nnx
from torch.ao.quantization import quantize_fx as tfx

import jaxq.nn.intrinsic as nni
import jaxq.nn.quantized.reference as nnqr
from jaxq.eager._tree import get_submodule
from jaxq.nn import ReLU
from jaxq.nn.layout import kernel_to_torch
from jaxq.qconfig_mapping import get_default_qat_qconfig_mapping
from jaxq.quantize_fx import convert_to_reference_fx, prepare_qat_fx
from tests._quantize_fx_twins import (
    batches,
    from_torch,
    to_torch,
    twin_cnn,
    twin_mlp,
    twin_residual,
)
from tests.eager._models import copy_qat_params

# torch's reference classes -> jaxq's.
REFERENCE_CLASSES = {tnnqr.Linear: nnqr.Linear, tnnqr.Conv2d: nnqr.Conv2d,
                     tnni.LinearReLU: nni.LinearReLU, tnni.ConvReLU2d: nni.ConvReLU2d,
                     torch.nn.ReLU: ReLU, torch.nn.Linear: nnx.Linear,
                     torch.nn.Conv2d: nnx.Conv}

# model -> (twin builder, input shape, {path: prepared QAT class name}).
CASES = {
    "linear": (lambda rng: twin_mlp(), (8, 16),
               {"fc1": "LinearReLU", "fc2": "Linear"}),
    "conv": (twin_cnn, (4, 8, 8, 3), {"conv1": "ConvBnReLU2d", "conv2": "Conv2d"}),
    "conv_bn_relu": (twin_residual, (4, 8, 8, 3),
                     {"conv1": "ConvBnReLU2d", "conv2": "ConvBn2d"}),
}


def _trained_twins(rng, case, steps=2):
    build, shape, qat_classes = CASES[case]
    torch.backends.quantized.engine = "x86"
    tmodel, model = build(rng)
    tmodel.train()
    model.train()
    data = batches(rng, shape, n=steps + 1)
    tprepared = tfx.prepare_qat_fx(tmodel, tq.get_default_qat_qconfig_mapping("x86"),
                                   (to_torch(data[0]),))
    prepared = prepare_qat_fx(model, get_default_qat_qconfig_mapping("x86"),
                              (jnp.asarray(data[0]),))
    for path, name in qat_classes.items():
        module = get_submodule(prepared.root, path)
        assert type(module).__name__ == name and hasattr(module, "weight_fake_quant")
        assert type(tprepared.get_submodule(path)).__name__ == name
    optimizer = torch.optim.SGD(tprepared.parameters(), lr=0.05)
    for x in data[:steps]:
        expected = tprepared(to_torch(x))
        got = np.asarray(prepared(jnp.asarray(x)))
        # Training-mode QAT forward (fake-quant observers, batch statistics): as torch.
        np.testing.assert_allclose(got, from_torch(expected), rtol=0, atol=1e-5)
        optimizer.zero_grad()
        expected.square().mean().backward()
        optimizer.step()
        for path in qat_classes:
            copy_qat_params(get_submodule(prepared.root, path),
                            tprepared.get_submodule(path))
    tprepared.eval()
    prepared.eval()
    return tprepared, prepared, data[-1], qat_classes


def _assert_same_reference(tref_module, ref_module, bn_folded=False):
    """Same class, weight qparams, float weight and quantized-dequantized weight.

    ``bn_folded``: the float weight is the QAT ``ConvBn*``'s ``to_float()``, which folds
    the batch norm with ``1 / sqrt(running_var + eps)`` as torch's CPU rsqrt does
    (bit-exact for the models here); the running statistics it folds come from QAT
    steps whose batch statistics torch computes with a float32 sqrt that is not
    correctly rounded, so the folded weight is compared to 2 ulp, the weight scales (the
    weight fake-quant sees the folded weight once more) to 1e-6 relative, and the
    quantized-dequantized weights to one weight quantization step.
    """
    assert type(ref_module) is REFERENCE_CLASSES[type(tref_module)]
    assert ref_module.weight_qscheme.name == str(tref_module.weight_qscheme).split(".")[-1]
    assert ref_module.weight_dtype.name == str(tref_module.weight_dtype).split(".")[-1]
    assert ref_module.weight_axis_int == tref_module.weight_axis_int
    scale = np.asarray(ref_module.weight_scale[...]).reshape(-1)
    t_scale = tref_module.weight_scale.numpy().reshape(-1)
    np.testing.assert_array_equal(np.asarray(ref_module.weight_zero_point[...]).reshape(-1),
                                  tref_module.weight_zero_point.numpy().reshape(-1))
    weight = np.asarray(kernel_to_torch(ref_module.kernel[...]))
    t_weight = tref_module.weight.detach().numpy()
    dequantized = np.asarray(ref_module.get_weight())
    t_dequantized = tref_module.get_weight().detach().numpy()
    bias, t_bias = np.asarray(ref_module.bias[...]), tref_module.bias.detach().numpy()
    if not bn_folded:
        np.testing.assert_array_equal(scale, t_scale)
        np.testing.assert_array_equal(weight, t_weight)
        np.testing.assert_array_equal(dequantized, t_dequantized)
        np.testing.assert_array_equal(bias, t_bias)
        return
    np.testing.assert_array_max_ulp(weight, t_weight, maxulp=2)
    np.testing.assert_allclose(scale, t_scale, rtol=1e-6)
    steps = np.abs(dequantized - t_dequantized) / t_scale.reshape(
        (-1,) + (1,) * (t_weight.ndim - 1))
    assert steps.max() <= 1.0001
    np.testing.assert_allclose(bias, t_bias, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_qat_reference_matches_torch(rng, case):
    tprepared, prepared, x, qat_classes = _trained_twins(rng, case)
    tref = tfx.convert_to_reference_fx(tprepared)
    ref = convert_to_reference_fx(prepared)
    for path in qat_classes:
        tmodule, module = tref.get_submodule(path), get_submodule(ref.root, path)
        assert type(module) is REFERENCE_CLASSES[type(tmodule)], path
        if isinstance(tmodule, tnni._FusedModule):  # the fused reference container
            assert len(module) == len(tmodule) == 2
            assert type(module[1]) is ReLU
            tmodule, module = tmodule[0], module[0]
        _assert_same_reference(tmodule, module,
                               bn_folded=qat_classes[path].startswith("ConvBn"))
        node = ref.graph.find(path=path, op="call_module")[0]
        assert node.target is type(get_submodule(ref.root, path))
        # dequantize -> reference module -> quantize, as torch's graph.
        assert ref.graph.node(node.input_ids[0]).meta.get("dequantize")
        assert [u.meta.get("quantize") for u in ref.graph.users(node)] == [True]
    # The prepared model keeps its QAT modules.
    for path, name in qat_classes.items():
        assert type(get_submodule(prepared.root, path)).__name__ == name
    # Outputs: float conv / matmul accumulate in a different order in XLA and torch, so
    # a value on a rounding boundary may move by one output quantization step.
    out_scale = max(float(n.meta["qparams"]["scale"]) for n in ref.graph.nodes
                    if n.meta.get("quantize"))
    expected = from_torch(tref(to_torch(x)))
    got = np.asarray(ref(jnp.asarray(x)))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= out_scale * 1.0001


def test_qat_module_without_qconfig_at_convert_becomes_float(rng):
    """torch: a QAT module whose node is not quantized at convert time (convert's
    qconfig_mapping sets it to None) still becomes its float module (BN folded)."""
    tprepared, prepared, x, _ = _trained_twins(rng, "conv", steps=1)
    t_map = tq.get_default_qat_qconfig_mapping("x86").set_module_name("conv1", None)
    j_map = get_default_qat_qconfig_mapping("x86").set_module_name("conv1", None)
    tref = tfx.convert_to_reference_fx(tprepared, qconfig_mapping=t_map)
    ref = convert_to_reference_fx(prepared, qconfig_mapping=j_map)
    tconv1, conv1 = tref.get_submodule("conv1"), get_submodule(ref.root, "conv1")
    assert type(tconv1) is tnni.ConvReLU2d and type(tconv1[0]) is torch.nn.Conv2d
    assert type(conv1) is nni.ConvReLU2d and type(conv1[0]) is nnx.Conv
    np.testing.assert_allclose(np.asarray(conv1[0].bias[...]),
                               tconv1[0].bias.detach().numpy(), rtol=1e-6, atol=1e-7)
    _assert_same_reference(tref.get_submodule("conv2"), get_submodule(ref.root, "conv2"))
    np.testing.assert_array_max_ulp(np.asarray(kernel_to_torch(conv1[0].kernel[...])),
                                    tconv1[0].weight.detach().numpy(), maxulp=2)
    expected = from_torch(tref(to_torch(x)))
    got = np.asarray(ref(jnp.asarray(x)))
    out_scale = max(float(n.meta["qparams"]["scale"]) for n in ref.graph.nodes
                    if n.meta.get("quantize"))
    assert np.abs(got - expected).max() <= out_scale * 1.0001
