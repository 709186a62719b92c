"""Property tests of the quantization formulas (hypothesis)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import jaxq
from jaxq.core import affine
from jaxq.core import fake_quantize_ops as F

SHAPE = (4, 8)
GRANULARITIES = {"per_tensor": jaxq.PerTensor(), "per_axis0": jaxq.PerAxis(0),
                 "per_axis1": jaxq.PerAxis(1), "per_group4": jaxq.PerGroup(4),
                 "per_block": jaxq.PerBlock((2, 4))}
TARGETS = {"int8": jaxq.int8, "uint8": jaxq.uint8, "int4": jaxq.int4}
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None)

# XLA flushes float32 subnormals to zero on CPU (torch does not): keep to normal values.
finite_floats = st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False,
                          allow_subnormal=False)
inputs = hnp.arrays(np.float32, SHAPE, elements=finite_floats)
mappings = st.sampled_from([jaxq.MappingType.ASYMMETRIC, jaxq.MappingType.SYMMETRIC])


@functools.lru_cache(maxsize=None)
def _round_trip(granularity, target, mapping):
    """Jitted (x -> (scale, zero_point, x_hat)) with qparams from the data; one compile."""
    block = jaxq.get_block_size(SHAPE, GRANULARITIES[granularity])
    qdtype = TARGETS[target]

    def run(x):
        scale, zero_point = affine.choose_qparams_affine(x, mapping, block, qdtype,
                                                         keepdim=True)
        q = affine.quantize_affine(x, block, scale, zero_point, qdtype)
        x_hat = affine.dequantize_affine(q, block, scale, zero_point, qdtype)
        expand = lambda p: jnp.repeat(jnp.repeat(p, block[0], 0), block[1], 1)
        return expand(scale), expand(zero_point), x_hat

    return jax.jit(run)


@functools.lru_cache(maxsize=None)
def _fake_quantize(granularity, target):
    block = jaxq.get_block_size(SHAPE, GRANULARITIES[granularity])
    qdtype = TARGETS[target]
    return jax.jit(lambda x, s, z: affine.fake_quantize_affine(x, block, s, z, qdtype))


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("granularity", list(GRANULARITIES))
@PROPERTY_SETTINGS
@given(x=inputs, mapping=mappings)
def test_round_trip_error_is_at_most_half_a_step(granularity, target, mapping, x):
    scale, zero_point, x_hat = map(np.asarray, _round_trip(granularity, target, mapping)(x))
    qdtype = TARGETS[target]
    scale = scale.astype(np.float64)
    low = (qdtype.quant_min - zero_point) * scale
    high = (qdtype.quant_max - zero_point) * scale
    inside = (x >= low) & (x <= high)
    error = np.abs(x_hat.astype(np.float64) - x)
    # Half a step, plus float32 rounding of x/s and of the product.
    bound = scale / 2 + 4 * np.finfo(np.float32).eps * (np.abs(x) + scale)
    assert np.all(error[inside] <= bound[inside])


def _block_qparams(draw_scale, draw_zero_point, granularity, target):
    block = jaxq.get_block_size(SHAPE, GRANULARITIES[granularity])
    grid = (SHAPE[0] // block[0], SHAPE[1] // block[1])
    qdtype = TARGETS[target]
    scale = np.asarray(draw_scale, np.float32)[: grid[0] * grid[1]].reshape(grid)
    zero_point = np.clip(np.asarray(draw_zero_point)[: grid[0] * grid[1]], qdtype.quant_min,
                         qdtype.quant_max).astype(np.int32).reshape(grid)
    return scale, zero_point


scales = st.lists(st.floats(0.0009765625, 10.0, width=32), min_size=32, max_size=32)
zero_points = st.lists(st.integers(-128, 255), min_size=32, max_size=32)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("granularity", list(GRANULARITIES))
@PROPERTY_SETTINGS
@given(x=inputs, scale=scales, zero_point=zero_points)
def test_fake_quantize_affine_is_idempotent_and_monotone(granularity, target, x, scale,
                                                         zero_point):
    scale, zero_point = _block_qparams(scale, zero_point, granularity, target)
    fake = _fake_quantize(granularity, target)
    once = np.asarray(fake(x, scale, zero_point))
    np.testing.assert_array_equal(np.asarray(fake(once, scale, zero_point)), once)
    # Monotone within each block: sort a row of x and compare the fake-quantized rows.
    sorted_x = np.sort(x, axis=1)
    fq_sorted = np.asarray(fake(sorted_x, scale, zero_point))
    block = jaxq.get_block_size(SHAPE, GRANULARITIES[granularity])
    if block[1] == SHAPE[1]:  # one parameter per row: the whole row is monotone
        assert np.all(np.diff(fq_sorted, axis=1) >= 0)
    # Element-wise: x <= y  =>  fq(x) <= fq(y) with the same parameters.
    y = np.maximum(x, sorted_x)
    assert np.all(np.asarray(fake(y, scale, zero_point)) >= once)


per_tensor_scale = st.floats(0.0009765625, 10.0, width=32)


@pytest.mark.parametrize("quant_range", [(0, 255), (-128, 127), (-8, 7)])
@PROPERTY_SETTINGS
@given(x=inputs, y=inputs, scale=per_tensor_scale, zero_point=st.integers(-128, 255))
def test_torch_fake_quantize_ops_idempotent_and_monotone(quant_range, x, y, scale,
                                                         zero_point):
    quant_min, quant_max = quant_range
    zero_point = int(np.clip(zero_point, quant_min, quant_max))
    per_tensor = _per_tensor_jit(quant_min, quant_max)
    once = np.asarray(per_tensor(x, scale, zero_point))
    np.testing.assert_array_equal(np.asarray(per_tensor(once, scale, zero_point)), once)
    low, high = np.minimum(x, y), np.maximum(x, y)
    assert np.all(np.asarray(per_tensor(low, scale, zero_point))
                  <= np.asarray(per_tensor(high, scale, zero_point)))
    # Per channel with float zero points (per_channel_affine_float_qparams).
    per_channel = _per_channel_jit(quant_min, quant_max)
    scales = np.full(SHAPE[1], scale, np.float32) * np.linspace(0.5, 2, SHAPE[1],
                                                                dtype=np.float32)
    float_zero_points = np.linspace(quant_min, quant_max, SHAPE[1]).astype(np.float32)
    once = np.asarray(per_channel(x, scales, float_zero_points))
    np.testing.assert_array_equal(np.asarray(per_channel(once, scales, float_zero_points)),
                                  once)
    assert np.all(np.asarray(per_channel(low, scales, float_zero_points))
                  <= np.asarray(per_channel(high, scales, float_zero_points)))


@functools.lru_cache(maxsize=None)
def _per_tensor_jit(quant_min, quant_max):
    return jax.jit(lambda x, s, z: F.fake_quantize_per_tensor_affine(x, s, z, quant_min,
                                                                     quant_max))


@functools.lru_cache(maxsize=None)
def _per_channel_jit(quant_min, quant_max):
    return jax.jit(lambda x, s, z: F.fake_quantize_per_channel_affine(x, s, z, 1, quant_min,
                                                                      quant_max))
