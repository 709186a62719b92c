"""jaxq.core.fake_quantize_ops against torch's fake-quant ops (outputs, masks, gradients)."""

import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch

from jaxq.core import fake_quantize_ops as F
from tests._tracing import counting_jit

# (quant_min, quant_max): quint8, qint8, reduce_range quint8/qint8, a custom 4-bit
# range, one that excludes 0, and qint32.
RANGES = [(0, 255), (-128, 127), (0, 127), (-64, 63), (0, 15), (3, 12),
          (-(2**31), 2**31 - 1)]
RANGE_IDS = ["quint8", "qint8", "quint8_rr", "qint8_rr", "custom4", "no_zero", "qint32"]
DTYPES = {"float32": (np.float32, torch.float32), "float16": (np.float16, torch.float16),
          "bfloat16": (ml_dtypes.bfloat16, torch.bfloat16)}
SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 3, 2, 3)]
# float32 runs by default; the half-precision sweeps are marked slow (CI runs them).
DTYPE_PARAMS = ["float32"] + [pytest.param(name, marks=pytest.mark.slow)
                              for name in ("float16", "bfloat16")]


def make_input(rng, shape, scale, quant_min, quant_max, specials=True):
    """Random values spanning beyond the range, exact ties, and +-inf/NaN."""
    span = min(quant_max - quant_min, 2**16) * scale
    x = rng.normal(size=shape) * span * 0.4 + rng.uniform(-0.2, 0.2) * span
    flat = x.reshape(-1)
    k = rng.integers(-50, 50, size=flat.size)
    ties = rng.random(flat.size) < 0.2
    flat[ties] = ((k + 0.5) * scale)[ties]
    if specials and flat.size >= 5:
        flat[:3] = [np.inf, -np.inf, np.nan]
    return x.astype(np.float32)


def as_dtype(x, dtype_name):
    """The same values in jax and torch for ``dtype_name``."""
    np_dtype, torch_dtype = DTYPES[dtype_name]
    xt = torch.tensor(x).to(torch_dtype)
    return np.asarray(x).astype(np_dtype), xt


def assert_same(actual, expected):
    actual = np.asarray(jnp.asarray(actual).astype(jnp.float32))
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().float().numpy()
    np.testing.assert_array_equal(actual, expected)


def torch_grad(f, xt, dy):
    xt = xt.detach().clone().requires_grad_(True)
    y = f(xt)
    y.backward(torch.tensor(dy).to(y.dtype))
    return y.detach(), xt.grad


# ---------------------------------------------------------------------------
# Per-tensor.
# ---------------------------------------------------------------------------
def _check_per_tensor(rng, x, dtype_name, scale, zero_point, quant_min, quant_max):
    xj, xt = as_dtype(x, dtype_name)
    dy = rng.normal(size=x.shape).astype(np.float32)
    expected, mask_t = torch.ops.aten.fake_quantize_per_tensor_affine_cachemask(
        xt, scale, zero_point, quant_min, quant_max)
    y_t, dx_t = torch_grad(lambda v: torch.fake_quantize_per_tensor_affine(
        v, scale, zero_point, quant_min, quant_max), xt, dy)
    out, mask, y, dx = _per_tensor_all(xj, scale, zero_point, dy.astype(xj.dtype),
                                       quant_min, quant_max)
    assert out.dtype == xj.dtype and out.shape == x.shape
    assert_same(out, expected)
    assert_same(out, y_t)
    np.testing.assert_array_equal(np.asarray(mask), mask_t.numpy())
    assert_same(y, y_t)
    assert_same(dx, dx_t)


