"""quantized_matmul's contract: transforms, no recompilation, dispatch and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq.kernels import (
    Backend, DynamicQuantization, pack_weight, quantized_matmul, register_backend,
    registered_backends, select_backends, unregister_backend)
from jaxq.kernels.xla import xla_matmul
from tests.kernels.backends import cpu_backends

BACKENDS = cpu_backends()


def _weight(rng, n=24, k=40, bits=8, group=None):
    lo, hi = (-128, 127) if bits == 8 else (-8, 7)
    shape = (n,) if group is None else (n, k // group)
    return pack_weight(rng.integers(lo, hi + 1, (n, k)).astype(np.int8),
                       rng.uniform(0.01, 0.05, shape).astype(np.float32), bits=bits)


def _count_compiles(fn, *calls):
    """Number of traces of ``fn`` over the given argument tuples."""
    traces = []

    def traced(*args):
        traces.append(1)
        return fn(*args)

    jitted = jax.jit(traced)
    for args in calls:
        jax.block_until_ready(jitted(*args))
    return len(traces)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jit_does_not_recompile(rng, backend):
    w = _weight(rng)
    fn = lambda x, w: quantized_matmul(x, w, dynamic=DynamicQuantization(), backend=backend)
    x1, x2 = (rng.standard_normal((3, 40)).astype(np.float32) for _ in range(2))
    assert _count_compiles(fn, (x1, w), (x2, w), (x1 * 5, w)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["dynamic", "per_token", "static", "weight_only4"])
def test_vmap_equals_per_example_calls(rng, backend, mode):
    """vmap keeps per-example semantics (dynamic per-tensor qparams per example)."""
    batch, m, k, n = 3, 5, 40, 24
    if mode == "weight_only4":
        w = _weight(rng, n, k, bits=4, group=8)
        fn = lambda x: quantized_matmul(x, w, backend=backend)
        xs = rng.standard_normal((batch, m, k)).astype(np.float32)
    elif mode == "static":
        w = _weight(rng, n, k)
        xs = rng.integers(0, 256, (batch, m, k)).astype(np.uint8)
        scales = rng.uniform(0.01, 0.1, batch).astype(np.float32)
        fn = lambda x, s: quantized_matmul(x, w, s, jnp.int32(7), out_dtype="quint8",
                                           out_scale=0.3, out_zero_point=9, backend=backend)
    else:
        w = _weight(rng, n, k)
        config = (DynamicQuantization() if mode == "dynamic"
                  else DynamicQuantization("per_token", "qint8", False, True))
        fn = lambda x: quantized_matmul(x, w, dynamic=config, backend=backend)
        # Very different ranges per example: batch-wide qparams would be wrong.
        xs = (rng.standard_normal((batch, m, k)) * np.array([0.1, 1, 10])[:, None, None]
              ).astype(np.float32)
    if mode == "static":
        batched = jax.jit(jax.vmap(fn))(xs, scales)
        single = [jax.jit(fn)(xs[i], scales[i]) for i in range(batch)]
    else:
        batched = jax.jit(jax.vmap(fn))(xs)
        single = [jax.jit(fn)(xs[i]) for i in range(batch)]
    if mode == "weight_only4":  # float accumulation: XLA may reorder a batched dot
        np.testing.assert_allclose(np.asarray(batched), np.stack(single), rtol=1e-5,
                                   atol=1e-5)
    else:
        np.testing.assert_array_equal(np.asarray(batched), np.stack(single))


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_over_weights_and_nested(rng, backend):
    ws = [_weight(rng) for _ in range(2)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *ws)
    x = rng.standard_normal((2, 3, 40)).astype(np.float32)
    config = DynamicQuantization()
    fn = jax.jit(lambda x, w: quantized_matmul(x, w, dynamic=config, backend=backend))
    got = jax.jit(jax.vmap(fn))(x, stacked)
    expected = np.stack([fn(x[i], ws[i]) for i in range(2)])
    np.testing.assert_array_equal(np.asarray(got), expected)
    nested = jax.jit(jax.vmap(jax.vmap(lambda r: fn(r, ws[0]))))(x[:, :, None, :])
    rows = np.stack([[fn(x[i, j][None], ws[0]) for j in range(3)] for i in range(2)])
    np.testing.assert_array_equal(np.asarray(nested), rows)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_decode_loop(rng, backend):
    """A decode loop in lax.scan: same results as a Python loop, one compilation."""
    w8, w4 = _weight(rng, 40, 40), _weight(rng, 40, 40, bits=4, group=8)
    config = DynamicQuantization()

    def step(h, _):
        h = quantized_matmul(h, w8, dynamic=config, backend=backend)
        h = jnp.tanh(quantized_matmul(h, w4, backend=backend))
        return h, h

    h0 = rng.standard_normal((1, 40)).astype(np.float32)
    _, ys = jax.jit(lambda h: jax.lax.scan(step, h, None, length=5))(h0)
    h, expected = h0, []
    jitted_step = jax.jit(step)
    for _ in range(5):
        h, _ = jitted_step(h, None)
        expected.append(h)
    np.testing.assert_array_equal(np.asarray(ys), np.stack(expected))


def test_bad_inputs_raise_clear_errors(rng):
    w = _weight(rng)
    x = rng.standard_normal((2, 40)).astype(np.float32)
    xq = rng.integers(0, 255, (2, 40)).astype(np.uint8)
    cases = [
        (lambda: quantized_matmul(x[:, :39], w), ValueError, "x must have shape"),
        (lambda: quantized_matmul(x, np.ones((24, 40))), TypeError, "PackedWeight"),
        (lambda: quantized_matmul(x.astype(np.int32), w), TypeError, "x must be uint8"),
        (lambda: quantized_matmul(xq, w), ValueError, "x_scale is required"),
        (lambda: quantized_matmul(xq, w, np.ones(3, np.float32)), ValueError, "x_scale"),
        (lambda: quantized_matmul(xq, w, 0.1, 300), ValueError, "x_zero_point must lie"),
        (lambda: quantized_matmul(xq, w, 0.1, 1.5), TypeError, "x_zero_point"),
        (lambda: quantized_matmul(xq, w, -0.1), ValueError, "positive"),
        (lambda: quantized_matmul(x, w, 0.1), ValueError, "x_scale"),
        (lambda: quantized_matmul(x, w, bias=np.ones(5, np.float32)), ValueError, "bias"),
        (lambda: quantized_matmul(xq, w, 0.1, out_dtype="quint8"), ValueError, "out_scale"),
        (lambda: quantized_matmul(xq, w, 0.1, out_dtype="quint8", out_scale=0.1,
                                  out_zero_point=-3), ValueError, "out_zero_point"),
        (lambda: quantized_matmul(x, w, out_dtype="quint8", out_scale=0.1), ValueError,
         "quantized activations"),
        (lambda: quantized_matmul(xq, w, 0.1, out_dtype=jnp.int16), ValueError,
         "out_dtype"),
        (lambda: quantized_matmul(x, _weight(rng, bits=4, group=8),
                                  dynamic=DynamicQuantization()), ValueError, "weight-only"),
        (lambda: quantized_matmul(x, w, dynamic="yes"), TypeError, "DynamicQuantization"),
        (lambda: quantized_matmul(x, w, backend="nope"), ValueError, "not registered"),
        (lambda: quantized_matmul(xq, w, 0.1, out_dtype="int32", relu=True), ValueError,
         "raw accumulators"),
    ]
    for fn, error, match in cases:
        with pytest.raises(error, match=match):
            fn()


def test_pack_weight_validates(rng):
    q = rng.integers(-128, 128, (4, 8)).astype(np.int8)
    with pytest.raises(TypeError, match="integer"):
        pack_weight(q.astype(np.float32), 0.1)
    with pytest.raises(ValueError, match="shape"):
        pack_weight(q[0], 0.1)
    with pytest.raises(ValueError, match="scale must have shape"):
        pack_weight(q, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="positive"):
        pack_weight(q, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="must lie in"):
        pack_weight(q, np.ones((4, 2), np.float32), bits=4)
    with pytest.raises(ValueError, match="groups do not divide"):
        pack_weight(q, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="bits"):
        pack_weight(q, 0.1, bits=2)
    with pytest.raises(ValueError, match="layout"):
        pack_weight(q, 0.1, layout="nope")
    with pytest.raises(TypeError, match="zero_point"):
        pack_weight(q, 0.1, 0.5)


def test_pack_weight_is_portable_across_layouts(rng):
    """Every registered layout of a weight gives the same reference results."""
    from jaxq.kernels import weight_values
    from jaxq.kernels.weights import weight_layouts
    q8 = rng.integers(-128, 128, (19, 37)).astype(np.int8)
    q4 = rng.integers(-8, 8, (19, 36)).astype(np.int8)
    for name, layout in weight_layouts().items():
        q = q8 if layout.bits == 8 else q4
        scale = np.full((19, 36 // 12), 0.1, np.float32) if layout.bits == 4 else 0.1
        w = pack_weight(q, scale, bits=layout.bits, layout=name)
        expected = q if layout.bits == 8 else q + 8
        np.testing.assert_array_equal(np.asarray(weight_values(w)), expected)


def test_registry_dispatches_per_platform(rng):
    calls = []

    def fake(problem, args):
        calls.append(problem)
        return xla_matmul(problem, args) + 1.0

    register_backend(Backend("fake_cpu", "cpu", matmul=fake, priority=100,
                             supports=lambda p: p.m == 3))
    try:
        w = _weight(rng)
        x = rng.standard_normal((3, 40)).astype(np.float32)
        ref = quantized_matmul(x, w, backend="xla")
        np.testing.assert_array_equal(np.asarray(jax.jit(quantized_matmul)(x, w)), ref + 1)
        # The predicate is static: other shapes fall through to the next backend.
        x2 = rng.standard_normal((2, 40)).astype(np.float32)
        problem_backends = select_backends("matmul", calls[-1])
        assert problem_backends["cpu"].name == "fake_cpu"
        np.testing.assert_array_equal(np.asarray(quantized_matmul(x2, w, backend="xla")),
                                      np.asarray(quantized_matmul(x2, w, backend="xla")))
        with pytest.raises(ValueError, match="does not support"):
            quantized_matmul(x2, w, backend="fake_cpu")
        with pytest.raises(ValueError, match="reserved"):
            register_backend(Backend("xla", "cpu", matmul=fake))
    finally:
        unregister_backend("fake_cpu")
    assert "fake_cpu" not in registered_backends()
