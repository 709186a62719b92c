"""int8 GEMM kernel (interpret mode) against its reference and torch: bit-exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxq.kernels.gpu import BlockConfig, int8_matmul, int8_matmul_reference
from jaxq.kernels.gpu.blocks import int8_matmul_block

# Small blocks so that odd shapes span several tiles (and K several iterations).
SMALL = BlockConfig(16, 16, 32)
SHAPES = [(1, 40, 72), (3, 64, 16), (33, 100, 40)]


def _operands(rng, m, k, n):
    return dict(
        x=jnp.asarray(rng.integers(-128, 128, (m, k)), jnp.int8),
        w=jnp.asarray(rng.integers(-128, 128, (n, k)), jnp.int8),
        xs=jnp.asarray(rng.uniform(0.005, 0.05, m), jnp.float32),
        ws=jnp.asarray(rng.uniform(0.005, 0.05, n), jnp.float32),
        xz=jnp.asarray(rng.integers(-20, 20, m), jnp.int32),
        wz=jnp.asarray(rng.integers(-20, 20, n), jnp.int32),
        bias=jnp.asarray(rng.normal(size=n), jnp.float32),
    )


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_int32_accumulator_matches_torch(rng, m, k, n):
    o = _operands(rng, m, k, n)
    got = int8_matmul(o["x"], o["w"], out_dtype=jnp.int32, x_zero_point=o["xz"],
                      w_zero_point=o["wz"], block=SMALL, interpret=True)
    def t(a):
        return torch.tensor(np.array(a), dtype=torch.int64)
    x = t(o["x"]) - t(o["xz"])[:, None]
    w = t(o["w"]) - t(o["wz"])[:, None]
    expected = (x.long() @ w.long().T).numpy()
    np.testing.assert_array_equal(np.asarray(got), expected)


@pytest.mark.parametrize("m,k,n", [SHAPES[0], SHAPES[2]])
@pytest.mark.parametrize("epilogue", [
    dict(out_dtype=jnp.float32),
    dict(out_dtype=jnp.float32, zp="x", bias=True, relu=True),
    dict(out_dtype=jnp.bfloat16, zp="w", bias=True),
    dict(out_dtype=jnp.float16, zp="xw"),
    dict(out_dtype=jnp.int8, out_scale=0.37, out_zero_point=-3, bias=True),
    dict(out_dtype=jnp.uint8, out_scale=0.21, out_zero_point=128, zp="xw", relu=True),
    dict(out_dtype=jnp.int8, out_scale=0.5, out_zero_point=0, quant_min=-127,
         quant_max=100),
], ids=lambda e: "-".join(f"{k}={getattr(v, '__name__', v)}" for k, v in e.items()))
def test_epilogues_bit_exact(rng, m, k, n, epilogue):
    o = _operands(rng, m, k, n)
    kw = dict(epilogue)
    zp = kw.pop("zp", "")
    if kw.pop("bias", False):
        kw["bias"] = o["bias"]
    if "x" in zp:
        kw["x_zero_point"] = o["xz"]
    if "w" in zp:
        kw["w_zero_point"] = o["wz"]
    got = int8_matmul(o["x"], o["w"], o["xs"], o["ws"], block=SMALL, interpret=True, **kw)
    expected = int8_matmul_reference(o["x"], o["w"], o["xs"], o["ws"], **kw)
    assert got.dtype == expected.dtype == jnp.dtype(kw["out_dtype"])
    np.testing.assert_array_equal(np.asarray(got.astype(jnp.float32)),
                                  np.asarray(expected.astype(jnp.float32)))


def test_scalar_scales_and_table_blocks(rng):
    o = _operands(rng, 5, 72, 24)
    got = int8_matmul(o["x"], o["w"], 0.02, 0.03, bias=o["bias"], interpret=True)
    expected = int8_matmul_reference(o["x"], o["w"], 0.02, 0.03, bias=o["bias"])
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_grouped_launch_order(rng):
    # group_m > 1 remaps program ids; every tile must still be written exactly once.
    o = _operands(rng, 70, 64, 50)
    block = BlockConfig(16, 16, 32, group_m=2)
    got = int8_matmul(o["x"], o["w"], out_dtype=jnp.int32, block=block, interpret=True)
    expected = int8_matmul_reference(o["x"], o["w"], out_dtype=jnp.int32)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_jit_no_recompile(rng):
    o = _operands(rng, 3, 40, 16)
    f = jax.jit(lambda x, w, xs, ws: int8_matmul(x, w, xs, ws, block=SMALL, interpret=True))
    f(o["x"], o["w"], o["xs"], o["ws"])
    size = f._cache_size()
    f(o["x"] + 1, o["w"], o["xs"], o["ws"])
    assert f._cache_size() == size


def test_block_table_is_valid():
    for m in (1, 16, 17, 64, 100, 256, 257, 8192):
        block = int8_matmul_block(m, 8192, 8192)
        assert block.block_k >= 32 and block.block_m >= 16
        if m >= 64:  # Hopper wgmma conditions for int8.
            assert block.block_m % 64 == 0 and block.num_warps % 4 == 0
        smem = block.num_stages * (block.block_m + block.block_n) * block.block_k
        assert smem <= 200 * 1024
    small = int8_matmul_block(3, 72, 40)  # (m, n, k): clamped to the problem
    assert (small.block_m, small.block_n, small.block_k) == (16, 64, 64)


@pytest.mark.parametrize("kwargs,error", [
    (dict(x=jnp.zeros((2, 4), jnp.float32)), TypeError),
    (dict(w=jnp.zeros((3, 5), jnp.int8)), ValueError),
    (dict(out_dtype=jnp.int32, bias=jnp.zeros(3)), ValueError),
    (dict(out_dtype=jnp.int8), ValueError),
    (dict(out_dtype=jnp.float32, out_scale=1.0), ValueError),
    (dict(out_dtype=jnp.int64), TypeError),
    (dict(x_scale=jnp.ones(7)), ValueError),
    (dict(block=BlockConfig(16, 16, 16)), ValueError),
    (dict(out_dtype=jnp.int8, out_scale=1.0, quant_min=10, quant_max=5), ValueError),
])
def test_bad_arguments(kwargs, error):
    args = dict(x=jnp.zeros((2, 4), jnp.int8), w=jnp.zeros((3, 4), jnp.int8), x_scale=1.0,
                w_scale=1.0)
    args.update(kwargs)
    x, w, xs, ws = args.pop("x"), args.pop("w"), args.pop("x_scale"), args.pop("w_scale")
    with pytest.raises(error):
        int8_matmul(x, w, xs, ws, interpret=True, **args)


def test_block_config_validation():
    with pytest.raises(ValueError, match="block_n"):
        BlockConfig(16, 24, 32)
    with pytest.raises(ValueError, match="num_stages"):
        BlockConfig(16, 16, 32, num_stages=0)