# The comparisons run jitted (one compile per case instead of one per primitive);
# eager calls are compared with jitted ones in test_jit_matches_eager_*.
@functools.partial(jax.jit, static_argnums=(4, 5))
def _per_tensor_all(x, scale, zero_point, dy, quant_min, quant_max):
    out, mask = F.fake_quantize_per_tensor_affine_cachemask(x, scale, zero_point,
                                                           quant_min, quant_max)
    y, vjp = jax.vjp(lambda v: F.fake_quantize_per_tensor_affine(
        v, scale, zero_point, quant_min, quant_max), x)
    return out, mask, y, vjp(dy)[0]


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _per_channel_all(x, scale, zero_point, dy, axis, quant_min, quant_max):
    out, mask = F.fake_quantize_per_channel_affine_cachemask(x, scale, zero_point, axis,
                                                            quant_min, quant_max)
    y, vjp = jax.vjp(lambda v: F.fake_quantize_per_channel_affine(
        v, scale, zero_point, axis, quant_min, quant_max), x)
    return out, mask, y, vjp(dy)[0]


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _learnable_per_tensor_all(x, scale, zero_point, dy, quant_min, quant_max,
                              grad_factor):
    y, vjp = jax.vjp(lambda v, s, z: F.fake_quantize_learnable_per_tensor_affine(
        v, s, z, quant_min, quant_max, grad_factor), x, scale, zero_point)
    return (y,) + vjp(dy)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _learnable_per_channel_all(x, scale, zero_point, dy, axis, quant_min, quant_max,
                               grad_factor):
    y, vjp = jax.vjp(lambda v, s, z: F.fake_quantize_learnable_per_channel_affine(
        v, s, z, axis, quant_min, quant_max, grad_factor), x, scale, zero_point)
    return (y,) + vjp(dy)


@pytest.mark.parametrize("dtype_name", DTYPE_PARAMS)
@pytest.mark.parametrize("quant_range", RANGES, ids=RANGE_IDS)
def test_per_tensor_matches_torch(rng, dtype_name, quant_range):
    quant_min, quant_max = quant_range
    scale = float(np.float32(rng.uniform(0.01, 0.1)))
    zero_point = int(rng.integers(max(quant_min, -300), min(quant_max, 300) + 1))
    x = make_input(rng, (2, 3, 16), scale, quant_min, quant_max)
    _check_per_tensor(rng, x, dtype_name, scale, zero_point, quant_min, quant_max)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_per_tensor_shapes_and_exact_ties(rng, shape):
    scale = 0.125  # a power of two: (k + 0.5) * scale is an exact tie
    x = make_input(rng, shape, scale, -128, 127)
    _check_per_tensor(rng, x, "float32", scale, 3, -128, 127)
    _check_per_tensor(rng, x, "float32", scale, -7, -128, 127)


def test_per_tensor_zero_range_and_zero_dim(rng):
    x = make_input(rng, (4, 5), 0.1, 0, 0)
    _check_per_tensor(rng, x, "float32", 0.1, 0, 0, 0)
    _check_per_tensor(rng, np.array(0.37, np.float32), "float32", 0.1, 2, 0, 255)


def test_per_tensor_array_qparams(rng):
    x = make_input(rng, (3, 8), 0.05, 0, 255)
    xt = torch.tensor(x)
    expected = torch.fake_quantize_per_tensor_affine(
        xt, torch.tensor([0.05]), torch.tensor([9], dtype=torch.int32), 0, 255)
    for scale, zero_point in [(jnp.array([0.05]), jnp.array([9], jnp.int32)),
                              (jnp.float32(0.05), jnp.int32(9))]:
        assert_same(F.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255),
                    expected)


# ---------------------------------------------------------------------------
# Per-channel.
# ---------------------------------------------------------------------------
def _channel_params(rng, channels, quant_min, quant_max, float_zero_point):
    scale = rng.uniform(0.01, 0.1, channels).astype(np.float32)
    scale[0] = 0.125  # exact ties in channel 0
    lo, hi = max(quant_min, -300), min(quant_max, 300)
    if float_zero_point:
        zero_point = rng.uniform(lo, hi, channels).astype(np.float32)
    else:
        zero_point = rng.integers(lo, hi + 1, channels).astype(np.int32)
    return scale, zero_point


def _check_per_channel(rng, x, dtype_name, scale, zero_point, axis, quant_min, quant_max):
    xj, xt = as_dtype(x, dtype_name)
    dy = rng.normal(size=x.shape).astype(np.float32)
    st, zt = torch.tensor(scale), torch.tensor(zero_point)
    expected, mask_t = torch.ops.aten.fake_quantize_per_channel_affine_cachemask(
        xt, st, zt, axis, quant_min, quant_max)
    y_t, dx_t = torch_grad(lambda v: torch.fake_quantize_per_channel_affine(
        v, st, zt, axis, quant_min, quant_max), xt, dy)
    out, mask, y, dx = _per_channel_all(xj, scale, zero_point, dy.astype(xj.dtype), axis,
                                        quant_min, quant_max)
    assert out.dtype == xj.dtype
    assert_same(out, expected)
    np.testing.assert_array_equal(np.asarray(mask), mask_t.numpy())
    assert_same(y, y_t)
    assert_same(dx, dx_t)


