"""The native CPU backend itself: AVX2 path, bad buffers, threads, fallback, sanitizer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq.kernels import DynamicQuantization, pack_weight, quantized_matmul
from jaxq.kernels.weights import weight_values
from tests.kernels.backends import native_available

REPO = Path(__file__).resolve().parents[2]
needs_native = pytest.mark.skipif(not native_available(),
                                  reason="native CPU kernel unavailable")

# Odd shapes through every native path, compared with the XLA reference (run in-process
# and in the sanitizer subprocess).
CHECK_SCRIPT = textwrap.dedent("""
    import numpy as np, jax, jax.numpy as jnp
    from jaxq.kernels import DynamicQuantization, pack_weight, quantized_matmul
    rng = np.random.default_rng(1)
    checked = 0
    for m, k, n in [(1, 1, 1), (1, 7, 17), (2, 130, 65), (13, 64, 129)]:
        q = rng.integers(-128, 128, (n, k)).astype(np.int8)
        w = pack_weight(q, rng.uniform(.01, .02, n).astype(np.float32),
                        rng.integers(-4, 5, n).astype(np.int32))
        x = rng.standard_normal((m, k)).astype(np.float32)
        xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
        xs = rng.integers(-128, 128, (m, k)).astype(np.int8)
        b = rng.standard_normal(n).astype(np.float32)
        calls = [
            lambda be: quantized_matmul(x, w, bias=b, dynamic=DynamicQuantization(), backend=be),
            lambda be: quantized_matmul(x, w, dynamic=DynamicQuantization(
                "per_token", "qint8", False, True), relu=True, backend=be),
            lambda be: quantized_matmul(xq, w, 0.05, 7, out_dtype="int32", backend=be),
            lambda be: quantized_matmul(xs, w, np.full(m, .05, np.float32),
                                        np.full(m, -3, np.int32), bias=b, backend=be),
            lambda be: quantized_matmul(xq, w, 0.05, 7, bias=b, relu=True, out_dtype="quint8",
                                        out_scale=0.2, out_zero_point=10, backend=be),
            lambda be: quantized_matmul(x, w, bias=b, backend=be),
        ]
        if k % 2 == 0:
            q4 = rng.integers(0, 16, (n, k)).astype(np.uint8)
            g = 2 if k % 4 else 4
            w4 = pack_weight(q4, rng.uniform(.01, .02, (n, k // g)).astype(np.float32),
                             rng.integers(0, 16, (n, k // g)).astype(np.int32), bits=4)
            calls.append(lambda be: quantized_matmul(x, w4, bias=b, backend=be))
        for i, call in enumerate(calls):
            ref = np.asarray(jax.jit(lambda: call("xla"))())
            got = np.asarray(jax.jit(lambda: call("cpu_native"))())
            if i >= 5:
                np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
            else:
                np.testing.assert_array_equal(got, ref)
            checked += 1
    from jaxq.kernels import pack_conv_weight, quantized_conv2d
    for x_dtype, pads, stride in [(np.uint8, ((1, 2), (0, 1)), 1), (np.int8, 0, 2)]:
        info = np.iinfo(x_dtype)
        xc = rng.integers(info.min, info.max + 1, (2, 5, 6, 3)).astype(x_dtype)
        wc = pack_conv_weight(rng.integers(-128, 128, (3, 2, 3, 17)).astype(np.int8),
                              rng.uniform(.01, .02, 17).astype(np.float32),
                              rng.integers(-3, 4, 17).astype(np.int32))
        conv = lambda be: quantized_conv2d(xc, wc, 0.05, 1, stride=stride, padding=pads,
                                           bias=np.ones(17, np.float32), out_dtype="quint8",
                                           out_scale=0.3, out_zero_point=5, backend=be)
        np.testing.assert_array_equal(np.asarray(jax.jit(lambda: conv("cpu_native"))()),
                                      np.asarray(jax.jit(lambda: conv("xla"))()))
        checked += 1
    print("CHECKED", checked)
    assert checked == 28
""")


@needs_native
def test_avx2_path_matches_reference():
    from jaxq.kernels import cpu
    assert cpu.force_isa("avx2") == "avx2"
    try:
        namespace: dict = {}
        exec(compile(CHECK_SCRIPT, "check", "exec"), namespace)
        assert namespace["checked"] == 28
    finally:
        cpu.force_isa(None)
    assert cpu.isa() == "avx512_vnni" or cpu.isa() == "avx2"


@needs_native
def test_one_thread_gives_identical_results(rng):
    from jaxq.kernels import cpu
    w = pack_weight(rng.integers(-128, 128, (300, 200)).astype(np.int8),
                    rng.uniform(.01, .02, 300).astype(np.float32))
    x = rng.standard_normal((50, 200)).astype(np.float32)
    fn = jax.jit(lambda x: quantized_matmul(x, w, dynamic=DynamicQuantization()))
    before = np.asarray(fn(x))
    threads = cpu.num_threads()
    try:
        assert cpu.set_num_threads(1) == 1
        np.testing.assert_array_equal(np.asarray(fn(x)), before)
        # Repeated resizing between calls (an earlier private pool could lose a job
        # submitted before its worker started, and hang).
        for _ in range(5):
            assert cpu.set_num_threads(2) == 2
            np.testing.assert_array_equal(np.asarray(fn(x)), before)
    finally:
        cpu.set_num_threads(threads)


@needs_native
@pytest.mark.parametrize("granularity", ["per_tensor", "per_token"])
def test_dynamic_quantization_of_large_batches_matches_reference(rng, granularity):
    """Batches large enough that the activation range and quantization run in parallel
    (slices of rows, or whole tokens per task) give the reference's bits."""
    k, n = 300, 70
    w = pack_weight(rng.integers(-128, 128, (n, k)).astype(np.int8),
                    rng.uniform(.01, .02, n).astype(np.float32))
    config = DynamicQuantization(granularity)
    for m in (257, 1000):
        x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10, (m, 1))).astype(np.float32)
        got = jax.jit(lambda x: quantized_matmul(x, w, dynamic=config,
                                                 backend="cpu_native"))(x)
        ref = jax.jit(lambda x: quantized_matmul(x, w, dynamic=config, backend="xla"))(x)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


@needs_native
@pytest.mark.parametrize("granularity,dtype", [("per_tensor", "quint8"),
                                               ("per_token", "qint8"),
                                               ("per_token", "quint8")])
def test_dynamic_quantization_blocks_and_special_values_match_reference(rng, granularity,
                                                                        dtype):
    """The quantizer's 64-value blocks and 16-value tail (K around multiples of 64), row
    sums for weight zero points, and NaN / inf activations: the reference's bits."""
    config = DynamicQuantization(granularity, dtype, reduce_range=dtype == "quint8")
    for k in (63, 64, 65, 128, 200):
        n = 33
        w = pack_weight(rng.integers(-128, 128, (n, k)).astype(np.int8),
                        rng.uniform(.01, .02, n).astype(np.float32),
                        rng.integers(-5, 6, n).astype(np.int32))
        x = (rng.standard_normal((6, k)) * 3).astype(np.float32)
        if granularity == "per_token":  # one special value per row, the other rows finite
            x[1, k // 2] = np.nan
            x[2, k - 1] = np.inf
            x[3, 0] = -np.inf
        got = jax.jit(lambda x: quantized_matmul(x, w, dynamic=config,
                                                 backend="cpu_native"))(x)
        ref = jax.jit(lambda x: quantized_matmul(x, w, dynamic=config, backend="xla"))(x)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


@needs_native
def test_weights_backed_by_huge_pages_give_identical_results(rng):
    """Weights over 4 MiB are moved to 2 MiB pages on first use (where the OS allows it):
    the bytes the kernels read, and so every result, stay the same across calls."""
    n, k = 1100, 4096  # 4.5 MiB packed
    values = rng.integers(-128, 128, (n, k)).astype(np.int8)
    w = pack_weight(values, rng.uniform(.01, .02, n).astype(np.float32))
    x = rng.standard_normal((3, k)).astype(np.float32)
    config = DynamicQuantization()
    native = jax.jit(lambda x, w: quantized_matmul(x, w, dynamic=config, backend="cpu_native"))
    weight_only = jax.jit(lambda x, w: quantized_matmul(x, w, backend="cpu_native"))
    reference = jax.jit(lambda x, w: quantized_matmul(x, w, dynamic=config, backend="xla"))
    expected = np.asarray(reference(x, w))
    first_weight_only = np.asarray(weight_only(x, w))
    # float32 dot products: the XLA reference sums in another order
    np.testing.assert_allclose(
        first_weight_only, np.asarray(jax.jit(lambda x, w: quantized_matmul(
            x, w, backend="xla"))(x, w)), rtol=1e-4, atol=1e-3)
    for _ in range(2):
        np.testing.assert_array_equal(np.asarray(native(x, w)), expected)
        np.testing.assert_array_equal(np.asarray(weight_only(x, w)), first_weight_only)
    np.testing.assert_array_equal(np.asarray(weight_values(w)), values)


@needs_native
def test_concurrent_calls_give_identical_results(rng):
    """Calls from several threads at once: one holds jaxq's pool, the others fall back to
    XLA's; every result is the single-threaded one."""
    import threading
    w = pack_weight(rng.integers(-128, 128, (320, 256)).astype(np.int8),
                    rng.uniform(.01, .02, 320).astype(np.float32))
    xs = [rng.standard_normal((m, 256)).astype(np.float32) for m in (1, 7, 64)]
    fn = jax.jit(lambda x: quantized_matmul(x, w, dynamic=DynamicQuantization()))
    expected = [np.asarray(fn(x)) for x in xs]
    failures = []

    def hammer(seed):
        for step in range(40):
            i = (seed + step) % len(xs)
            if not np.array_equal(np.asarray(fn(xs[i])), expected[i]):
                failures.append((seed, step))

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []


@needs_native
def test_ffi_rejects_inconsistent_buffers():
    """A direct call with shapes that disagree with the attributes fails cleanly."""
    from jaxq.kernels.cpu import native
    x = jnp.zeros((2, 8), jnp.uint8)
    weight = jnp.zeros((16,), jnp.int8)  # needs round_up(8, 4) * round_up(20, 16) bytes
    f32, i32 = jnp.ones((1,), jnp.float32), jnp.zeros((0,), jnp.int32)
    call = jax.ffi.ffi_call(native.FFI_QGEMM, jax.ShapeDtypeStruct((2, 20), jnp.int32))
    with pytest.raises(Exception, match="jaxq native CPU kernel"):
        jax.block_until_ready(call(
            x, weight, f32, i32, jnp.zeros((20,), jnp.int32), f32, i32,
            jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.float32), i32,
            n=np.int64(20), k=np.int64(8), x_kind=np.int64(0), out_kind=np.int64(0),
            relu=np.int64(0), qlo=np.int64(0), qhi=np.int64(0), dyn_qmin=np.int64(0),
            dyn_qmax=np.int64(0), dyn_signed=np.int64(0), row_groups=np.int64(1)))


def _run(script: str, env_update: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_update)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout, check=False)


FORK_SCRIPT = textwrap.dedent("""
import ctypes, os, warnings
import numpy as np, jax
warnings.filterwarnings("ignore")
from jaxq.kernels import DynamicQuantization, pack_weight, quantized_matmul
from jaxq.kernels.weights import weight_values
from jaxq.kernels.cpu import native
lib = native.load()
rng = np.random.default_rng(0)
w = pack_weight(rng.integers(-128, 128, (512, 512)).astype(np.int8), np.float32(0.01))
x = rng.standard_normal((64, 512)).astype(np.float32)
f = jax.jit(lambda x: quantized_matmul(x, w, dynamic=DynamicQuantization()))
expected = np.asarray(f(x))  # the helper pool now has workers, still polling
used = ctypes.c_int(0)
assert lib.jaxq_cpu_pool_selftest(64, 1, ctypes.byref(used)) == 64
print("PARENT THREADS", used.value)
pid = os.fork()
if pid == 0:
    # XLA's own threads do not survive a fork, so the child checks jaxq's pool directly:
    # a fresh pool, no mutex left held by a parent worker, helpers started again.
    child_used = ctypes.c_int(0)
    ran = lib.jaxq_cpu_pool_selftest(64, 1, ctypes.byref(child_used))
    os._exit(0 if ran == 64 and child_used.value >= 1 else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert np.array_equal(np.asarray(f(x)), expected)
print("FORK OK")
""")


@needs_native
def test_forked_child_gets_a_fresh_helper_pool():
    """A child forked while the helper pool's workers poll gets a fresh pool (no
    deadlock); the parent's kernels and pool keep working."""
    result = _run(FORK_SCRIPT, {}, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "FORK OK" in result.stdout
    threads = int(result.stdout.split("PARENT THREADS")[1].split()[0])
    assert threads in (1, 2)  # the caller, and the helper when it claimed a task


def test_falls_back_to_xla_without_a_compiler(tmp_path):
    """No compiler, empty cache: one warning line, then the XLA path gives the results."""
    script = textwrap.dedent("""
        import warnings, numpy as np
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from jaxq.kernels import DynamicQuantization, pack_weight, quantized_matmul, cpu
            w = pack_weight(np.ones((3, 5), np.int8), np.float32(0.1))
            y = quantized_matmul(np.ones((2, 5), np.float32), w, dynamic=DynamicQuantization())
            y2 = quantized_matmul(np.ones((2, 5), np.float32), w, dynamic=DynamicQuantization())
        messages = [str(c.message) for c in caught if "jaxq" in str(c.message)]
        print("LAYOUT", w.spec.layout, "AVAILABLE", cpu.available(), "WARNINGS", len(messages))
        print("MESSAGE", messages[0].replace(chr(10), " ") if messages else "")
        print("VALUE", float(y[0, 0]))
    """)
    result = _run(script, {"CXX": "/nonexistent/c++", "PATH": "/nonexistent",
                           "JAXQ_CACHE_DIR": str(tmp_path), "JAXQ_DISABLE_NATIVE": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LAYOUT nk AVAILABLE False WARNINGS 1" in result.stdout, result.stdout
    assert "XLA path" in result.stdout
    assert "VALUE 0.5" in result.stdout


def _gcc_library(name: str) -> str | None:
    try:
        out = subprocess.run(["g++", f"-print-file-name={name}"], capture_output=True,
                             text=True, check=False).stdout.strip()
    except OSError:
        return None
    return out if out and os.path.isabs(out) and os.path.exists(out) else None


@pytest.mark.slow
@needs_native
def test_odd_shapes_under_address_sanitizer():
    """The bounds-checked (ASan + UBSan) build runs the odd shapes without a report."""
    libasan, libstdcxx = _gcc_library("libasan.so"), _gcc_library("libstdc++.so")
    if libasan is None or libstdcxx is None:
        pytest.skip("libasan / libstdc++ not found")
    from jaxq.kernels.cpu import build
    build.build("asan")  # compile outside the sanitized process
    result = _run(CHECK_SCRIPT, {
        # libstdc++ preloaded too: ASan must see its __cxa_throw (jaxlib throws at startup).
        "JAXQ_NATIVE_VARIANT": "asan", "LD_PRELOAD": f"{libasan} {libstdcxx}",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "CHECKED" in result.stdout
    assert "ERROR: AddressSanitizer" not in result.stderr
    assert "runtime error" not in result.stderr
