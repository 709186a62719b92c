"""The pallas_gpu backend through jaxq.kernels.quantized_matmul, against the XLA reference.

The real backend is registered for platform ``cuda``; here a twin registered for ``cpu``
runs the same code with the kernels in interpret mode, forced with ``backend=``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq.core.dtypes import qint8, quint8
from jaxq.kernels import (
    Backend, DynamicQuantization, pack_weight, quantized_matmul, register_backend,
    registered_backends, unregister_backend)
from jaxq.kernels.gpu import backend as gpu_backend

TWIN = "pallas_gpu_interpret_test"


@pytest.fixture(scope="module", autouse=True)
def interpret_twin():
    register_backend(Backend(
        name=TWIN, platform="cpu",
        matmul=functools.partial(gpu_backend.pallas_matmul, interpret=True),
        supports=gpu_backend.gpu_supports, priority=-100))
    yield
    unregister_backend(TWIN)


def test_registered_for_cuda():
    backend = registered_backends()[gpu_backend.BACKEND_NAME]
    assert backend.platform == "cuda" and backend.priority > 0


def _both(x, weight, **kw):
    got = quantized_matmul(x, weight, backend=TWIN, **kw)
    expected = quantized_matmul(x, weight, backend="xla", **kw)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    return np.asarray(got.astype(jnp.float32)), np.asarray(expected.astype(jnp.float32))


def _w8(rng, n, k, zero_point=False, per_channel=True):
    q = jnp.asarray(rng.integers(-128, 128, (n, k)), jnp.int8)
    scale = jnp.asarray(rng.uniform(0.002, 0.01, n if per_channel else ()), jnp.float32)
    zp = jnp.asarray(rng.integers(-10, 10, n), jnp.int32) if zero_point else None
    return pack_weight(q, scale, zp, layout="nk")


@pytest.mark.parametrize("case", [
    dict(x_dtype=jnp.uint8, x_scale=0.05, x_zp=128, out=None),
    dict(x_dtype=jnp.int8, x_scale="per_token", x_zp=None, out=jnp.bfloat16, w_zp=True),
    dict(x_dtype=jnp.uint8, x_scale=0.05, x_zp=120, out=jnp.uint8, relu=True),
    dict(x_dtype=jnp.int8, x_scale=0.05, x_zp=3, out=jnp.int32, bias=False),
], ids=["u8-f32", "s8-pertoken-bf16-wzp", "u8-requant-relu", "s8-int32"])
def test_static_bit_exact(rng, case):
    m, k, n = 3, 40, 24
    lo, hi = (0, 256) if case["x_dtype"] == jnp.uint8 else (-128, 128)
    x = jnp.asarray(rng.integers(lo, hi, (m, k)), case["x_dtype"])
    x_scale = (jnp.asarray(rng.uniform(0.01, 0.1, m), jnp.float32)
               if case["x_scale"] == "per_token" else case["x_scale"])
    weight = _w8(rng, n, k, zero_point=case.get("w_zp", False))
    kw = dict(x_scale=x_scale, x_zero_point=case["x_zp"], relu=case.get("relu", False))
    if case.get("bias", True):
        kw["bias"] = jnp.asarray(rng.normal(size=n), jnp.float32)
    if case["out"] is not None:
        kw["out_dtype"] = case["out"]
    if case["out"] == jnp.uint8:
        kw.update(out_scale=0.3, out_zero_point=10)
    got, expected = _both(x, weight, **kw)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dynamic", [
    DynamicQuantization(),                                          # torch x86 per-tensor
    DynamicQuantization(granularity="per_token", dtype=qint8, reduce_range=False,
                        symmetric=True),                            # torchao W8A8
    DynamicQuantization(granularity="per_token", dtype=quint8),     # fused kernel, uint8
], ids=["per-tensor-quint8", "per-token-int8-sym", "per-token-quint8"])
def test_dynamic_bit_exact(rng, dynamic):
    x = jnp.asarray(rng.normal(size=(2, 3, 40)), jnp.float32)
    weight = _w8(rng, 24, 40)
    bias = jnp.asarray(rng.normal(size=24), jnp.float32)
    got, expected = _both(x, weight, dynamic=dynamic, bias=bias, relu=True)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("bits,group,zero_point,m", [
    (8, None, False, 1), (8, None, True, 3), (4, 32, True, 1), (4, 64, False, 5)])
def test_weight_only_matches(rng, bits, group, zero_point, m):
    n, k = 24, 128
    if bits == 8:
        q = jnp.asarray(rng.integers(-128, 128, (n, k)), jnp.int8)
        scale = jnp.asarray(rng.uniform(0.01, 0.1, n), jnp.float32)
        zp = jnp.asarray(rng.integers(-5, 5, n), jnp.int32) if zero_point else None
    else:
        q = jnp.asarray(rng.integers(-8, 8, (n, k)), jnp.int8)
        scale = jnp.asarray(rng.uniform(0.01, 0.1, (n, k // group)), jnp.float32)
        zp = jnp.asarray(rng.integers(-2, 2, (n, k // group)), jnp.int32) if zero_point else None
    # The GPU kernels read the portable layouts (the default here is the native CPU one).
    weight = pack_weight(q, scale, zp, bits=bits, layout="nk" if bits == 8 else "nk4")
    x = jnp.asarray(rng.normal(size=(m, k)), jnp.float32)
    got, expected = _both(x, weight, bias=jnp.ones(n, jnp.float32), relu=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_supports_routes_large_weight_only_to_xla(rng):
    weight = _w8(rng, 24, 40)
    x = jnp.zeros((65, 40), jnp.float32)
    with pytest.raises(ValueError, match="does not support"):
        quantized_matmul(x, weight, backend=TWIN)


def test_entry_point_under_jit_uses_reference_on_cpu(rng):
    weight = _w8(rng, 24, 40)
    x = jnp.asarray(rng.normal(size=(2, 40)), jnp.float32)
    f = jax.jit(lambda x, w: quantized_matmul(x, w, dynamic=DynamicQuantization()))
    np.testing.assert_array_equal(
        np.asarray(f(x, weight)),
        np.asarray(quantized_matmul(x, weight, dynamic=DynamicQuantization(), backend="xla")))
