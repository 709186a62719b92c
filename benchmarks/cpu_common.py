"""Shared timing helpers for the CPU benchmarks: interleaved medians in one process.

Every contender runs in the same process, round-robin: each round times a batch of calls
(about ``budget_s`` of them) of every function in a rotated order, so load from other processes hits all of them
alike; the reported figure is the median over rounds of the per-call time.

Settling: two thread runtimes share the process, and each keeps its workers spinning for
a while after a call (measured here: torch's libgomp team burns 4-11 ms of CPU after a
call, XLA's Eigen pool under 1 ms). Timed back to back, the contender that runs second
would share its cores with the first one's spinning workers for the start of its batch.
So before each timed batch the script sleeps ``settle_s`` (default 30 ms: every runtime's
workers have parked) and makes one untimed call (every runtime's workers are awake, as
in a loop of calls). ``--settle 0`` times the batches back to back.

Only contenders go in one interleaving: a much slower function timed in the same rounds
(the XLA reference path, at 3-30x the others' time) slowed both torch and jaxq by 20-40%
in the rounds that followed it here, so the scripts time it in rounds of its own.

Two clocks: ``wall`` (``time.perf_counter``, what a user waits) and ``cpu``
(``time.process_time``: CPU seconds of the whole process, every thread). On a machine
shared with other work, wall time of multi-threaded code measures the scheduler as much
as the code (a spinning thread whose partner was descheduled burns its slice); CPU time
with one thread per library is the stable measure of the work each one does.

Every script takes ``--threads N`` (torch intra-op threads and the jaxq native pool) and
``--clock wall|cpu``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def common_args(argv=None):
    """Parses --threads / --clock (before jax is imported); returns (args, remaining)."""
    import argparse
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--settle", type=float, default=0.03,
                        help="seconds of sleep before each timed batch (0: none)")
    return parser.parse_known_args(argv)


def setup_threads(threads: int = 2) -> None:
    """Threads for torch (intra-op) and the jaxq native pool; call before importing jax."""
    os.environ["JAXQ_NUM_THREADS"] = str(threads)
    import torch
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = "x86"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 25, inner: int | None = None,
                budget_s: float = 0.05, clock: str = "wall",
                settle_s: float = 0.03) -> dict[str, float]:
    """Median seconds per call of each function (see the module docstring).

    Each function's batch has ``inner`` calls, or by default as many as fill about
    ``budget_s`` for that function (1 to 200): a fast kernel is not timed over a handful of
    calls because a slow contender shares the round.
    """
    for fn in fns.values():  # compile / warm caches
        for _ in range(3):
            fn()
    calls = {}
    for name, fn in fns.items():
        if inner is not None:
            calls[name] = inner
            continue
        start = time.perf_counter()
        fn()
        calls[name] = max(1, min(200, int(budget_s / max(time.perf_counter() - start, 1e-6))))
    now = CLOCKS[clock]
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn = fns[name]
            if settle_s > 0:
                time.sleep(settle_s)
                fn()
            start = now()
            for _ in range(calls[name]):
                fn()
            samples[name].append((now() - start) / calls[name])
    return {name: statistics.median(values) for name, values in samples.items()}


def load_average() -> str:
    try:
        return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def compile_cpp(sources: list[Path], name: str, flags: list[str]) -> Path:
    """Builds a benchmark's C++ helper with the system compiler into a temporary folder."""
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        raise RuntimeError("no C++ compiler on PATH (c++, g++ or clang++)")
    out = Path(tempfile.mkdtemp(prefix=f"jaxq_{name}_")) / name
    subprocess.run([compiler, "-std=c++17", "-pthread", *flags, *map(str, sources), "-o",
                    str(out)], check=True, capture_output=True, text=True)
    return out
