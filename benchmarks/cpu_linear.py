"""Dynamic int8 Linear: jaxq (native CPU backend, and the XLA path) vs torch fbgemm.

torch: ``torch.ao.quantization.quantize_dynamic`` of an ``nn.Linear`` (x86 engine, per-tensor
int8 weight, 2 threads). jaxq: the same integer weight and bias through
``quantized_matmul(x, w, dynamic=DynamicQuantization(), bias=b)`` under ``jax.jit``. The
outputs are checked bit-identical before timing. Weights stay hot in the cache on both
sides (repeated calls on the same weight).

Usage: python benchmarks/cpu_linear.py [--threads 2] [--clock wall|cpu] [--rounds N] [--shapes M,K,N ...]
"""

from __future__ import annotations

import argparse
import warnings

from cpu_common import common_args, fmt_ms, interleaved, load_average, setup_threads
from cpu_roofline import ceiling_seconds

COMMON, _ = common_args()
setup_threads(COMMON.threads)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from jaxq.kernels import DynamicQuantization, pack_weight, quantized_matmul  # noqa: E402
from jaxq.kernels import cpu  # noqa: E402

warnings.filterwarnings("ignore")
SHAPES = [(1, 4096, 4096), (16, 4096, 4096), (256, 1024, 1024), (1024, 1024, 1024)]


def bench_shape(m, k, n, rounds, rng):
    linear = torch.nn.Linear(k, n)
    qlinear = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)[0]
    wq = qlinear.weight()
    bias = qlinear.bias().detach().numpy()
    w = pack_weight(wq.int_repr().numpy(), np.float32(wq.q_scale()))
    # The XLA path reads any layout, but its own ("nk") is the fast one for it.
    w_nk = pack_weight(wq.int_repr().numpy(), np.float32(wq.q_scale()), layout="nk")
    x = rng.standard_normal((m, k)).astype(np.float32)
    xt = torch.from_numpy(x)
    config = DynamicQuantization()
    native = jax.jit(lambda x, w, b: quantized_matmul(x, w, dynamic=config, bias=b))
    reference = jax.jit(lambda x, w, b: quantized_matmul(x, w, dynamic=config, bias=b,
                                                         backend="xla"))
    xj, bj = jax.device_put(x), jax.device_put(bias)
    expected = qlinear(xt).detach().numpy()
    got = np.asarray(native(xj, w, bj))
    exact = np.array_equal(got, expected)
    times = interleaved({
        "torch": lambda: qlinear(xt),
        "jaxq": lambda: native(xj, w, bj).block_until_ready(),
    }, rounds=rounds, clock=COMMON.clock, settle_s=COMMON.settle)
    # The XLA path, for context, in its own rounds (see cpu_common.interleaved).
    times.update(interleaved({"jaxq_xla": lambda: reference(xj, w_nk, bj).block_until_ready()},
                             rounds=max(3, rounds // 3), clock=COMMON.clock,
                             settle_s=COMMON.settle))
    ops = 2.0 * m * k * n
    return times, ops, exact


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--shapes", nargs="*", default=None)
    args, _ = parser.parse_known_args()
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in s.split(",")) for s in
                                             args.shapes]
    rng = np.random.default_rng(0)
    print(f"native backend: {cpu.isa()}, {cpu.num_threads()} threads; torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads, engine "
          f"{torch.backends.quantized.engine}); jax {jax.__version__}; "
          f"load average {load_average()}; clock {COMMON.clock}")
    print("ceiling: the least time this CPU allows (cpu_roofline.py: VPDPBUSD peak, and "
          "reading the int8 weight once); 'of ceiling': ceiling / time; 'torch / ceiling': "
          "the largest speed-up over torch that any kernel could show")
    print("| shape (M,K,N) | torch fbgemm | jaxq native | jaxq XLA | native / torch "
          "throughput | bit-exact | ceiling | torch, jaxq of ceiling | torch / ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, k, n in shapes:
        times, ops, exact = bench_shape(m, k, n, args.rounds, rng)
        t, j, x = times["torch"], times["jaxq"], times["jaxq_xla"]
        ceiling = ceiling_seconds(ops, k * n, COMMON.threads)
        print(f"| {m}, {k}, {n} | {fmt_ms(t)} ({ops / t / 1e9:.0f} GOP/s) | {fmt_ms(j)} "
              f"({ops / j / 1e9:.0f} GOP/s) | {fmt_ms(x)} | {t / j:.2f}x | {exact} | "
              f"{fmt_ms(ceiling)} | {ceiling / t:.0%}, {ceiling / j:.0%} | {t / ceiling:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
