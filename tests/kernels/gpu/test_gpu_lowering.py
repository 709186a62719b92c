"""Every kernel configuration lowers to Triton for CUDA (checked on CPU), and, on a GPU,
compiles and matches its reference. The GPU tests skip cleanly without a GPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq.core.granularity import MappingType
from jaxq.kernels.gpu import (
    BlockConfig, int8_matmul, int8_matmul_block, int8_matmul_reference, quantize_per_token,
    quantize_per_token_reference, weight_only_block, weight_only_matmul,
    weight_only_matmul_reference)

HAS_GPU = jax.default_backend() == "gpu"
gpu_only = pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU")


def _lower_for_cuda(fn, *args):
    """Pallas -> Triton IR happens at lowering: unsupported ops, non-power-of-two blocks
    and mixed-dtype dots fail here, without a GPU."""
    text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    assert "__gpu$xla.gpu.triton" in text


def _s(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)


@pytest.mark.parametrize("m", [1, 48, 200, 1024])
@pytest.mark.parametrize("epilogue", ["float", "requant", "int32"])
def test_int8_matmul_lowers(m, epilogue):
    k, n = 1000, 520  # ragged against every table block

    def fn(x, w, xs, ws, b):
        if epilogue == "int32":
            return int8_matmul(x, w, out_dtype=jnp.int32, x_zero_point=3, interpret=False)
        if epilogue == "requant":
            return int8_matmul(x, w, xs, ws, bias=b, relu=True, out_dtype=jnp.int8,
                               out_scale=0.5, out_zero_point=2, w_zero_point=1,
                               interpret=False)
        return int8_matmul(x, w, xs, ws, bias=b, out_dtype=jnp.bfloat16, interpret=False)
    _lower_for_cuda(fn, _s((m, k), jnp.int8), _s((n, k), jnp.int8), _s((m,), jnp.float32),
                    _s((n,), jnp.float32), _s((n,), jnp.float32))


@pytest.mark.parametrize("m,bits,group", [(1, 4, 32), (1, 4, 128), (8, 4, 64), (64, 4, 128),
                                          (1, 8, None), (32, 8, None), (16, 8, 64)])
def test_weight_only_lowers(m, bits, group):
    k, n = 1024, 520
    w = _s((n, k) if bits == 8 else (n, k // 2), jnp.int8 if bits == 8 else jnp.uint8)
    s = _s((n,) if group is None else (n, k // group), jnp.float32)
    _lower_for_cuda(lambda x, w, s: weight_only_matmul(x, w, s, s, bits=bits, interpret=False),
                    _s((m, k), jnp.bfloat16), w, s)


@pytest.mark.parametrize("shape", [(1, 4096), (300, 1000), (3, 40000)])
def test_quantize_per_token_lowers(shape):
    _lower_for_cuda(lambda x: quantize_per_token(x, mapping_type=MappingType.ASYMMETRIC,
                                                 interpret=False), _s(shape, jnp.bfloat16))


@gpu_only
@pytest.mark.parametrize("m,k,n", [(1, 40, 72), (200, 1000, 520), (256, 4096, 4096)])
def test_int8_matmul_on_gpu(rng, m, k, n):
    x = jnp.asarray(rng.integers(-128, 128, (m, k)), jnp.int8)
    w = jnp.asarray(rng.integers(-128, 128, (n, k)), jnp.int8)
    xs = jnp.asarray(rng.uniform(0.01, 0.1, m), jnp.float32)
    ws = jnp.asarray(rng.uniform(0.01, 0.1, n), jnp.float32)
    b = jnp.asarray(rng.normal(size=n), jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(int8_matmul(x, w, out_dtype=jnp.int32, x_zero_point=2)),
        np.asarray(int8_matmul_reference(x, w, out_dtype=jnp.int32, x_zero_point=2)))
    kw = dict(bias=b, relu=True, out_dtype=jnp.int8, out_scale=4.0, out_zero_point=1)
    np.testing.assert_array_equal(np.asarray(int8_matmul(x, w, xs, ws, **kw)),
                                  np.asarray(int8_matmul_reference(x, w, xs, ws, **kw)))


@gpu_only
@pytest.mark.parametrize("m,bits,group", [(1, 4, 128), (16, 4, 32), (1, 8, None), (64, 8, None)])
def test_weight_only_on_gpu(rng, m, bits, group):
    from jaxq.core.packing import pack
    k, n = 4096, 1000
    if bits == 8:
        w = jnp.asarray(rng.integers(-128, 128, (n, k)), jnp.int8)
        s = jnp.asarray(rng.uniform(0.01, 0.1, n), jnp.float32)
    else:
        w = pack(jnp.asarray(rng.integers(0, 16, (n, k))), bits=4)
        s = jnp.asarray(rng.uniform(0.01, 0.1, (n, k // group)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(m, k)), jnp.bfloat16)
    got = weight_only_matmul(x, w, s, bits=bits, out_dtype=jnp.float32)
    expected = weight_only_matmul_reference(x, w, s, bits=bits, out_dtype=jnp.float32)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-3, atol=1e-2)


@gpu_only
def test_quantize_per_token_on_gpu(rng):
    x = jnp.asarray(rng.normal(size=(300, 5000)), jnp.bfloat16)
    for mapping in (MappingType.SYMMETRIC, MappingType.ASYMMETRIC):
        for g, e in zip(quantize_per_token(x, mapping_type=mapping),
                        quantize_per_token_reference(x, mapping_type=mapping)):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(e))
