"""All GPU measurements of jaxq's Pallas int8 kernels, in one run, against XLA on the same card.

Run on a machine with an NVIDIA GPU (H100/H200), from the repository root:

    python benchmarks/gpu_int8.py [--quick] [--out results.md]

It prints one markdown table (device named in the header) with, per row, the Pallas time,
the baseline's time, their ratio (> 1 means Pallas is faster), the achieved rate and a
correctness check of the Pallas result against XLA on the same inputs. Rows:

1. int8 GEMM 8192^3 (int32 out): Pallas (table block + a few alternatives, best reported)
   vs XLA's int8 ``dot_general`` (cuBLASLt); TOPS and % of the card's dense int8 peak.
2. int8 GEMM at M = 16..256, K = N = 4096 / 8192 (int32 out) vs XLA int8.
3. Weight-only GEMV M = 1, K = N = 8192: int4 (group 128) and int8, vs XLA's bf16 GEMV; the
   achieved bandwidth vs a device-to-device copy on the same card; and decode M = 16 / 64.
4. W8A8-dynamic MLP block (d=4096, hidden=14336, ReLU) under jit vs its bf16 version at
   batch 256 / 1024 / 4096.

Timing: each op runs R times inside one jitted ``fori_loop`` (the input is threaded through
an ``optimization_barrier`` with the loop carry so XLA cannot hoist it), so per-call Python
dispatch is excluded for both sides alike; the median of 5 such runs is reported.
The whole script is budgeted to finish in under 4 minutes; rows that would exceed the
budget are skipped and say so. Every row is guarded: an error is printed in its row.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import types
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _import_kernels():
    """jaxq.kernels.gpu; if the jaxq package itself cannot import here (e.g. a dependency
    of another subpackage missing on the GPU image), load just the packages we need."""
    try:
        return importlib.import_module("jaxq.kernels.gpu")
    except ImportError as error:
        print(f"# note: 'import jaxq' failed ({error}); loading jaxq.kernels.gpu directly")
        for name in [m for m in sys.modules if m == "jaxq" or m.startswith("jaxq.")]:
            del sys.modules[name]
        for name, path in (("jaxq", "jaxq"), ("jaxq.kernels", "jaxq/kernels")):
            module = types.ModuleType(name)
            module.__path__ = [os.path.join(REPO, path)]
            sys.modules[name] = module
        return importlib.import_module("jaxq.kernels.gpu")


gpu = _import_kernels()
from jaxq.kernels.gpu.blocks import BlockConfig, int8_matmul_block  # noqa: E402

BUDGET_S = 225.0
START = time.perf_counter()
NT = (((1,), (1,)), ((), ()))

# Dense (non-sparse) int8 tensor-core peaks, TOPS, and HBM bandwidth, TB/s (datasheets).
PEAKS = {
    "H200": (1979.0, 4.8),
    "H100 NVL": (1671.0, 3.9),
    "H100 PCIe": (1513.0, 2.0),
    "H100": (1979.0, 3.35),  # SXM5 (device_kind "NVIDIA H100 80GB HBM3")
}


def card_peak(kind: str):
    for key, value in PEAKS.items():
        if key in kind:
            return value
    return (None, None)


def timed(fn, *args, target_s=0.05):
    """Median seconds per call of ``fn(*args)`` (``fn`` returns an array)."""

    def repeat(reps):
        def loop(args):
            def body(i, carry):
                args_b, _ = jax.lax.optimization_barrier((args, carry))
                out = fn(*args_b)
                return carry + jnp.ravel(out)[0].astype(jnp.float32)
            return jax.lax.fori_loop(0, reps, body, jnp.float32(0))
        return jax.jit(loop)

    probe = repeat(2)
    jax.block_until_ready(probe(args))  # compile
    t0 = time.perf_counter()
    jax.block_until_ready(probe(args))
    per_call = max((time.perf_counter() - t0) / 2, 2e-6)
    reps = int(min(max(target_s / per_call, 3), 2000))
    run = repeat(reps)
    jax.block_until_ready(run(args))
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(run(args))
        samples.append((time.perf_counter() - t0) / reps)
    return statistics.median(samples)


ROWS = []


def row(name, fn):
    if time.perf_counter() - START > BUDGET_S:
        ROWS.append((name, "skipped (time budget)", "", "", "", "", ""))
        return
    try:
        ROWS.append((name, *fn()))
    except Exception as error:  # noqa: BLE001 - a failing row must not hide the others.
        message = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
        ROWS.append((name, "ERROR", "", "", "", "", message))
    print(f"# {time.perf_counter() - START:6.1f}s  {ROWS[-1]}", flush=True)


def us(seconds):
    return f"{seconds * 1e6:.1f}"


def check_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return "exact" if np.array_equal(a, b) else f"MISMATCH ({int((a != b).sum())} elems)"


def check_close(a, b, rtol):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    err = float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))
    return f"rel {err:.1e}" + ("" if err <= rtol else " TOO LARGE")


def rand_int8(key, shape):
    return jax.random.randint(key, shape, -128, 128, jnp.int32).astype(jnp.int8)


def xla_int8(x, w):
    return jax.lax.dot_general(x, w, NT, preferred_element_type=jnp.int32)


def gemm_row(m, k, n, peak, alternatives=()):
    def measure():
        kx, kw = jax.random.split(jax.random.key(m * 7 + k))
        x, w = rand_int8(kx, (m, k)), rand_int8(kw, (n, k))
        t_xla = timed(xla_int8, x, w)
        best, best_block = None, None
        for index, block in enumerate((int8_matmul_block(m, n, k), *alternatives)):
            def pallas(x, w, block=block):
                return gpu.int8_matmul(x, w, out_dtype=jnp.int32, block=block)
            try:
                t = timed(pallas, x, w)
            except Exception:  # noqa: BLE001 - an alternative may not fit; keep the others.
                if index == 0:
                    raise
                continue
            if best is None or t < best:
                best, best_block = t, block
        ok = check_equal(gpu.int8_matmul(x, w, out_dtype=jnp.int32, block=best_block),
                         xla_int8(x, w))
        tops = 2 * m * n * k / best / 1e12
        rate = f"{tops:.0f} TOPS" + (f" ({100 * tops / peak:.0f}% peak)" if peak else "")
        b = best_block
        note = f"{ok}; block {b.block_m}x{b.block_n}x{b.block_k} w{b.num_warps} s{b.num_stages}"
        return us(best), us(t_xla), f"{t_xla / best:.2f}x", rate, "", note
    return measure


def copy_bandwidth():
    nbytes = 1 << 30
    a = jnp.zeros((nbytes // 4,), jnp.uint32)
    t = timed(lambda a: a ^ jnp.uint32(1), a)  # reads and writes nbytes each
    return 2 * nbytes / t


def gemv_row(m, k, n, bits, group, copy_bw):
    def measure():
        keys = jax.random.split(jax.random.key(m + bits), 4)
        x = jax.random.normal(keys[0], (m, k), jnp.bfloat16)
        if bits == 4:
            w = jax.random.randint(keys[1], (n, k // 2), 0, 256, jnp.int32).astype(jnp.uint8)
            scale = jax.random.uniform(keys[2], (n, k // group), jnp.float32, 0.01, 0.02)
            weight_bytes = w.size + scale.size * 4
        else:
            w = rand_int8(keys[1], (n, k))
            scale = jax.random.uniform(keys[2], (n,), jnp.float32, 0.01, 0.02)
            weight_bytes = w.size + scale.size * 4
        w_bf16 = jax.random.normal(keys[3], (n, k), jnp.bfloat16)

        def pallas(x, w, scale):
            return gpu.weight_only_matmul(x, w, scale, bits=bits, signed=True)

        def xla_bf16(x, w):
            return jax.lax.dot_general(x, w, NT, preferred_element_type=jnp.float32
                                       ).astype(jnp.bfloat16)

        t_p = timed(pallas, x, w, scale)
        t_x = timed(xla_bf16, x, w_bf16)
        ok = check_close(pallas(x, w, scale),
                         gpu.weight_only_matmul_reference(x, w, scale, bits=bits, signed=True),
                         rtol=2e-2)
        bw = weight_bytes / t_p
        rate = f"{bw / 1e12:.2f} TB/s" + (f" ({100 * bw / copy_bw:.0f}% of copy)"
                                           if copy_bw else "")
        return us(t_p), us(t_x), f"{t_x / t_p:.2f}x", rate, "", ok
    return measure


def mlp_row(batch, d=4096, hidden=14336):
    def measure():
        keys = jax.random.split(jax.random.key(batch), 6)
        x = jax.random.normal(keys[0], (batch, d), jnp.bfloat16)
        w1 = jax.random.normal(keys[1], (hidden, d), jnp.bfloat16) * 0.02
        w2 = jax.random.normal(keys[2], (d, hidden), jnp.bfloat16) * 0.02
        b1 = jnp.zeros((hidden,), jnp.float32)
        b2 = jnp.zeros((d,), jnp.float32)

        def quantize_weight(w):  # symmetric per-channel int8
            amax = jnp.max(jnp.abs(w.astype(jnp.float32)), axis=1)
            scale = jnp.maximum(amax / 127.0, 1e-8)
            q = jnp.clip(jnp.round(w.astype(jnp.float32) / scale[:, None]), -127, 127)
            return q.astype(jnp.int8), scale

        (q1, s1), (q2, s2) = quantize_weight(w1), quantize_weight(w2)

        def bf16_mlp(x, w1, w2, b1, b2):
            h = jax.nn.relu(jax.lax.dot_general(x, w1, NT, preferred_element_type=jnp.float32)
                            + b1).astype(jnp.bfloat16)
            return (jax.lax.dot_general(h, w2, NT, preferred_element_type=jnp.float32)
                    + b2).astype(jnp.bfloat16)

        def w8a8_mlp(x, q1, s1, q2, s2, b1, b2):
            h = gpu.dynamic_int8_linear(x, q1, s1, b1, relu=True, out_dtype=jnp.bfloat16)
            return gpu.dynamic_int8_linear(h, q2, s2, b2, out_dtype=jnp.bfloat16)

        t_q = timed(w8a8_mlp, x, q1, s1, q2, s2, b1, b2, target_s=0.1)
        t_f = timed(bf16_mlp, x, w1, w2, b1, b2, target_s=0.1)
        ok = check_close(jax.jit(w8a8_mlp)(x, q1, s1, q2, s2, b1, b2),
                         jax.jit(bf16_mlp)(x, w1, w2, b1, b2), rtol=5e-2)
        flops = 2 * 2 * batch * d * hidden
        return (us(t_q), us(t_f), f"{t_f / t_q:.2f}x", f"{flops / t_q / 1e12:.0f} TOPS", "",
                ok + " (vs bf16)")
    return measure


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes (smoke run)")
    parser.add_argument("--out", help="also write the markdown table to this file")
    options = parser.parse_args()

    device = jax.devices()[0]
    if device.platform != "gpu":
        sys.exit(f"needs an NVIDIA GPU; the default device is {device.platform} "
                 f"({device.device_kind})")
    kind = device.device_kind
    peak_tops, _ = card_peak(kind)

    alternatives = (BlockConfig(128, 256, 64, num_warps=8, num_stages=4, group_m=8),
                    BlockConfig(128, 128, 128, num_warps=8, num_stages=4, group_m=8),
                    BlockConfig(256, 128, 128, num_warps=8, num_stages=3, group_m=8))
    row("int8 GEMM 8192x8192x8192 (int32)", gemm_row(8192, 8192, 8192, peak_tops,
                                                     () if options.quick else alternatives))
    sizes = (4096,) if options.quick else (4096, 8192)
    for kn in sizes:
        for m in ((16, 256) if options.quick else (16, 32, 64, 128, 256)):
            row(f"int8 GEMM M={m} K=N={kn} (int32)", gemm_row(m, kn, kn, peak_tops))

    copy_bw = None
    try:
        copy_bw = copy_bandwidth()
        ROWS.append(("device-to-device copy, 1 GiB", "", "", "", f"{copy_bw / 1e12:.2f} TB/s",
                     "", "read + write bytes / time"))
    except Exception as error:  # noqa: BLE001
        ROWS.append(("device-to-device copy", "ERROR", "", "", "", "", str(error)[:120]))
    row("weight-only int4 g128 GEMV M=1 K=N=8192", gemv_row(1, 8192, 8192, 4, 128, copy_bw))
    row("weight-only int8 GEMV M=1 K=N=8192", gemv_row(1, 8192, 8192, 8, None, copy_bw))
    if not options.quick:
        row("weight-only int4 g128 M=16 K=N=8192", gemv_row(16, 8192, 8192, 4, 128, copy_bw))
        row("weight-only int4 g128 M=64 K=N=8192", gemv_row(64, 8192, 8192, 4, 128, copy_bw))
    for batch in ((256,) if options.quick else (256, 1024, 4096)):
        row(f"W8A8-dynamic MLP 4096->14336->4096, batch {batch}", mlp_row(batch))

    lines = [
        f"## jaxq Pallas GPU kernels on {kind} (jax {jax.__version__}, "
        f"{time.strftime('%Y-%m-%d')})",
        "",
        f"Dense int8 peak used: {peak_tops or 'unknown'} TOPS. Ratio = baseline time / "
        "Pallas time (> 1: Pallas faster). Baselines: XLA int8 dot_general (int32 out), XLA "
        "bf16 GEMV, the bf16 MLP.",
        "",
        "| measurement | Pallas (us) | baseline (us) | ratio | rate | bandwidth | check / notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, *cells in ROWS:
        lines.append("| " + " | ".join([name, *map(str, cells)]) + " |")
    lines.append("")
    lines.append(f"Total wall time {time.perf_counter() - START:.0f} s.")
    table = "\n".join(lines)
    print(table)
    if options.out:
        with open(options.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
