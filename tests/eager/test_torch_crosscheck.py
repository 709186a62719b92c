"""The eager workflow end to end, jaxq beside torch on twin models (same weights).

fuse -> prepare -> calibrate on the same data -> convert in both frameworks, with the
default x86 qconfig and a per-tensor one; then quantize_dynamic on Linear layers.
Quantized integer outputs must agree on >= 99% of elements and differ by at most 1
elsewhere; every observer's qparams and every quantized weight must match.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx

import jaxq.nn as jnn
import jaxq.nn.quantized as nnq
from jaxq import qconfig as jqconfig
from jaxq.core import dtypes
from jaxq.eager import convert, fuse_modules, prepare, quantize, quantize_dynamic
from tests.eager._models import (
    CNN_FUSE,
    MLP_FUSE,
    nchw,
    twin_cnn,
    twin_mlp,
)

warnings.filterwarnings("ignore", category=DeprecationWarning)

QCONFIGS = {
    "x86": (lambda: tq.get_default_qconfig("x86"), lambda: jqconfig.get_default_qconfig("x86")),
    "per_tensor": (lambda: tq.default_qconfig, lambda: jqconfig.default_qconfig),
}

_OBSERVED = {"cnn": ["quant", "conv1", "conv2", "fc"], "mlp": ["quant", "fc1", "fc2", "fc3"]}


def _assert_int_agreement(name: str, t_int: np.ndarray, j_int: np.ndarray) -> float:
    assert t_int.shape == j_int.shape
    diff = np.abs(t_int.astype(np.int64) - j_int.astype(np.int64))
    agreement = float((diff == 0).mean())
    print(f"{name}: quantized outputs agree on {agreement:.2%} of {diff.size} elements, "
          f"max |diff| = {diff.max()}")
    assert agreement >= 0.99
    assert diff.max() <= 1
    return agreement


def _run_static(kind: str, qconfig_name: str, rng: np.random.Generator):
    torch.backends.quantized.engine = "x86"
    tmodel, model = (twin_cnn if kind == "cnn" else twin_mlp)(rng)
    fuse = CNN_FUSE if kind == "cnn" else MLP_FUSE
    t_qconfig, j_qconfig = QCONFIGS[qconfig_name]
    tmodel.qconfig = t_qconfig()
    model.qconfig = j_qconfig()
    tprepared = tq.prepare(tq.fuse_modules(tmodel, fuse))
    prepared = prepare(fuse_modules(model, fuse))
    shape = (8, 8, 8, 1) if kind == "cnn" else (8, 16)
    to_torch = nchw if kind == "cnn" else torch.from_numpy
    calibrate = nnx.jit(lambda m, x: m(x))
    for _ in range(3):
        x = rng.normal(size=shape).astype(np.float32) * 1.5
        tprepared(to_torch(x))
        calibrate(prepared, jnp.asarray(x))
    for name in _OBSERVED[kind]:
        t_scale, t_zp = getattr(tprepared, name).activation_post_process.calculate_qparams()
        j_scale, j_zp = getattr(prepared, name).activation_post_process.calculate_qparams()
        if name == "quant":  # identical inputs: identical qparams
            np.testing.assert_array_equal(np.asarray(j_scale), t_scale.numpy())
        else:
            # Float conv/GEMM accumulation order differs between XLA and torch, so the
            # observed layer outputs (and the ranges derived from them) may differ in
            # the last float32 bits.
            np.testing.assert_allclose(np.asarray(j_scale), t_scale.numpy(), rtol=1e-5,
                                       err_msg=name)
        np.testing.assert_array_equal(np.asarray(j_zp), t_zp.numpy(), err_msg=name)
    tquantized = tq.convert(tprepared)
    quantized = convert(prepared)
    # Each step returned a new model and left its input alone.
    assert type(model.quant).__name__ == "QuantStub"
    assert type(prepared.quant).__name__ == "ObservedQuantStub"
    return tquantized, quantized, to_torch, shape


@pytest.mark.parametrize("qconfig_name", ["x86", "per_tensor"])
@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_static_ptq_matches_torch(rng, kind, qconfig_name):
    tquantized, quantized, to_torch, shape = _run_static(kind, qconfig_name, rng)
    layers = ["conv1", "conv2", "fc"] if kind == "cnn" else ["fc1", "fc2", "fc3"]
    for name in layers:
        t_layer, j_layer = getattr(tquantized, name), getattr(quantized, name)
        assert float(j_layer.scale[...]) == pytest.approx(float(t_layer.scale), rel=1e-5)
        assert int(j_layer.zero_point[...]) == int(t_layer.zero_point)
        t_weight, j_weight = t_layer.weight(), j_layer.weight()
        np.testing.assert_array_equal(np.asarray(j_weight.int_repr()),
                                      t_weight.int_repr().numpy(), err_msg=name)
    # Compare the quantized integers before DeQuantStub.
    tquantized.dequant = torch.nn.Identity()
    quantized.dequant = jnn.Identity()
    forward = nnx.jit(lambda m, x: m(x))
    x = rng.normal(size=(32,) + shape[1:]).astype(np.float32) * 1.5
    t_out = tquantized(to_torch(x))
    j_out = forward(quantized, jnp.asarray(x))
    assert j_out.dtype == dtypes.quint8
    assert float(j_out.q_scale()) == pytest.approx(float(t_out.q_scale()), rel=1e-5)
    assert int(j_out.q_zero_point()) == int(t_out.q_zero_point())
    _assert_int_agreement(f"{kind}/{qconfig_name}", t_out.int_repr().numpy(),
                          np.asarray(j_out.int_repr()))
    # A second call with the same shapes reuses the compiled function.
    assert forward(quantized, jnp.asarray(x)).shape == j_out.shape


def test_quantize_one_call_matches_prepare_convert(rng):
    _, model = twin_cnn(rng)
    model = fuse_modules(model, CNN_FUSE)
    model.qconfig = jqconfig.get_default_qconfig("x86")
    calib = [jnp.asarray(rng.normal(size=(8, 8, 8, 1)).astype(np.float32))]

    def run_fn(m, data):
        for x in data:
            m(x)

    one_call = quantize(model, run_fn, [calib])
    two_step = prepare(model)
    run_fn(two_step, calib)
    two_step = convert(two_step)
    assert isinstance(one_call.quant, nnq.Quantize)
    x = calib[0]
    np.testing.assert_array_equal(np.asarray(one_call(x)), np.asarray(two_step(x)))
    assert type(model.quant).__name__ == "QuantStub"  # untouched


def test_quantize_dynamic_linear_matches_torch(rng):
    torch.backends.quantized.engine = "x86"
    tmodel, model = twin_mlp(rng)
    tfused = tq.fuse_modules(tmodel, MLP_FUSE)
    fused = fuse_modules(model, MLP_FUSE)
    tdynamic = tq.quantize_dynamic(tfused, {torch.nn.Linear, torch.ao.nn.intrinsic.LinearReLU})
    dynamic = quantize_dynamic(fused, {nnx.Linear, jnn.intrinsic.LinearReLU})
    assert type(dynamic.fc2) is nnq.dynamic.Linear
    assert type(fused.fc2) is nnx.Linear  # the input is untouched
    for name in ["fc1", "fc2", "fc3"]:
        np.testing.assert_array_equal(np.asarray(getattr(dynamic, name).weight().int_repr()),
                                      getattr(tdynamic, name).weight().int_repr().numpy())
    x = rng.normal(size=(32, 16)).astype(np.float32)
    t_out = tdynamic(torch.from_numpy(x)).detach().numpy()
    j_out = np.asarray(nnx.jit(lambda m, v: m(v))(dynamic, jnp.asarray(x)))
    np.testing.assert_allclose(j_out, t_out, rtol=1e-5, atol=1e-6)
    # Default spec (every nnx.Linear) and dtype=float16.
    default = quantize_dynamic(fused)
    assert type(default.fc3) is nnq.dynamic.Linear
    fp16 = quantize_dynamic(fused, dtype=dtypes.float16)
    tfp16 = tq.quantize_dynamic(tfused, {torch.nn.Linear}, dtype=torch.float16)
    np.testing.assert_allclose(np.asarray(fp16(jnp.asarray(x))),
                               tfp16(torch.from_numpy(x)).detach().numpy(), rtol=1e-4,
                               atol=1e-5)
