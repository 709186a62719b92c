"""Ceilings of this CPU for the int8 benchmarks: VNNI peak and cache read bandwidth.

Builds ``cpu_roofline.cc`` with the system C++ compiler (once, into a temporary
directory) and runs it: ``VPDPBUSD`` throughput with 1..T threads (each instruction is 64
multiply-adds, 128 ops) and the bytes/s at which T threads read a buffer of a given size
that is already in the caches. An int8 matmul of M x K x N can be no faster than
``max(2 M K N / peak, K N / read_bandwidth(K N bytes))``: the first bound is the
instruction throughput, the second the time to read the int8 weight once. The CPU
benchmarks print each contender's time as a fraction of that ceiling. It also times
``VPDPBUSD`` chains interleaved with chains of the other multiply instructions an int8
kernel could use (``VPMADDUBSW``, ``VDPBF16PS``, ``VFMADD``): on Zen 4 every mix is slower
than ``VPDPBUSD`` alone, so no instruction mix raises the first bound.

Usage: python benchmarks/cpu_roofline.py [--threads 2] [--bytes 16777216 ...]
"""

from __future__ import annotations

import argparse
import functools
import subprocess
from pathlib import Path

from cpu_common import compile_cpp

SOURCE = Path(__file__).with_name("cpu_roofline.cc")


@functools.lru_cache(maxsize=None)
def _binary() -> Path:
    return compile_cpp([SOURCE], "cpu_roofline", ["-O2"])


@functools.lru_cache(maxsize=None)
def measure(threads: int, buffer_bytes: int) -> dict[str, float]:
    """{"vnni_gops": int8 GOP/s with `threads` threads, "read_gbs": GB/s reading
    `buffer_bytes` with `threads` threads}."""
    result = subprocess.run([str(_binary()), str(threads), str(buffer_bytes)], check=True,
                            capture_output=True, text=True).stdout.split("\n")
    fields = [line.split() for line in result if line]
    if fields and fields[0][0] == "error":
        raise RuntimeError(" ".join(fields[0][1:]))
    vnni = {int(f[1]): float(f[2]) for f in fields if f[0] == "vnni"}
    read = {int(f[1]): float(f[3]) for f in fields if f[0] == "read"}
    mix = {f[1]: float(f[2]) for f in fields if f[0] == "mix"}
    return {"vnni_gops": vnni[threads], "read_gbs": read[threads], "vnni_1_gops": vnni[1],
            "mix_gops": mix}


def ceiling_seconds(ops: float, weight_bytes: int, threads: int) -> float:
    """Least time an int8 kernel needs for `ops` ops reading `weight_bytes` of weight."""
    roof = measure(threads, max(weight_bytes, 1 << 16))
    return max(ops / (roof["vnni_gops"] * 1e9), weight_bytes / (roof["read_gbs"] * 1e9))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bytes", type=int, nargs="*", default=[16 << 20, 1 << 20])
    args = parser.parse_args()
    print("| threads | VPDPBUSD peak | read bandwidth |")
    print("|---|---|---|")
    for threads in range(1, args.threads + 1):
        for size in args.bytes:
            roof = measure(threads, size)
            print(f"| {threads} | {roof['vnni_gops']:.0f} GOP/s | {roof['read_gbs']:.1f} GB/s "
                  f"({size / 2**20:g} MiB buffer) |")
    # Is VPDPBUSD's rate the int8 ceiling, or could another multiply instruction add to it?
    roof = measure(1, args.bytes[0])
    print("\n1 thread, VPDPBUSD chains interleaved with chains of another multiply "
          "instruction (int8-equivalent ops/s; above the VPDPBUSD peak would mean a spare "
          "pipe):")
    print("| mixed with | GOP/s | vs VPDPBUSD alone |")
    print("|---|---|---|")
    for name, gops in roof["mix_gops"].items():
        print(f"| {name} | {gops:.0f} | {gops / roof['vnni_1_gops']:.2f}x |")


if __name__ == "__main__":
    main()