@pytest.mark.parametrize("float_zero_point", [False, True], ids=["int_zp", "float_zp"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_per_channel_every_axis(rng, shape, float_zero_point):
    for axis in range(len(shape)):
        scale, zero_point = _channel_params(rng, shape[axis], -128, 127, float_zero_point)
        x = make_input(rng, shape, 0.05, -128, 127)
        _check_per_channel(rng, x, "float32", scale, zero_point, axis, -128, 127)


@pytest.mark.parametrize("dtype_name", DTYPE_PARAMS)
@pytest.mark.parametrize("quant_range", RANGES, ids=RANGE_IDS)
def test_per_channel_ranges_and_dtypes(rng, quant_range, dtype_name):
    quant_min, quant_max = quant_range
    x = make_input(rng, (3, 4, 32), 0.05, quant_min, quant_max)
    for float_zero_point in (False, True):
        scale, zero_point = _channel_params(rng, 4, quant_min, quant_max, float_zero_point)
        _check_per_channel(rng, x, dtype_name, scale, zero_point, 1, quant_min, quant_max)


def test_per_channel_float_zero_point_large_sample(rng):
    """The float-qparams output is rounded once from the exact value, as torch does."""
    scale = rng.uniform(1e-3, 1.0, 8).astype(np.float32)
    zero_point = rng.uniform(-300, 300, 8).astype(np.float32)
    x = (rng.normal(size=(8, 4096)) * 50).astype(np.float32)
    _check_per_channel(rng, x, "float32", scale, zero_point, 0, -1000, 1000)
    zero_point = np.round(zero_point)  # integer-valued float zero points
    _check_per_channel(rng, x, "float32", scale, zero_point, 0, -1000, 1000)


def test_per_channel_special_values_follow_torch():
    # torch casts to int64 before clamping: +inf, NaN and huge values land at qmin.
    x = np.array([[np.inf, -np.inf, np.nan, 1e20, -1e20, 1e9, 0.3]], np.float32)
    for zero_point in (np.array([3], np.int32), np.array([2.3], np.float32)):
        _check_per_channel(np.random.default_rng(1), x, "float32",
                           np.array([0.1], np.float32), zero_point, 0, -128, 127)


def test_negative_axis_is_accepted(rng):
    x = make_input(rng, (2, 3, 4), 0.05, -128, 127)
    scale, zero_point = _channel_params(rng, 4, -128, 127, False)
    np.testing.assert_array_equal(
        F.fake_quantize_per_channel_affine(x, scale, zero_point, -1, -128, 127),
        F.fake_quantize_per_channel_affine(x, scale, zero_point, 2, -128, 127))


# ---------------------------------------------------------------------------
# Learnable (LSQ).
# ---------------------------------------------------------------------------
def _sum_tolerance(dy, quant_min, quant_max, grad_factor):
    # d_scale / d_zero_point are float32 sums whose order differs from torch's.
    bound = max(quant_max - quant_min, 1) + 1
    return 1e-6 * float(np.abs(dy).sum()) * bound * abs(grad_factor) + 1e-6


def _check_learnable_per_tensor(rng, x, scale, zero_point, quant_min, quant_max,
                                grad_factor):
    dy = rng.normal(size=x.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    st = torch.tensor([scale], dtype=torch.float32, requires_grad=True)
    zt = torch.tensor([zero_point], dtype=torch.float32, requires_grad=True)
    yt = torch._fake_quantize_learnable_per_tensor_affine(xt, st, zt, quant_min,
                                                          quant_max, grad_factor)
    yt.backward(torch.tensor(dy))
    y, dx, d_scale, d_zero_point = _learnable_per_tensor_all(
        x, np.array([scale], np.float32), np.array([zero_point], np.float32), dy,
        quant_min, quant_max, grad_factor)
    assert_same(y, yt)
    assert_same(dx, xt.grad)
    assert d_scale.shape == (1,) and d_zero_point.shape == (1,)
    tol = _sum_tolerance(dy, quant_min, quant_max, grad_factor)
    np.testing.assert_allclose(d_scale, st.grad.numpy(), rtol=1e-6, atol=tol)
    np.testing.assert_allclose(d_zero_point, zt.grad.numpy(), rtol=1e-6, atol=tol)


@pytest.mark.parametrize("zero_point, grad_factor", [
    (0.0, 1.0), (2.6, 0.37), (-1.7, 1.0), (2.5, 0.37), (3.5, 1.0), (-2.5, 0.37),
    (300.0, 1.0), (-300.0, 0.37)])
def test_learnable_per_tensor_matches_torch(rng, zero_point, grad_factor):
    x = make_input(rng, (3, 40), 0.05, -128, 127)
    _check_learnable_per_tensor(rng, x, 0.05, zero_point, -128, 127, grad_factor)


@pytest.mark.parametrize("quant_range", [(0, 255), (0, 127), (-64, 63), (0, 15), (0, 0)],
                         ids=["quint8", "quint8_rr", "qint8_rr", "custom4", "zero"])
def test_learnable_per_tensor_ranges(rng, quant_range):
    quant_min, quant_max = quant_range
    x = make_input(rng, (2, 3, 8), 0.125, quant_min, quant_max)
    _check_learnable_per_tensor(rng, x, 0.125, float(quant_max) / 3, quant_min, quant_max,
                                1.0 / np.sqrt(x.size * max(quant_max, 1)))


def test_learnable_per_tensor_special_values(rng):
    x = np.array([np.inf, -np.inf, np.nan, 1e20, -1e20, 1e9, 0.33, 12.75, -13.0],
                 np.float32)
    _check_learnable_per_tensor(rng, x, 0.1, 2.0, -128, 127, 1.0)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_learnable_forward_half_precision(rng, dtype_name):
    x = make_input(rng, (3, 16), 0.05, 0, 255)
    xj, xt = as_dtype(x, dtype_name)
    expected = torch._fake_quantize_learnable_per_tensor_affine(
        xt, torch.tensor([0.05]), torch.tensor([7.4]), 0, 255, 1.0)
    assert_same(F.fake_quantize_learnable_per_tensor_affine(
        xj, jnp.array([0.05]), jnp.array([7.4]), 0, 255), expected)
    expected = torch._fake_quantize_learnable_per_channel_affine(
        xt, torch.full((16,), 0.05), torch.full((16,), 7.6), 1, 0, 255, 1.0)
    assert_same(F.fake_quantize_learnable_per_channel_affine(
        xj, jnp.full((16,), 0.05), jnp.full((16,), 7.6), 1, 0, 255), expected)


def _check_learnable_per_channel(rng, x, scale, zero_point, axis, quant_min, quant_max,
                                 grad_factor):
    dy = rng.normal(size=x.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    st = torch.tensor(scale, requires_grad=True)
    zt = torch.tensor(zero_point, requires_grad=True)
    yt = torch._fake_quantize_learnable_per_channel_affine(xt, st, zt, axis, quant_min,
                                                           quant_max, grad_factor)
    yt.backward(torch.tensor(dy))
    y, dx, d_scale, d_zero_point = _learnable_per_channel_all(
        x, scale, zero_point, dy, axis, quant_min, quant_max, grad_factor)
    assert_same(y, yt)
    assert_same(dx, xt.grad)
    assert d_scale.shape == scale.shape and d_zero_point.shape == zero_point.shape
    tol = _sum_tolerance(dy, quant_min, quant_max, grad_factor)
    np.testing.assert_allclose(d_scale, st.grad.numpy(), rtol=1e-6, atol=tol)
    np.testing.assert_allclose(d_zero_point, zt.grad.numpy(), rtol=1e-6, atol=tol)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_learnable_per_channel_every_axis(rng, shape):
    if len(shape) == 1:
        # torch's backward sums over an empty axis list (= everything) for 1-D inputs
        # and then rejects its own gradient; (n, 1) along axis 0 is the same case.
        shape = shape + (1,)
    for axis in range(len(shape)):
        channels = shape[axis]
        scale = rng.uniform(0.02, 0.1, channels).astype(np.float32)
        zero_point = rng.uniform(-140, 140, channels).astype(np.float32)
        zero_point[0] = 2.5  # half-to-even rounding in both directions
        if channels > 1:
            zero_point[1] = -3.5
        x = make_input(rng, shape, 0.05, -128, 127)
        _check_learnable_per_channel(rng, x, scale, zero_point, axis, -128, 127, 0.5)


@pytest.mark.parametrize("magnitude", [3.0, 3e4, 3e6])
def test_learnable_gradients_per_element_are_exact(rng, magnitude):
    """One element per channel: d_scale and d_zero_point are unsummed, so bit-exact."""
    n = 2000
    x = (rng.normal(size=(n, 1)) * magnitude).astype(np.float32)
    scale = rng.uniform(0.01, 0.1, n).astype(np.float32)
    zero_point = rng.uniform(-300, 300, n).astype(np.float32)
    quant_min, quant_max = -(2**31), 2**31 - 1
    xt, st, zt = (torch.tensor(v, requires_grad=True) for v in (x, scale, zero_point))
    torch._fake_quantize_learnable_per_channel_affine(
        xt, st, zt, 0, quant_min, quant_max, 0.3).sum().backward()
    grads = _learnable_per_channel_all(x, scale, zero_point, np.ones_like(x), 0, quant_min,
                                       quant_max, 0.3)[1:]
    for actual, expected in zip(grads, (xt.grad, st.grad, zt.grad)):
        assert_same(actual, expected)


def test_learnable_per_tensor_single_element_gradients_are_exact(rng):
    grad = jax.jit(jax.grad(lambda v, s, z: F.fake_quantize_learnable_per_tensor_affine(
        v, s, z, -128, 127, 0.7).sum(), argnums=(0, 1, 2)))
    for _ in range(40):
        x = (rng.normal(size=(1,)) * 3).astype(np.float32)
        scale = np.array([rng.uniform(0.01, 0.1)], np.float32)
        zero_point = np.array([rng.uniform(-100, 100)], np.float32)
        xt, st, zt = (torch.tensor(v, requires_grad=True) for v in (x, scale, zero_point))
        torch._fake_quantize_learnable_per_tensor_affine(
            xt, st, zt, -128, 127, 0.7).sum().backward()
        for actual, expected in zip(grad(x, scale, zero_point), (xt.grad, st.grad, zt.grad)):
            assert_same(actual, expected)


def test_learnable_per_channel_ranges(rng):
    for quant_min, quant_max in [(0, 255), (-64, 63), (0, 15), (0, 0)]:
        scale = rng.uniform(0.02, 0.1, 5).astype(np.float32)
        zero_point = rng.uniform(quant_min, quant_max, 5).astype(np.float32)
        x = make_input(rng, (5, 12), 0.05, quant_min, quant_max)
        _check_learnable_per_channel(rng, x, scale, zero_point, 0, quant_min, quant_max,
                                     1.0)


# ---------------------------------------------------------------------------
# Transformations: jit, vmap, grad; no recompilation.
# ---------------------------------------------------------------------------
def test_jit_matches_eager_and_does_not_recompile(rng):
    x = make_input(rng, (4, 6), 0.05, -128, 127)
    scale, zero_point = _channel_params(rng, 6, -128, 127, True)
    per_tensor = counting_jit(F.fake_quantize_per_tensor_affine, static_argnums=(3, 4))
    per_channel = counting_jit(F.fake_quantize_per_channel_affine, static_argnums=(3, 4, 5))
    learnable = counting_jit(jax.grad(lambda s, z, v: F.fake_quantize_learnable_per_tensor_affine(
        v, s, z, -128, 127).sum(), argnums=(0, 1)))
    for step in range(2):
        x_step = x + step
        np.testing.assert_array_equal(
            per_tensor(x_step, jnp.float32(0.05), jnp.int32(3), -128, 127),
            F.fake_quantize_per_tensor_affine(x_step, 0.05, 3, -128, 127))
        np.testing.assert_array_equal(
            per_channel(x_step, scale, zero_point, 1, -128, 127),
            F.fake_quantize_per_channel_affine(x_step, scale, zero_point, 1, -128, 127))
        learnable(jnp.array([0.05 + step]), jnp.array([1.0]), x_step)
    assert per_tensor.traces == 1
    assert per_channel.traces == 1
    assert learnable.traces == 1


def test_vmap_over_qparams(rng):
    x = make_input(rng, (5, 8), 0.05, -128, 127)
    scales = jnp.array([0.02, 0.05, 0.1], jnp.float32)
    zero_points = jnp.array([0, 3, -5], jnp.int32)
    batched = jax.vmap(F.fake_quantize_per_tensor_affine, in_axes=(None, 0, 0, None, None))(
        x, scales, zero_points, -128, 127)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], F.fake_quantize_per_tensor_affine(
            x, scales[i], zero_points[i], -128, 127))
    xs = np.stack([x, 2 * x])
    grad = jax.grad(lambda v, s: F.fake_quantize_learnable_per_channel_affine(
        v, s, jnp.zeros(8), 1, -128, 127).sum(), argnums=(0, 1))
    scale = jnp.full((8,), 0.05)
    batched = jax.jit(jax.vmap(grad, in_axes=(0, None)))(xs, scale)
    single = jax.jit(grad)
    for i in range(2):
        for actual, expected in zip(batched, single(xs[i], scale)):
            np.testing.assert_array_equal(actual[i], expected)


def test_grad_of_non_learnable_qparams_is_zero(rng):
    x = make_input(rng, (3, 4), 0.05, -128, 127)
    d_scale = jax.grad(lambda s: F.fake_quantize_per_tensor_affine(
        x, s, 0, -128, 127).sum())(jnp.float32(0.05))
    assert d_scale == 0
    d_scale = jax.grad(lambda s: F.fake_quantize_per_channel_affine(
        x, s, jnp.zeros(4), 1, -128, 127).sum())(jnp.full((4,), 0.05))
    np.testing.assert_array_equal(d_scale, np.zeros(4))


def test_integer_zero_point_gets_no_gradient_in_learnable(rng):
    x = make_input(rng, (3, 4), 0.05, -128, 127)
    grads = jax.grad(lambda v, s: F.fake_quantize_learnable_per_tensor_affine(
        v, s, jnp.array([2], jnp.int32), -128, 127).sum(), argnums=(0, 1))(
            jnp.asarray(x), jnp.array([0.05]))
    assert grads[1].shape == (1,)


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, argument", [
    (lambda x: F.fake_quantize_per_tensor_affine(x, 0.1, 0, 5, 3), ValueError, "quant_min"),
    (lambda x: F.fake_quantize_per_tensor_affine(x, 0.1, 300, 0, 255), ValueError,
     "zero_point"),
    (lambda x: F.fake_quantize_per_tensor_affine(x, 0.0, 0, 0, 255), ValueError, "scale"),
    (lambda x: F.fake_quantize_per_tensor_affine(x, -0.1, 0, 0, 255), ValueError, "scale"),
    (lambda x: F.fake_quantize_per_tensor_affine(x.astype(np.int32), 0.1, 0, 0, 255),
     TypeError, "input"),
    (lambda x: F.fake_quantize_per_tensor_affine(x, 0.1, 1.5, 0, 255), TypeError,
     "zero_point"),
    (lambda x: F.fake_quantize_per_tensor_affine(x, jnp.ones(2), 0, 0, 255), ValueError,
     "scale"),
    (lambda x: F.fake_quantize_per_tensor_affine(x, 0.1, 0, 0.5, 255), TypeError,
     "quant_min"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.ones(3), jnp.zeros(3, jnp.int32), 1, 5, 3), ValueError, "quant_min"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.ones(3), jnp.full(3, 300, jnp.int32), 1, 0, 255), ValueError, "zero_point"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.zeros(3), jnp.zeros(3, jnp.int32), 1, 0, 255), ValueError, "scale"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.ones(3), jnp.zeros(3, jnp.int32), 2, 0, 255), ValueError, "axis"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.ones(3), jnp.zeros(3, jnp.int32), -3, 0, 255), ValueError, "axis"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.ones(2), jnp.zeros(2, jnp.int32), 1, 0, 255), ValueError, "scale"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.ones(3), jnp.zeros(2, jnp.int32), 1, 0, 255), ValueError, "zero_point"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.ones((1, 3)), jnp.zeros((1, 3), jnp.int32), 1, 0, 255), ValueError,
     "scale"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x, jnp.ones(3, jnp.int32), jnp.zeros(3, jnp.int32), 1, 0, 255), TypeError,
     "scale"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x.astype(np.int32), jnp.ones(3), jnp.zeros(3, jnp.int32), 1, 0, 255), TypeError,
     "input"),
    (lambda x: F.fake_quantize_per_channel_affine(
        x[0, 0], jnp.ones(1), jnp.zeros(1, jnp.int32), 0, 0, 255), ValueError, "rank"),
    (lambda x: F.fake_quantize_learnable_per_tensor_affine(
        x, jnp.array([0.1]), jnp.array([0.0]), 5, 3), ValueError, "quant_min"),
    (lambda x: F.fake_quantize_learnable_per_tensor_affine(
        x, jnp.array([0.1, 0.2]), jnp.array([0.0, 0.0]), 0, 255), ValueError, "scale"),
    (lambda x: F.fake_quantize_learnable_per_tensor_affine(
        x, jnp.array([-0.1]), jnp.array([0.0]), 0, 255), ValueError, "scale"),
    (lambda x: F.fake_quantize_learnable_per_channel_affine(
        x, jnp.ones(3), jnp.zeros(3), 3, 0, 255), ValueError, "axis"),
    (lambda x: F.fake_quantize_learnable_per_channel_affine(
        x, jnp.ones(2), jnp.zeros(2), 1, 0, 255), ValueError, "scale"),
])
def test_bad_input_raises_naming_the_argument(call, error, argument):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(error, match=argument):
        call(x)


