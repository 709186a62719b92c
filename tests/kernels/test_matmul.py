"""quantized_matmul on every CPU backend against torch's x86 kernels and exact integers."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxq.core.affine import choose_qparams_affine, quantize_affine  # noqa: E402
from jaxq.core.granularity import MappingType  # noqa: E402
from jaxq.kernels import DynamicQuantization, pack_weight, quantized_matmul  # noqa: E402
from tests.kernels import torch_ref  # noqa: E402
from tests.kernels.backends import cpu_backends  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*quantized tensor creation:UserWarning")
BACKENDS = cpu_backends()
# (M, K, N): M = 1, odd sizes, K not a multiple of 4 or 64, K = 1.
SHAPES = [(1, 131, 67), (3, 1, 5), (5, 250, 33), (64, 96, 130)]


@functools.lru_cache(maxsize=None)
def _jitted(backend: str, **static):
    """One jitted function per (backend, static options): compiled once per shape."""
    def run(x, w, x_scale, x_zp, bias, out_scale, out_zp):
        return quantized_matmul(x, w, x_scale, x_zp, bias=bias, out_scale=out_scale,
                                out_zero_point=out_zp, backend=backend, **static)
    return jax.jit(run)


def call(backend, x, w, x_scale=None, x_zp=None, bias=None, out_scale=None, out_zp=None,
         **static):
    static = {k: v for k, v in static.items()}
    return np.asarray(_jitted(backend, **static)(x, w, x_scale, x_zp, bias, out_scale,
                                                 out_zp))


def _exact_acc(xq, zx, wq, zw):
    zx = np.asarray(zx, np.int64)
    zx = zx[:, None] if zx.ndim == 1 else zx
    zw = np.zeros(wq.shape[0], np.int64) if zw is None else np.asarray(zw, np.int64)
    zw = zw[:, None] if zw.ndim == 1 else zw
    return (xq.astype(np.int64) - zx) @ (wq.astype(np.int64) - zw).T


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(len(SHAPES)))
def test_dynamic_matches_torch_linear_dynamic(rng, backend, case):
    m, k, n = SHAPES[case]
    per_channel, relu = case % 2 == 0, case in (1, 2)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.2, 3) + rng.uniform(-1, 1)
         ).astype(np.float32)
    values, scale, zp, wq = torch_ref.random_int_weight(rng, n, k, per_channel)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = torch_ref.dynamic_linear(x, wq, bias, relu=relu)
    w = pack_weight(values, scale, zp)
    got = call(backend, x, w, bias=bias, relu=relu, dynamic=DynamicQuantization())
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_without_bias_and_edge_ranges(rng, backend):
    """All-positive, all-negative, constant and tiny-range inputs (small-scale branch)."""
    values, scale, zp, wq = torch_ref.random_int_weight(rng, 24, 40, True)
    w = pack_weight(values, scale, zp)
    base = rng.standard_normal((3, 40)).astype(np.float32)
    for x in [np.abs(base) + 0.5, -np.abs(base) - 0.1, np.full((3, 40), 0.7, np.float32),
              np.zeros((3, 40), np.float32), base * 1e-4, np.abs(base) * 1e-5,
              np.linspace(-1, 1, 120, dtype=np.float32).reshape(3, 40)]:
        x = x.astype(np.float32)
        expected = torch_ref.dynamic_linear(x, wq, None)
        got = call(backend, x, w, dynamic=DynamicQuantization())
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(len(SHAPES) + 1))
def test_static_requantized_matches_torch_linear(rng, backend, case):
    m, k, n = SHAPES[case % len(SHAPES)]
    per_channel, affine = [(False, False), (True, True), (False, True)][case % 3]
    relu = case % 2 == 0
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    x_scale, x_zp = np.float32(rng.uniform(0.01, 0.05)), np.int32(rng.integers(0, 256))
    values, scale, zp, wq = torch_ref.random_int_weight(rng, n, k, per_channel, affine)
    bias = (rng.standard_normal(n) * 2).astype(np.float32)
    out_scale = np.float32(rng.uniform(0.02, 0.3) * np.sqrt(k) / 8)
    out_zp = np.int32(rng.integers(0, 256))
    expected = torch_ref.static_linear(xq, x_scale, x_zp, wq, bias, out_scale, out_zp, relu)
    w = pack_weight(values, scale, zp)
    got = call(backend, xq, w, x_scale, x_zp, bias, out_scale, out_zp, relu=relu,
               out_dtype="quint8")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_dtype,per_token,affine,shape", [
    (np.uint8, False, False, (1, 131, 67)), (np.int8, True, True, (33, 256, 130)),
    (np.uint8, True, True, (1, 131, 67)), (np.int8, False, True, (33, 256, 130))])
def test_int32_accumulators_are_exact(rng, backend, x_dtype, per_token, affine, shape):
    m, k, n = shape
    info = np.iinfo(x_dtype)
    xq = rng.integers(info.min, info.max + 1, (m, k)).astype(x_dtype)
    zx = (rng.integers(info.min, info.max + 1, m) if per_token
          else rng.integers(info.min, info.max + 1)).astype(np.int32)
    sx = np.asarray(rng.uniform(0.01, 0.1, m) if per_token else rng.uniform(0.01, 0.1),
                    np.float32)
    values, scale, zp, _ = torch_ref.random_int_weight(rng, n, k, True, affine)
    w = pack_weight(values, scale, zp)
    got = call(backend, xq, w, sx, zx, out_dtype="int32")
    np.testing.assert_array_equal(got, _exact_acc(xq, zx, values, zp))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("per_token", [False, True])
def test_static_float_output_epilogue(rng, backend, per_token):
    """y = fma(float(acc), sx * sw, bias): float32 product, one rounding of the sum."""
    m, k, n = 6, 83, 37
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    zx = np.asarray(rng.integers(0, 256, m if per_token else ()), np.int32)
    sx = np.asarray(rng.uniform(0.01, 0.1, m if per_token else ()), np.float32)
    values, scale, zp, _ = torch_ref.random_int_weight(rng, n, k, True, True)
    bias = rng.standard_normal(n).astype(np.float32)
    w = pack_weight(values, scale, zp)
    got = call(backend, xq, w, sx, zx, bias, relu=True)
    acc = _exact_acc(xq, zx, values, zp).astype(np.float32)
    mult = (sx[:, None] if per_token else sx) * scale
    # float64 holds the float32 product exactly; its sum with the bias rounds once more
    # to float32 (double rounding is possible only at ~2**-29 odds per element).
    expected = np.maximum((acc.astype(np.float64) * mult + bias).astype(np.float32), 0)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("x_dtype", ["qint8", "quint8"])
def test_dynamic_per_token_matches_core_quantize(rng, backend, symmetric, x_dtype):
    """Per-token dynamic activations: torchao's choose_qparams_affine / quantize_affine."""
    m, k, n = 7, 90, 20
    x = rng.standard_normal((m, k)).astype(np.float32) * rng.uniform(0.1, 4, (m, 1)
                                                                     ).astype(np.float32)
    values, scale, _, _ = torch_ref.random_int_weight(rng, n, k, True)
    w = pack_weight(values, scale)
    config = DynamicQuantization("per_token", x_dtype, reduce_range=False,
                                 symmetric=symmetric)
    got = call(backend, x, w, dynamic=config)
    mapping = MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC
    sx, zx = choose_qparams_affine(jnp.asarray(x), mapping, (1, k), config.dtype,
                                   eps=float(np.finfo(np.float32).eps),
                                   scale_dtype=jnp.float32)
    xq = np.asarray(quantize_affine(jnp.asarray(x), (1, k), sx, zx, config.dtype))
    acc = _exact_acc(xq, np.asarray(zx).reshape(m), values, None).astype(np.float32)
    expected = (acc * (np.asarray(sx).reshape(m, 1) * scale)).astype(np.float32)
    np.testing.assert_array_equal(got, expected)


