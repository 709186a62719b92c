"""Static int8 Conv2d block (3x3, 64->64, 56x56, fused ReLU): jaxq vs torch fbgemm.

torch: ``torch.ao.nn.intrinsic.quantized.ConvReLU2d`` (per-channel int8 weight, 2 threads)
on a channels-last quint8 input, prepacked and run on the fbgemm engine (the target) and on
the x86 engine (which sends this conv to oneDNN). jaxq: the same integers through
``quantized_conv2d(..., relu=True, out_dtype="quint8")`` on NHWC under ``jax.jit``. jaxq's
output is checked bit-identical to fbgemm's before timing (oneDNN rounds ~1e-5 of the
outputs differently).

Usage: python benchmarks/cpu_conv.py [--threads 2] [--clock wall|cpu] [--rounds N] [--batches 1 8]
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
import torch.ao.nn.intrinsic.quantized as nniq  # noqa: E402

from jaxq.kernels import cpu, pack_conv_weight, quantized_conv2d  # noqa: E402

warnings.filterwarnings("ignore")


def bench(batch, rounds, rng, c=64, o=64, hw=56):
    values = rng.integers(-128, 128, (o, c, 3, 3)).astype(np.int8)
    scale = rng.uniform(0.002, 0.01, o).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    x_scale, x_zp, out_scale, out_zp = 0.02, 100, 0.5, 40
    wq = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(values), torch.from_numpy(scale.astype(np.float64)),
        torch.zeros(o, dtype=torch.long), 0)
    modules = {}
    for engine in ("fbgemm", "x86"):
        torch.backends.quantized.engine = engine
        module = nniq.ConvReLU2d(c, o, 3, padding=1)
        module.set_weight_bias(wq, torch.from_numpy(bias))
        module.scale, module.zero_point = out_scale, out_zp
        modules[engine] = module
    xq = rng.integers(0, 256, (batch, hw, hw, c)).astype(np.uint8)
    xt = torch._make_per_tensor_quantized_tensor(
        torch.from_numpy(xq.transpose(0, 3, 1, 2).copy()), x_scale, x_zp
    ).contiguous(memory_format=torch.channels_last)
    packed = pack_conv_weight(values, scale, weight_layout="OIHW")
    packed_nk = pack_conv_weight(values, scale, weight_layout="OIHW", layout="nk")

    def run(x, w, b, backend):
        return quantized_conv2d(x, w, np.float32(x_scale), np.int32(x_zp), padding=1, bias=b,
                                relu=True, out_dtype="quint8", out_scale=np.float32(out_scale),
                                out_zero_point=np.int32(out_zp), backend=backend)

    native = jax.jit(lambda x, w, b: run(x, w, b, None))
    reference = jax.jit(lambda x, w, b: run(x, w, b, "xla"))
    xj, bj = jax.device_put(xq), jax.device_put(bias)
    def torch_run(engine):
        torch.backends.quantized.engine = engine
        return modules[engine](xt)

    expected = torch_run("fbgemm").int_repr().permute(0, 2, 3, 1).numpy()
    exact = np.array_equal(np.asarray(native(xj, packed, bj)), expected)
    times = interleaved({
        "torch": lambda: torch_run("fbgemm"),
        "torch_x86": lambda: torch_run("x86"),
        "jaxq": lambda: native(xj, packed, bj).block_until_ready(),
    }, rounds=rounds, clock=COMMON.clock, settle_s=COMMON.settle)
    # The XLA path, for context, in its own rounds (see cpu_common.interleaved).
    times.update(interleaved({
        "jaxq_xla": lambda: reference(xj, packed_nk, bj).block_until_ready()},
        rounds=max(3, rounds // 3), clock=COMMON.clock, settle_s=COMMON.settle))
    return times, 2.0 * batch * hw * hw * o * c * 9, exact


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    args, _ = parser.parse_known_args()
    rng = np.random.default_rng(0)
    print(f"native backend: {cpu.isa()}, {cpu.num_threads()} threads; torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); load average "
          f"{load_average()}")
    print("ceiling: the least time this CPU allows (cpu_roofline.py: VPDPBUSD peak); "
          "'of ceiling': ceiling / time")
    print("| batch | torch fbgemm | torch x86 (oneDNN) | jaxq native | jaxq XLA | "
          "native / fbgemm throughput | bit-exact vs fbgemm | ceiling | fbgemm, oneDNN, "
          "jaxq of ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in args.batches:
        times, ops, exact = bench(batch, args.rounds, rng)
        t, t86, j, x = times["torch"], times["torch_x86"], times["jaxq"], times["jaxq_xla"]
        ceiling = ceiling_seconds(ops, 64 * 64 * 9, COMMON.threads)
        print(f"| {batch} | {fmt_ms(t)} ({ops / t / 1e9:.0f} GOP/s) | {fmt_ms(t86)} | "
              f"{fmt_ms(j)} ({ops / j / 1e9:.0f} GOP/s) | {fmt_ms(x)} | {t / j:.2f}x | "
              f"{exact} | {fmt_ms(ceiling)} | {ceiling / t:.0%}, {ceiling / t86:.0%}, "
              f"{ceiling / j:.0%} |", flush=True)


if __name__ == "__main__":
    main()
