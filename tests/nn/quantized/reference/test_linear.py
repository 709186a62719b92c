"""jaxq.nn.quantized.reference.Linear vs torch's reference Linear.

Weights (``get_weight`` / ``get_quantized_weight``) are bit-exact; the float matmul
afterwards is compared with rtol/atol 1e-5 (XLA and MKL sum in different orders).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.nn.quantized.reference import Linear as TorchRefLinear

import jaxq
from jaxq.nn.quantized import Linear as QuantizedLinear
from jaxq.nn.quantized.reference import Linear
from tests.nn.quantized.reference._helpers import cases, random_weight_qparams


def _twins(rng, in_features, out_features, bias, qscheme, dtype):
    tlinear = torch.nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        tlinear.weight.copy_(torch.from_numpy(
            rng.normal(0, 0.5, (out_features, in_features)).astype(np.float32)))
    qparams = random_weight_qparams(rng, tlinear.weight.detach().numpy(), qscheme, dtype)
    linear = nnx.Linear(in_features, out_features, use_bias=bias, rngs=nnx.Rngs(0))
    linear.kernel.set_value(jnp.asarray(tlinear.weight.detach().numpy().T))
    if bias:
        linear.bias.set_value(jnp.asarray(tlinear.bias.detach().numpy()))
    return (TorchRefLinear.from_float(tlinear, qparams), Linear.from_float(linear, qparams),
            qparams)


_forward = nnx.jit(lambda m, x: m(x))


@pytest.mark.parametrize("qscheme,dtype,bias", [
    case + (case != ("per_channel", "quint8"),) for case in cases(include_qint32=False)])
def test_matches_torch(rng, qscheme, dtype, bias):
    tref, ref, _ = _twins(rng, 7, 5, bias, qscheme, dtype)
    np.testing.assert_array_equal(np.asarray(ref.get_weight()),
                                  tref.get_weight().detach().numpy())
    np.testing.assert_array_equal(np.asarray(ref.get_quantized_weight().int_repr()),
                                  tref.get_quantized_weight().int_repr().numpy())
    assert ref.weight_qscheme.value == str(tref.weight_qscheme).removeprefix("torch.")
    assert ref.weight_dtype.name == str(tref.weight_dtype).removeprefix("torch.")
    np.testing.assert_array_equal(np.asarray(ref.weight_scale.get_value()),
                                  tref.weight_scale.numpy())
    np.testing.assert_array_equal(np.asarray(ref.weight_zero_point.get_value()),
                                  tref.weight_zero_point.numpy())
    x = rng.normal(size=(3, 2, 7)).astype(np.float32)
    got = _forward(ref, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), tref(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    assert ref._get_name() == tref._get_name()


def test_default_qparams_and_no_retrace(rng):
    tref = TorchRefLinear(4, 3)
    ref = Linear(4, 3)
    assert ref.weight_qscheme is jaxq.per_tensor_affine and tref.weight_qscheme is \
        torch.per_tensor_affine
    assert ref.weight_dtype is jaxq.quint8 and tref.weight_dtype is torch.quint8
    assert float(ref.weight_scale.get_value()) == float(tref.weight_scale)
    assert int(ref.weight_zero_point.get_value()) == int(tref.weight_zero_point)
    traces = []
    forward_counting = nnx.jit(lambda m, x: (traces.append(1), m(x))[1])
    for _ in range(2):
        forward_counting(ref, jnp.asarray(rng.normal(size=(2, 4)).astype(np.float32)))
    assert len(traces) == 1


def test_from_reference_gives_torch_quantized_linear(rng):
    tref, ref, _ = _twins(rng, 6, 4, True, "per_channel", "qint8")
    tq = torch.ao.nn.quantized.Linear.from_reference(tref, 0.05, 10)
    q = QuantizedLinear.from_reference(ref, 0.05, 10)
    np.testing.assert_array_equal(np.asarray(q.weight().int_repr()),
                                  tq.weight().int_repr().numpy())
    np.testing.assert_array_equal(np.asarray(q.bias()), tq.bias().detach().numpy())


def test_errors(rng):
    ref = Linear(3, 2, weight_qparams={"qscheme": "per_tensor_affine", "dtype": "qint8",
                                       "scale": 0.1, "zero_point": 0})
    x = jaxq.quantize_per_tensor(jnp.ones((2, 3)), 0.1, 0, jaxq.quint8)
    with pytest.raises(TypeError, match="float input"):
        ref(x)
    with pytest.raises(AssertionError, match="not supported"):
        TorchRefLinear(3, 2, weight_qparams={"qscheme": torch.per_tensor_symmetric,
                                             "dtype": torch.qint8, "scale": 0.1,
                                             "zero_point": 0})
    with pytest.raises(ValueError, match="not supported"):
        Linear(3, 2, weight_qparams={"qscheme": "per_tensor_symmetric", "dtype": "qint8",
                                     "scale": 0.1, "zero_point": 0})
    with pytest.raises(ValueError, match="'axis'"):
        Linear(3, 2, weight_qparams={"qscheme": "per_channel_affine", "dtype": "qint8",
                                     "scale": jnp.ones(2), "zero_point": jnp.zeros(2, int)})
    with pytest.raises(TypeError, match="nnx.Linear"):
        Linear.from_float(nnx.Conv(2, 2, (1,), rngs=nnx.Rngs(0)), None)


def test_decomposed_weight_qparams_match_torch(rng):
    """``is_decomposed`` uses torch's quantized_decomposed ops and quant_min/quant_max."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401  registers the ops
    tlinear = torch.nn.Linear(6, 4)
    qparams = random_weight_qparams(rng, tlinear.weight.detach().numpy(), "per_channel",
                                    "qint8")
    qparams.update(is_decomposed=True, quant_min=-100, quant_max=100)
    tref = TorchRefLinear.from_float(tlinear, qparams)
    linear = nnx.Linear(6, 4, rngs=nnx.Rngs(0))
    linear.kernel.set_value(jnp.asarray(tlinear.weight.detach().numpy().T))
    linear.bias.set_value(jnp.asarray(tlinear.bias.detach().numpy()))
    ref = Linear.from_float(linear, qparams)
    assert ref.is_decomposed and (ref.weight_quant_min, ref.weight_quant_max) == (-100, 100)
    np.testing.assert_array_equal(np.asarray(ref.get_quantized_weight()),
                                  tref.get_quantized_weight().numpy())
    np.testing.assert_array_equal(np.asarray(ref.get_weight()),
                                  tref.get_weight().detach().numpy())
