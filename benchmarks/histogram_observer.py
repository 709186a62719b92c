"""torch's HistogramObserver vs jaxq's, side by side in one process.

Times 100 updates on batches of 1M float32 values (standard normal, so the range grows
now and then and both sides run the histogram-combination path), then
``calculate_qparams``; torch on 2 threads, jaxq with a jitted ``HistogramCore.update``
and ``calculate_qparams`` (compiled before timing). Prints the median (and minimum) of
several repetitions per side, the speed ratio of the medians, and checks that both
sides end with the same histogram and qparams.

Usage: .venv/bin/python benchmarks/histogram_observer.py [--batches 100] [--size 1000000]
       [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np
import torch
from torch.ao.quantization.observer import HistogramObserver as TorchHistogramObserver

from jaxq.observer.histogram import HistogramCore


def _time_torch(batches):
    observer = TorchHistogramObserver()
    start = time.perf_counter()
    for batch in batches:
        observer(batch)
    updates = time.perf_counter() - start
    start = time.perf_counter()
    qparams = observer.calculate_qparams()
    return updates, time.perf_counter() - start, observer, qparams


def _time_jaxq(core, update, calculate_qparams, batches):
    state = core.init()
    start = time.perf_counter()
    for batch in batches:
        state = update(state, batch)
    jax.block_until_ready(state)
    updates = time.perf_counter() - start
    start = time.perf_counter()
    qparams = jax.block_until_ready(calculate_qparams(state))
    return updates, time.perf_counter() - start, state, qparams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(args.size, dtype=np.float32) for _ in range(args.batches)]
    torch_batches = [torch.from_numpy(x) for x in data]
    jax_batches = [jax.device_put(x) for x in data]

    core = HistogramCore.create()
    update = jax.jit(core.update)
    calculate_qparams = jax.jit(core.calculate_qparams)
    # Compile (and warm up) outside the timings: one update that widens the range.
    warm = update(update(core.init(), jax_batches[0]), jax_batches[1])
    jax.block_until_ready(calculate_qparams(warm))

    results = {"torch": [], "jaxq": []}
    for _ in range(args.repeats):
        *times, torch_obs, torch_qparams = _time_torch(torch_batches)
        results["torch"].append(times)
        *times, state, jaxq_qparams = _time_jaxq(core, update, calculate_qparams,
                                                 jax_batches)
        results["jaxq"].append(times)

    same_histogram = np.array_equal(np.asarray(state["histogram"]),
                                    torch_obs.histogram.numpy())
    same_qparams = (np.array_equal(np.asarray(jaxq_qparams[0]), torch_qparams[0].numpy())
                    and int(jaxq_qparams[1][0]) == int(torch_qparams[1][0]))

    medians = {}
    print(f"HistogramObserver: {args.batches} updates x {args.size} float32, then "
          f"calculate_qparams; median of {args.repeats} (torch {torch.__version__} on "
          f"{torch.get_num_threads()} threads, jax {jax.__version__} "
          f"{jax.devices()[0].platform})")
    for name, rows in results.items():
        updates = statistics.median(r[0] for r in rows)
        qparams = statistics.median(r[1] for r in rows)
        medians[name] = (updates, qparams)
        print(f"  {name:5s}  updates {updates * 1e3:8.1f} ms ({updates / args.batches * 1e3:.2f}"
              f" ms each)   calculate_qparams {qparams * 1e3:7.2f} ms   total "
              f"{(updates + qparams) * 1e3:8.1f} ms")
    # Minima are less sensitive to other processes on a small machine.
    minima = {name: (min(r[0] for r in rows), min(r[1] for r in rows))
              for name, rows in results.items()}
    print("  minima: " + ", ".join(
        f"{name} updates {m[0] * 1e3:.1f} ms + calculate_qparams {m[1] * 1e3:.2f} ms"
        for name, m in minima.items()))
    ratio = [medians["torch"][i] / medians["jaxq"][i] for i in range(2)]
    total_ratio = sum(medians["torch"]) / sum(medians["jaxq"])
    print(f"  speed-up (torch / jaxq): updates {ratio[0]:.2f}x, calculate_qparams "
          f"{ratio[1]:.2f}x, total {total_ratio:.2f}x")
    print(f"  same histogram as torch: {same_histogram}; same qparams: {same_qparams}")


if __name__ == "__main__":
    main()
