"""jaxq.nn.quantized.reference.utils vs torch's reference-module weight functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  registers quantized_decomposed
from torch.ao.nn.quantized.reference.modules import utils as tutils

from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized.reference import utils
from tests.nn.quantized.reference._helpers import cases, random_weight_qparams
from tests._tracing import counting_jit

SHAPES = [((6, 5), 0), ((4, 3, 2, 2), 1)]


def _weight(rng, shape):
    return rng.normal(0, 0.5, shape).astype(np.float32)


def _jax_args(qparams):
    axis = qparams.get("axis", 0)
    return (qparams["qscheme"], qparams["dtype"], jnp.asarray(qparams["scale"].numpy()),
            jnp.asarray(qparams["zero_point"].numpy()), axis)


def _torch_args(qparams):
    return (qparams["qscheme"], qparams["dtype"], qparams["scale"], qparams["zero_point"],
            qparams.get("axis", 0))


@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("qscheme,dtype", cases())
def test_quantize_and_dequantize_weight_bit_exact(rng, qscheme, dtype, shape, axis):
    weight = _weight(rng, shape)
    qparams = random_weight_qparams(rng, weight, qscheme, dtype, axis)
    expected = tutils._quantize_and_dequantize_weight(torch.from_numpy(weight),
                                                      *_torch_args(qparams))
    qscheme_, dtype_, scale, zero_point, axis_ = _jax_args(qparams)
    qdq = counting_jit(lambda w, s, z: utils.quantize_and_dequantize_weight(
        w, qscheme_, dtype_, s, z, axis_))
    got = qdq(jnp.asarray(weight), scale, zero_point)
    np.testing.assert_array_equal(np.asarray(got), expected.numpy())
    qweight = utils.quantize_weight(jnp.asarray(weight), qscheme_, dtype_, scale,
                                    zero_point, axis_)
    texpected = tutils._quantize_weight(torch.from_numpy(weight), *_torch_args(qparams))
    assert isinstance(qweight, QTensor)
    assert qweight.qscheme().value == str(texpected.qscheme()).removeprefix("torch.")
    np.testing.assert_array_equal(np.asarray(qweight.int_repr()),
                                  texpected.int_repr().numpy())
    # Same shapes: no retrace.
    qdq(jnp.asarray(_weight(rng, shape)), scale, zero_point)
    assert qdq.traces == 1


@pytest.mark.parametrize("qscheme,dtype", [c for c in cases() if c[0] != "float_qparams"])
@pytest.mark.parametrize("bounds", [None, "narrow"])
def test_decomposed_bit_exact(rng, qscheme, dtype, bounds):
    shape, axis = SHAPES[1]
    weight = _weight(rng, shape)
    qparams = random_weight_qparams(rng, weight, qscheme, dtype, axis)
    qmin, qmax = (None, None) if bounds is None else {
        "quint8": (10, 240), "qint8": (-100, 100), "qint32": (-2**20, 2**20)}[dtype]
    targs = _torch_args(qparams) + (qmin, qmax)
    jargs = _jax_args(qparams) + (qmin, qmax)
    expected_q = tutils._quantize_weight_decomposed(torch.from_numpy(weight), *targs)
    expected = tutils._quantize_and_dequantize_weight_decomposed(torch.from_numpy(weight),
                                                                 *targs)
    got_q = utils.quantize_weight_decomposed(jnp.asarray(weight), *jargs)
    got = jax.jit(lambda w: utils.quantize_and_dequantize_weight_decomposed(w, *jargs))(
        jnp.asarray(weight))
    assert str(got_q.dtype) == str(expected_q.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(np.asarray(got_q), expected_q.numpy())
    np.testing.assert_array_equal(np.asarray(got), expected.numpy())


def test_float16_and_no_qscheme(rng):
    weight = _weight(rng, (5, 4))
    tweight = torch.from_numpy(weight)
    expected = tutils._quantize_and_dequantize_weight(
        tweight, torch.per_tensor_affine, torch.float16, torch.tensor(1.0),
        torch.tensor(0), 0)
    got = utils.quantize_and_dequantize_weight(jnp.asarray(weight), "per_tensor_affine",
                                               "float16", 1.0, 0, 0)
    assert got.dtype == jnp.float32 and expected.dtype == torch.float32
    np.testing.assert_array_equal(np.asarray(got), expected.numpy())
    half = utils.quantize_weight(jnp.asarray(weight), "per_tensor_affine", "float16",
                                 1.0, 0, 0)
    np.testing.assert_array_equal(np.asarray(half),
                                  tutils._quantize_weight(tweight, torch.per_tensor_affine,
                                                          torch.float16, None, None, 0
                                                          ).numpy())
    expected_none = tutils._quantize_and_dequantize_weight(tweight, None, torch.float16,
                                                           None, None, 0)
    got_none = utils.quantize_and_dequantize_weight(jnp.asarray(weight), None, "float16",
                                                    1.0, 0, 0)
    np.testing.assert_array_equal(np.asarray(got_none), expected_none.numpy())


def test_unsupported_combinations_raise_like_torch(rng):
    weight = torch.from_numpy(_weight(rng, (3, 2)))
    with pytest.raises(ValueError, match="Unsupported dtype and qscheme"):
        tutils._quantize_weight(weight, torch.per_tensor_affine, torch.quint4x2,
                                torch.tensor(0.1), torch.tensor(0), 0)
    with pytest.raises(ValueError, match="Unsupported dtype and qscheme"):
        utils.quantize_weight(jnp.asarray(weight.numpy()), "per_tensor_affine", "quint4x2",
                              0.1, 0, 0)
    with pytest.raises(ValueError, match="Unsupported dtype and qscheme"):
        utils.quantize_weight_decomposed(jnp.asarray(weight.numpy()), "per_channel_affine",
                                         "quint4x2", jnp.ones(3), jnp.zeros(3), 0, None,
                                         None)