def _weight_only_reference(x, values, scale, zp, group):
    n, k = values.shape
    zp = np.zeros_like(scale, np.int64) if zp is None else zp.astype(np.int64)
    if group is None:
        w = (values.astype(np.int64) - zp.reshape(n, 1)) * scale.reshape(n, 1).astype(
            np.float64)
    else:
        v = values.astype(np.int64).reshape(n, k // group, group)
        w = ((v - zp[:, :, None]) * scale[:, :, None].astype(np.float64)).reshape(n, k)
    return x.astype(np.float64) @ w.T


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m,bits,group,signed", [
    (1, 8, None, True), (5, 8, None, False), (3, 8, 32, True), (1, 4, 32, False),
    (5, 4, 64, True), (1, 4, None, True)])
def test_weight_only(rng, backend, m, bits, group, signed):
    n, k = 70, 192
    lo, hi = {(8, True): (-128, 127), (8, False): (0, 255), (4, True): (-8, 7),
              (4, False): (0, 15)}[(bits, signed)]
    values = rng.integers(lo, hi + 1, (n, k)).astype(np.int8 if signed else np.uint8)
    shape = (n,) if group is None else (n, k // group)
    scale = rng.uniform(0.01, 0.1, shape).astype(np.float32)
    zp = None if signed and bits == 8 else rng.integers(lo, hi + 1, shape).astype(np.int32)
    w = pack_weight(values, scale, zp, bits=bits)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    if backend != "xla" and bits == 8 and group is not None:
        pytest.skip("group-wise 8-bit weights run on the XLA path")
    got = call(backend, x, w, bias=bias)
    expected = _weight_only_reference(x, values, scale, zp, group) + bias
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_reference_on_random_shapes(rng, backend):
    """Odd shapes, leading batch dims, every epilogue: identical to the XLA reference."""
    for _ in range(3):
        lead = tuple(int(v) for v in rng.integers(1, 4, rng.integers(1, 3)))
        k, n = int(rng.integers(1, 300)), int(rng.integers(1, 150))
        values, scale, zp, _ = torch_ref.random_int_weight(rng, n, k, True, True)
        w = pack_weight(values, scale, zp)
        x = rng.standard_normal(lead + (k,)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        for kwargs in [dict(dynamic=DynamicQuantization()),
                       dict(dynamic=DynamicQuantization(reduce_range=False), relu=True),
                       dict(dynamic=DynamicQuantization("per_token", "qint8", False, True))]:
            ref = call("xla", x, w, bias=bias, **kwargs)
            got = call(backend, x, w, bias=bias, **kwargs)
            assert got.shape == lead + (n,)
            np.testing.assert_array_equal(got, ref)