def test_torch_rejects_the_same_ranges_and_zero_points():
    """The checks jaxq shares with torch raise in torch too."""
    x = torch.ones(2, 3)
    with pytest.raises(RuntimeError, match="quant_min"):
        torch.fake_quantize_per_tensor_affine(x, 0.1, 0, 5, 3)
    with pytest.raises(RuntimeError, match="zero_point"):
        torch.fake_quantize_per_tensor_affine(x, 0.1, 300, 0, 255)
    with pytest.raises(RuntimeError, match="zero-point"):
        torch.fake_quantize_per_channel_affine(x, torch.ones(3),
                                               torch.zeros(2, dtype=torch.int32), 1, 0, 255)


def test_learnable_gradient_needs_range_with_zero():
    x = jnp.ones((2, 3))
    y = F.fake_quantize_learnable_per_tensor_affine(x, jnp.array([0.1]), jnp.array([6.0]),
                                                    5, 10)
    torch_y = torch._fake_quantize_learnable_per_tensor_affine(
        torch.ones(2, 3), torch.tensor([0.1]), torch.tensor([6.0]), 5, 10, 1.0)
    assert_same(y, torch_y)
    with pytest.raises(ValueError, match="quant_min <= 0 <= quant_max"):
        jax.grad(lambda v: F.fake_quantize_learnable_per_tensor_affine(
            v, jnp.array([0.1]), jnp.array([6.0]), 5, 10).sum())(x)
    with pytest.raises(ValueError, match="quant_min <= 0 <= quant_max"):
        jax.grad(lambda v: F.fake_quantize_learnable_per_channel_affine(
            v, jnp.full((3,), 0.1), jnp.full((3,), 6.0), 1, 5, 10).sum())(x)


def test_scale_check_is_skipped_under_jit():
    """A traced scale cannot be inspected; jit still works with a valid one."""
    f = jax.jit(lambda s: F.fake_quantize_per_tensor_affine(jnp.ones(3), s, 0, 0, 255))
    np.testing.assert_array_equal(f(jnp.float32(0.5)), np.ones(3))


def test_public_names():
    assert F._fake_quantize_learnable_per_tensor_affine is (
        F.fake_quantize_learnable_per_tensor_affine)
    assert F._fake_quantize_learnable_per_channel_affine is (
        F.fake_quantize_learnable_per_channel_affine)
