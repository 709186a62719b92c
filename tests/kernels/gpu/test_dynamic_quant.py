"""Fused per-token quantization (interpret mode): bit-exact vs the core and torchao."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torchao.quantization.quant_primitives import MappingType as TorchMapping
from torchao.quantization.quant_primitives import choose_qparams_affine, quantize_affine

from jaxq.core.granularity import MappingType
from jaxq.kernels.gpu import (
    BlockConfig, dynamic_int8_linear, dynamic_int8_linear_reference, quantize_per_token,
    quantize_per_token_reference)

SYM, ASYM = MappingType.SYMMETRIC, MappingType.ASYMMETRIC


@pytest.mark.parametrize("shape,block", [
    ((1, 40), None),                                    # M = 1, one whole-row tile
    ((5, 100), BlockConfig(2, 1, 32, num_stages=1)),    # chunked two-sweep form, ragged
    ((7, 33), BlockConfig(4, 1, 16)),
])
@pytest.mark.parametrize("mapping,dtype,qrange", [
    (SYM, jnp.int8, (None, None)),
    (ASYM, jnp.int8, (None, None)),
    (ASYM, jnp.uint8, (0, 127)),
    (SYM, jnp.uint8, (None, None)),
])
def test_matches_core_reference(rng, shape, block, mapping, dtype, qrange):
    x = jnp.asarray(rng.normal(size=shape) * 3 + 0.5, jnp.float32)
    kw = dict(mapping_type=mapping, target_dtype=dtype, quant_min=qrange[0],
              quant_max=qrange[1])
    got = quantize_per_token(x, block=block, interpret=True, **kw)
    expected = quantize_per_token_reference(x, **kw)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_array_equal(np.asarray(g), np.asarray(e))


@pytest.mark.parametrize("mapping", [SYM, ASYM])
def test_matches_torchao(rng, mapping):
    x = rng.normal(size=(3, 72)).astype(np.float32) * 2
    x[1] = 0.0  # an all-zero row: scale falls back to eps
    eps = float(np.finfo(np.float32).eps)
    q, scale, zp = quantize_per_token(jnp.asarray(x), mapping_type=mapping, eps=eps,
                                      interpret=True)
    tx = torch.from_numpy(x)
    tmap = TorchMapping.SYMMETRIC if mapping is SYM else TorchMapping.ASYMMETRIC
    t_scale, t_zp = choose_qparams_affine(tx, tmap, [1, 72], torch.int8, eps=eps,
                                          scale_dtype=torch.float32,
                                          zero_point_dtype=torch.int32)
    t_q = quantize_affine(tx, [1, 72], t_scale, t_zp, torch.int8)
    np.testing.assert_array_equal(np.asarray(scale), t_scale.reshape(-1).numpy())
    np.testing.assert_array_equal(np.asarray(zp), t_zp.reshape(-1).numpy())
    np.testing.assert_array_equal(np.asarray(q), t_q.numpy())


def test_bfloat16_input_and_leading_dims(rng):
    x = jnp.asarray(rng.normal(size=(2, 3, 40)), jnp.bfloat16)
    got = quantize_per_token(x, interpret=True)
    expected = quantize_per_token_reference(x)
    assert got[0].shape == (2, 3, 40) and got[1].shape == (2, 3)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(e))


@pytest.mark.parametrize("mapping", [SYM, ASYM])
def test_dynamic_linear_bit_exact(rng, mapping):
    x = jnp.asarray(rng.normal(size=(3, 40)), jnp.float32)
    w = jnp.asarray(rng.integers(-127, 128, (24, 40)), jnp.int8)
    ws = jnp.asarray(rng.uniform(0.01, 0.02, 24), jnp.float32)
    b = jnp.asarray(rng.normal(size=24), jnp.float32)
    got = dynamic_int8_linear(x, w, ws, b, relu=True, mapping_type=mapping, interpret=True)
    expected = dynamic_int8_linear_reference(x, w, ws, b, relu=True, mapping_type=mapping)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.parametrize("kwargs,error", [
    (dict(x=jnp.zeros((2, 4), jnp.int8)), TypeError),
    (dict(mapping_type=MappingType.SYMMETRIC_NO_CLIPPING_ERR), ValueError),
    (dict(target_dtype=jnp.int16), TypeError),
    (dict(quant_min=-200), ValueError),
    (dict(block="big"), TypeError),
])
def test_bad_arguments(kwargs, error):
    x = kwargs.pop("x", jnp.zeros((2, 4)))
    with pytest.raises(error):
        quantize_per_token(x, interpret=True, **kwargs)
