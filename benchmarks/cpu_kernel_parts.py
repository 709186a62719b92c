"""Where jaxq's dynamic int8 Linear time goes: the native kernel's parts alone vs end to end.

Builds ``cpu_kernel_parts.cc`` against the AVX512-VNNI kernels in ``kernels/cpu/`` and
times, without XLA or Python in the loop: the int8 GEMM with its float epilogue on an
already quantized uint8 activation (1 thread, and 2 threads split into the FFI handler's
tasks), and the two passes of the activation's dynamic quantization (min/max, quantize) on
1 thread. Then it times jaxq's jitted ``quantized_matmul`` (dynamic quantization, bias)
end to end on the same shapes. Each GEMM figure is also given as a share of the
``VPDPBUSD`` peak (``cpu_roofline.py``); the gap between "GEMM alone" and "end to end" is
what the quantization, the dispatch through XLA and the helper pool cost.

Usage: python benchmarks/cpu_kernel_parts.py [--reps 40] [--shapes M,K,N ...]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import time
from pathlib import Path

from cpu_common import compile_cpp, load_average
from cpu_roofline import measure

SOURCE = Path(__file__).with_name("cpu_kernel_parts.cc")
KERNELS = Path(__file__).resolve().parents[1] / "kernels" / "cpu"
SHAPES = [(1, 4096, 4096), (16, 4096, 4096), (256, 1024, 1024), (1024, 1024, 1024)]
# The flags jaxq's build gives kernels_avx512.cc (jaxq/kernels/cpu/build.py).
AVX512_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mfma",
                "-ffp-contract=off", "-fno-math-errno"]


@functools.lru_cache(maxsize=None)
def _binary() -> Path:
    return compile_cpp([SOURCE, KERNELS / "kernels_avx512.cc"], "cpu_kernel_parts",
                       ["-O3", *AVX512_FLAGS, f"-I{KERNELS}"])


def _run(*args) -> list[float]:
    words = subprocess.run([str(_binary()), *map(str, args)], check=True, capture_output=True,
                           text=True).stdout.split()
    return [float(w) for w in words[1::2]] if words[0] == "quantize" else \
        [float(w) for w in words[1:]]


def gemm_seconds(m: int, k: int, n: int, threads: int, reps: int) -> tuple[float, float]:
    """(median, best) seconds of the GEMM alone."""
    median, best = _run("gemm", m, k, n, threads, reps)
    return median, best


def quantize_seconds(m: int, k: int, reps: int) -> tuple[float, float]:
    """(quantize, min/max) best seconds on 1 thread."""
    quantize, range_ = _run("quantize", m, k, reps)
    return quantize, range_


def end_to_end_seconds(m: int, k: int, n: int, rounds: int) -> float:
    import jax
    import numpy as np

    from jaxq.kernels import DynamicQuantization, pack_weight, quantized_matmul
    rng = np.random.default_rng(0)
    w = pack_weight(rng.integers(-128, 128, (n, k)).astype(np.int8), np.float32(0.01))
    x = jax.device_put(rng.standard_normal((m, k)).astype(np.float32))
    b = jax.device_put(rng.standard_normal(n).astype(np.float32))
    fn = jax.jit(lambda x, w, b: quantized_matmul(x, w, dynamic=DynamicQuantization(), bias=b))
    for _ in range(5):
        fn(x, w, b).block_until_ready()
    inner = max(3, int(0.02 / (2 * m * k * n / 8e11)))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn(x, w, b).block_until_ready()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--shapes", nargs="*", default=None)
    args = parser.parse_args()
    os.environ["JAXQ_NUM_THREADS"] = "2"  # jaxq's pool, as in cpu_linear.py
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in s.split(","))
                                             for s in args.shapes]
    peak1 = measure(1, 1 << 20)["vnni_gops"] * 1e9
    peak2 = measure(2, 1 << 20)["vnni_gops"] * 1e9
    print(f"load average {load_average()}; VPDPBUSD peak {peak1 / 1e9:.0f} / {peak2 / 1e9:.0f} "
          "GOP/s (1 / 2 threads)")
    print("| shape (M,K,N) | GEMM alone, 1 thread | GEMM alone, 2 threads (median) | "
          "jaxq end to end, 2 threads | quantize / min-max of x, 1 thread |")
    print("|---|---|---|---|---|")
    for m, k, n in shapes:
        ops = 2.0 * m * k * n
        _, one = gemm_seconds(m, k, n, 1, max(5, args.reps // 4))
        two, _ = gemm_seconds(m, k, n, 2, args.reps)
        e2e = end_to_end_seconds(m, k, n, 25)
        quantize, range_ = quantize_seconds(m, k, args.reps)
        gbs = 4.0 * m * k / 1e9
        print(f"| {m}, {k}, {n} | {one * 1e3:.3f} ms ({ops / one / peak1:.0%} of peak) | "
              f"{two * 1e3:.3f} ms ({ops / two / peak2:.0%}) | {e2e * 1e3:.3f} ms "
              f"({ops / e2e / peak2:.0%}) | {quantize * 1e6:.1f} / {range_ * 1e6:.1f} us "
              f"({gbs / quantize:.0f} / {gbs / range_:.0f} GB/s) |")


if __name__ == "__main__":
    main()
