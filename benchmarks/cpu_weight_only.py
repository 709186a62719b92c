"""Weight-only decode GEMV (x: 1 x K float32): jaxq int8 / int4 vs jaxq float32.

float32: ``x @ W`` with ``W`` (K, N) float32 under ``jax.jit`` (XLA). int8: per-channel
int8 weight; int4: group-wise (``--group``) unsigned 4-bit with zero points; both through
``quantized_matmul(x, w)`` (weight-only) on the native backend, and on the XLA path for
context. The weights are re-read every call; at K = N = 4096 the float32 weight (64 MB)
does not fit the 32 MB L3 while the int8 (16 MB) and int4 (8 MB) ones can.

Usage: python benchmarks/cpu_weight_only.py [--threads 2] [--clock wall|cpu] [--rounds N] [--k 4096] [--n 4096] [--group 128]
"""

from __future__ import annotations

import argparse
import warnings

from cpu_common import common_args, fmt_ms, interleaved, load_average, setup_threads

COMMON, _ = common_args()
setup_threads(COMMON.threads)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxq.kernels import cpu, pack_weight, quantized_matmul  # noqa: E402

warnings.filterwarnings("ignore")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--k", type=int, default=4096)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--m", type=int, default=1)
    parser.add_argument("--group", type=int, default=128)
    args, _ = parser.parse_known_args()
    rng = np.random.default_rng(0)
    k, n, m, g = args.k, args.n, args.m, args.group
    w_float = (rng.standard_normal((k, n)) * 0.02).astype(np.float32)
    q8 = rng.integers(-128, 128, (n, k)).astype(np.int8)
    w8 = pack_weight(q8, rng.uniform(0.001, 0.002, n).astype(np.float32))
    q4 = rng.integers(0, 16, (n, k)).astype(np.uint8)
    w4 = pack_weight(q4, rng.uniform(0.01, 0.02, (n, k // g)).astype(np.float32),
                     rng.integers(0, 16, (n, k // g)).astype(np.int32), bits=4)
    w8_nk = pack_weight(q8, w8.scale, layout="nk")
    w4_nk = pack_weight(q4, w4.scale, w4.zero_point, bits=4, layout="nk4")
    x = jax.device_put(rng.standard_normal((m, k)).astype(np.float32))
    wf = jax.device_put(w_float)
    f32 = jax.jit(lambda x, w: jnp.dot(x, w))
    wo = jax.jit(lambda x, w: quantized_matmul(x, w))
    wo_xla = jax.jit(lambda x, w: quantized_matmul(x, w, backend="xla"))
    for name, w in (("int8", w8), ("int4", w4)):
        np.testing.assert_allclose(np.asarray(wo(x, w)), np.asarray(wo_xla(x, w)), rtol=1e-4,
                                   atol=1e-3)
    times = interleaved({
        "f32": lambda: f32(x, wf).block_until_ready(),
        "int8": lambda: wo(x, w8).block_until_ready(),
        "int4": lambda: wo(x, w4).block_until_ready(),
    }, rounds=args.rounds, clock=COMMON.clock, settle_s=COMMON.settle)
    # The XLA path, for context, in its own rounds (see cpu_common.interleaved).
    times.update(interleaved({
        "int8_xla": lambda: wo_xla(x, w8_nk).block_until_ready(),
        "int4_xla": lambda: wo_xla(x, w4_nk).block_until_ready(),
    }, rounds=max(3, args.rounds // 3), clock=COMMON.clock, settle_s=COMMON.settle))
    print(f"native backend: {cpu.isa()}, {cpu.num_threads()} threads; M={m}, K={k}, N={n}, "
          f"int4 group {g}; load average {load_average()}")
    print("| weight | jaxq time | speed-up vs jaxq f32 | XLA path time |")
    print("|---|---|---|---|")
    print(f"| float32 (XLA dot) | {fmt_ms(times['f32'])} | 1.00x | - |")
    for name in ("int8", "int4"):
        print(f"| {name} weight-only | {fmt_ms(times[name])} | "
              f"{times['f32'] / times[name]:.2f}x | {fmt_ms(times[name + '_xla'])} |")


if __name__ == "__main__":
    main()
