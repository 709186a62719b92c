"""The ``"pallas_gpu"`` backend of :func:`jaxq.kernels.quantized_matmul` (platform ``cuda``).

Registered with :func:`jaxq.kernels.register_backend` when :mod:`jaxq.kernels.gpu` is
imported. It reads the portable ``PackedWeight`` layouts (``"nk"`` int8 rows, ``"nk4"``
K-packed nibbles) directly, so a weight packed on any machine runs here unchanged.

What it runs (everything else stays on the XLA reference, which is also the fallback on
every other platform):

* static and dynamic W8A8 with 8-bit per-tensor / per-channel weights: the Pallas int8
  GEMM with its fused epilogue (float or requantized output). Dynamic per-token
  activations are quantized by the fused :func:`quantize_per_token` kernel; dynamic
  per-tensor ones (torch's default rule) by the reference's ``quantize_activation``;
* weight-only 8-bit (per channel or per group) and 4-bit (per group) for M <= 64 (decode),
  where the weight stream dominates; larger M is compute-bound and stays on XLA.

The results equal the XLA reference exactly on the integer paths (see the tests, which
run the kernels in interpret mode against :func:`jaxq.kernels.xla.xla_matmul`) and to
float rounding for weight-only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxq.core.granularity import MappingType
from jaxq.kernels.activation import quantize_activation
from jaxq.kernels.gpu.dynamic_quant import quantize_per_token
from jaxq.kernels.gpu.int8_matmul import int8_matmul
from jaxq.kernels.gpu.weight_only import weight_only_matmul
from jaxq.kernels.problem import MatmulArgs, MatmulProblem
from jaxq.kernels.registry import Backend, register_backend

__all__ = ["BACKEND_NAME", "WEIGHT_ONLY_MAX_M", "gpu_matmul", "gpu_supports", "pallas_matmul",
           "register"]

BACKEND_NAME = "pallas_gpu"
WEIGHT_ONLY_MAX_M = 64
_FLOAT_OUT = ("float32", "bfloat16", "float16")


def gpu_supports(problem: MatmulProblem) -> bool:
    """Static check: shapes, modes and weight layouts the Pallas kernels run."""
    spec = problem.weight
    if problem.m == 0 or problem.k == 0 or problem.n == 0:
        return False
    if problem.mode == "weight_only":
        if problem.m > WEIGHT_ONLY_MAX_M or problem.out_dtype not in _FLOAT_OUT:
            return False
        if spec.bits == 8:
            return spec.layout == "nk" and (
                spec.granularity in ("per_channel", "per_tensor")
                or (spec.group_size >= 32 and spec.group_size & (spec.group_size - 1) == 0))
        return (spec.layout == "nk4" and spec.granularity == "per_group"
                and spec.group_size >= 32 and spec.group_size & (spec.group_size - 1) == 0)
    if spec.bits != 8 or spec.layout != "nk" or spec.granularity == "per_group":
        return False
    if problem.mode == "dynamic" and problem.row_groups != 1 and (
            problem.dynamic.granularity == "per_token"):
        return False
    return problem.out_dtype in _FLOAT_OUT + ("int8", "uint8", "int32")


def _to_int8(xq, zero_point):
    """uint8 activations as int8 with the zero point moved along (exact)."""
    if xq.dtype == jnp.int8:
        return xq, zero_point
    shifted = (xq.astype(jnp.int32) - 128).astype(jnp.int8)
    zero_point = jnp.int32(0) if zero_point is None else jnp.asarray(zero_point, jnp.int32)
    return shifted, zero_point - 128


def gpu_matmul(problem: MatmulProblem, args: MatmulArgs) -> jax.Array:
    """Runs ``problem`` with the Pallas kernels, compiled for the GPU: ``(m, n)``."""
    return pallas_matmul(problem, args, interpret=False)


def pallas_matmul(problem: MatmulProblem, args: MatmulArgs, *, interpret: bool) -> jax.Array:
    """:func:`gpu_matmul` with the interpret switch (tests run it on CPU with True)."""
    weight = args.weight
    spec = weight.spec
    out_dtype = jnp.dtype(problem.out_dtype)
    if problem.mode == "weight_only":
        scale = weight.scale
        zero_point = None if spec.symmetric else weight.zero_point
        if spec.granularity == "per_tensor":
            scale = jnp.broadcast_to(scale, (spec.out_features,))
            zero_point = (None if zero_point is None
                          else jnp.broadcast_to(zero_point, (spec.out_features,)))
        y = weight_only_matmul(args.x, weight.data, scale, zero_point, args.bias,
                               bits=spec.bits, out_dtype=jnp.float32, interpret=interpret)
        return (jnp.maximum(y, 0.0) if problem.relu else y).astype(out_dtype)

    if problem.mode == "dynamic":
        config = problem.dynamic
        if config.granularity == "per_token":
            lo, hi = config.quant_range
            xq, x_scale, x_zp = quantize_per_token(
                args.x, mapping_type=(MappingType.SYMMETRIC if config.symmetric
                                      else MappingType.ASYMMETRIC),
                target_dtype=config.dtype.storage_dtype, quant_min=lo, quant_max=hi,
                eps=float(jnp.finfo(jnp.float32).eps), interpret=interpret)
        else:
            xq, x_scale, x_zp = quantize_activation(args.x, config, problem.row_groups)
    else:
        xq, x_scale, x_zp = args.x, args.x_scale, args.x_zero_point
    xq, x_zp = _to_int8(xq, x_zp)
    common = dict(x_zero_point=x_zp,
                  w_zero_point=None if spec.symmetric else weight.zero_point,
                  interpret=interpret)
    if problem.out_dtype == "int32":
        return int8_matmul(xq, weight.data, out_dtype=jnp.int32, **common)
    if problem.requantize:
        lo, hi = problem.out_range
        return int8_matmul(xq, weight.data, x_scale, weight.scale, bias=args.bias,
                           relu=problem.relu, out_dtype=out_dtype, out_scale=args.out_scale,
                           out_zero_point=args.out_zero_point, quant_min=lo, quant_max=hi,
                           **common)
    return int8_matmul(xq, weight.data, x_scale, weight.scale, bias=args.bias,
                       relu=problem.relu, out_dtype=out_dtype, **common)


def register(priority: int = 10) -> Backend:
    """Registers (or re-registers) the backend; called on import of :mod:`jaxq.kernels.gpu`."""
    backend = Backend(name=BACKEND_NAME, platform="cuda", matmul=gpu_matmul,
                      supports=gpu_supports, priority=priority)
    register_backend(backend)
    return backend
