"""A transformer-style MLP block, int8 dynamic vs float, jaxq vs torch, on the CPU.

``y = x + W2 gelu(W1 x + b1) + b2`` with x: (M, 1024), W1: 4096 x 1024, W2: 1024 x 4096.
jaxq: one ``jax.jit`` function; the int8 version runs both matmuls through
``quantized_matmul(..., dynamic=DynamicQuantization())`` (int8 weights packed once,
activations quantized per call from their min/max, torch's x86 rule) with the GELU and
the residual as XLA ops between them, so it also shows how the native kernels share the
cores with XLA's own ops. torch: the same ``nn.Sequential`` in float and after
``quantize_dynamic`` (fbgemm). Printed: median ms per call (2 threads, wall time,
interleaved; see cpu_common.py) and the int8 speed-up over float for each library.

``--gelu tanh`` uses the tanh approximation on both sides (XLA's exact, erf-based GELU is
slow on the CPU: at M = 256 it takes about as long as one of the int8 matmuls).

Usage: python benchmarks/cpu_mlp.py [--threads 2] [--rounds N] [--rows 1 16 256] [--gelu exact|tanh]
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
import torch  # noqa: E402

from jaxq.kernels import DynamicQuantization, cpu, pack_weight, quantized_matmul  # noqa: E402

warnings.filterwarnings("ignore")
HIDDEN, INNER = 1024, 4096


class TorchBlock(torch.nn.Module):
    def __init__(self, gelu: str):
        super().__init__()
        self.up = torch.nn.Linear(HIDDEN, INNER)
        self.down = torch.nn.Linear(INNER, HIDDEN)
        self.approximate = "none" if gelu == "exact" else "tanh"

    def forward(self, x):
        h = torch.nn.functional.gelu(self.up(x), approximate=self.approximate)
        return x + self.down(h)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rows", type=int, nargs="*", default=[1, 16, 256])
    parser.add_argument("--gelu", choices=("exact", "tanh"), default="exact")
    args, _ = parser.parse_known_args()
    approximate = args.gelu == "tanh"
    torch.manual_seed(0)
    block = TorchBlock(args.gelu).eval()
    qblock = torch.ao.quantization.quantize_dynamic(block, {torch.nn.Linear},
                                                    dtype=torch.qint8)
    params = {}
    for name in ("up", "down"):
        qweight = getattr(qblock, name).weight()
        params[name] = (
            pack_weight(qweight.int_repr().numpy(), np.float32(qweight.q_scale())),
            jnp.asarray(getattr(qblock, name).bias().detach().numpy()),
            jnp.asarray(getattr(block, name).weight.detach().numpy().T),
            jnp.asarray(getattr(block, name).bias.detach().numpy()))
    config = DynamicQuantization()

    @jax.jit
    def jaxq_int8(x, params):
        (w1, b1, _, _), (w2, b2, _, _) = params["up"], params["down"]
        h = jax.nn.gelu(quantized_matmul(x, w1, dynamic=config, bias=b1),
                        approximate=approximate)
        return x + quantized_matmul(h, w2, dynamic=config, bias=b2)

    @jax.jit
    def jaxq_float(x, params):
        (_, _, w1, b1), (_, _, w2, b2) = params["up"], params["down"]
        return x + (jax.nn.gelu(x @ w1 + b1, approximate=approximate) @ w2 + b2)

    print(f"native backend: {cpu.isa()}, {cpu.num_threads()} threads; torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); jax {jax.__version__}; "
          f"GELU {args.gelu}; load average {load_average()}")
    print("| M | torch float | torch int8 (quantize_dynamic) | jaxq float (XLA) | jaxq int8 | "
          "int8 / float: torch, jaxq | jaxq int8 / torch int8 throughput | max abs diff "
          "jaxq - torch int8 |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for m in args.rows:
        x = rng.standard_normal((m, HIDDEN)).astype(np.float32)
        xt, xj = torch.from_numpy(x), jax.device_put(x)
        with torch.no_grad():
            diff = float(np.max(np.abs(np.asarray(jaxq_int8(xj, params))
                                       - qblock(xt).numpy())))
        with torch.no_grad():
            times = interleaved({
                "torch_float": lambda: block(xt),
                "torch_int8": lambda: qblock(xt),
                "jaxq_float": lambda: jaxq_float(xj, params).block_until_ready(),
                "jaxq_int8": lambda: jaxq_int8(xj, params).block_until_ready(),
            }, rounds=args.rounds, clock=COMMON.clock, settle_s=COMMON.settle)
        tf, ti, jf, ji = (times[k] for k in ("torch_float", "torch_int8", "jaxq_float",
                                              "jaxq_int8"))
        print(f"| {m} | {fmt_ms(tf)} | {fmt_ms(ti)} | {fmt_ms(jf)} | {fmt_ms(ji)} | "
              f"{tf / ti:.2f}x, {jf / ji:.2f}x | {ti / ji:.2f}x | {diff:.2e} |", flush=True)


if __name__ == "__main__":
    main()
