"""Weight-only int8/int4 GEMM (interpret mode) against the dequantize-then-matmul reference."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxq.core.packing import pack
from jaxq.kernels.gpu import (
    BlockConfig, dequantize_weight, weight_only_matmul, weight_only_matmul_reference)

GEMV = BlockConfig(1, 16, 32)
GEMV_SPLIT = BlockConfig(1, 16, 32, split_k=2)
DOT = BlockConfig(16, 16, 32)
DOT_SPLIT = BlockConfig(16, 32, 32, split_k=4)


def _weight(rng, n, k, bits, group, signed, zero_point):
    if bits == 8:
        w = jnp.asarray(rng.integers(-128, 128, (n, k)), jnp.int8)
    else:
        q = rng.integers(-8, 8, (n, k)) if signed else rng.integers(0, 16, (n, k))
        w = pack(jnp.asarray(q, jnp.int32), bits=4)
    shape = (n,) if group is None else (n, k // group)
    scale = jnp.asarray(rng.uniform(0.01, 0.1, shape), jnp.float32)
    zp = jnp.asarray(rng.integers(0, 16, shape), jnp.int32) if zero_point else None
    return w, scale, zp


def _check(got, expected, x, weight):
    # Float accumulation in a different order: bound by K ulps of sum |x||w|.
    bound = np.abs(np.asarray(x, np.float32)) @ np.abs(np.asarray(weight)).T
    tol = 4 * np.finfo(np.float32).eps * x.shape[-1] * bound + 1e-6
    np.testing.assert_array_less(np.abs(np.asarray(got, np.float32)
                                        - np.asarray(expected, np.float32)), tol)


@pytest.mark.parametrize("m,k,n,bits,group,block,zero_point,signed", [
    (1, 40, 72, 8, None, GEMV, False, False),        # ragged K and N, per-channel
    (1, 40, 72, 8, None, GEMV_SPLIT, True, False),   # split-K + zero-point correction
    (3, 40, 24, 8, None, DOT, True, False),          # M padded to 16
    (3, 64, 72, 8, 32, DOT_SPLIT, True, False),      # int8 per-group
    (1, 64, 72, 4, 32, GEMV, True, False),
    (1, 128, 40, 4, 32, GEMV_SPLIT, False, True),    # signed nibbles
    (5, 128, 40, 4, 64, DOT_SPLIT, True, False),
    (17, 256, 24, 4, 128, None, False, True),        # table entry
])
def test_matches_reference(rng, m, k, n, bits, group, block, zero_point, signed):
    x = jnp.asarray(rng.normal(size=(m, k)), jnp.float32)
    w, scale, zp = _weight(rng, n, k, bits, group, signed and bits == 4, zero_point)
    bias = jnp.asarray(rng.normal(size=n), jnp.float32)
    kw = dict(bits=bits, signed=signed and bits == 4)
    got = weight_only_matmul(x, w, scale, zp, bias, block=block, interpret=True, **kw)
    expected = weight_only_matmul_reference(x, w, scale, zp, bias, **kw)
    assert got.shape == (m, n) and got.dtype == jnp.float32
    _check(got, expected, x, dequantize_weight(w, scale, zp, **kw))


def test_bfloat16_activations_and_leading_dims(rng):
    x = jnp.asarray(rng.normal(size=(2, 3, 64)), jnp.bfloat16)
    w, scale, zp = _weight(rng, 24, 64, 4, 32, False, True)
    got = weight_only_matmul(x, w, scale, zp, bits=4, block=DOT, interpret=True)
    expected = weight_only_matmul_reference(x, w, scale, zp, bits=4)
    assert got.shape == (2, 3, 24) and got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(expected, np.float32),
                               rtol=2e-2, atol=2e-2)


def test_int4_layout_is_torch_quint4x2_along_k(rng):
    # The kernel's packed weight is torch's quint4x2 byte stream of each (K,) row.
    q = rng.integers(0, 16, (3, 8))
    packed = pack(jnp.asarray(q, jnp.int32), bits=4)
    rows = [torch.quantize_per_tensor(torch.tensor(r, dtype=torch.float32), 1.0, 0,
                                      torch.quint4x2).int_repr().numpy() for r in q]
    np.testing.assert_array_equal(np.asarray(packed), np.stack(rows))
    # and the dequantized weight agrees with torch's dequantize of those rows
    scale = jnp.full((3, 1), 0.5, jnp.float32)
    got = dequantize_weight(packed, scale, bits=4)
    np.testing.assert_array_equal(np.asarray(got), q * 0.5)


@pytest.mark.parametrize("kwargs,error", [
    (dict(x=jnp.zeros((2, 64), jnp.int8)), TypeError),
    (dict(w=jnp.zeros((8, 64), jnp.uint8)), TypeError),        # bits=4 expects (N, K/2)
    (dict(bits=4, w=jnp.zeros((8, 32), jnp.uint8)), ValueError),  # int4 needs group scales
    (dict(bits=4, w=jnp.zeros((8, 32), jnp.uint8), scale=jnp.ones((8, 4))), ValueError),  # G=16
    (dict(bits=3), ValueError),
    (dict(zero_point=jnp.ones(7)), ValueError),
    (dict(out_dtype=jnp.int8), TypeError),
    (dict(block=BlockConfig(8, 16, 32)), ValueError),
])
def test_bad_arguments(kwargs, error):
    args = dict(x=jnp.zeros((2, 64)), w=jnp.zeros((8, 64), jnp.int8), scale=jnp.ones(8))
    args.update(kwargs)
    x, w, scale = args.pop("x"), args.pop("w"), args.pop("scale")
    with pytest.raises(error):
        weight_only_matmul(x, w, scale, interpret=True, **args)
