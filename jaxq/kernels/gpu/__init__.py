"""Pallas GPU kernels for quantized matmuls, and their registration as a jaxq backend.

Kernels (Pallas Triton style: the same code compiles for NVIDIA GPUs and runs in
interpret mode on CPU; each has a pure-jnp reference beside it):

* :func:`int8_matmul` - int8 x int8 -> int32 GEMM (TN: weight ``(N, K)``) with a fused
  epilogue: per-token x per-channel scales, zero points, bias, ReLU, output float32 /
  bfloat16 / float16, requantized int8 / uint8, or the raw int32 accumulator.
* :func:`weight_only_matmul` - float activations x int8 (per channel / per group) or packed
  int4 (per group of 32/64/128...) weights, dequantised in registers; GEMV form for M = 1,
  tensor-core form with split-K for decode batches.
* :func:`quantize_per_token` - fused dynamic quantization (row min/max, scale, zero point,
  int8 cast in one pass) feeding :func:`int8_matmul`; :func:`dynamic_int8_linear` chains
  the two.
* :mod:`~jaxq.kernels.gpu.blocks` - the block-size table per shape class.

Importing this package registers the ``"pallas_gpu"`` backend for platform ``cuda`` with
:func:`jaxq.kernels.register_backend` (XLA stays the reference and the fallback).
"""

from jaxq.kernels.gpu.blocks import BlockConfig, int8_matmul_block, weight_only_block
from jaxq.kernels.gpu.dynamic_quant import quantize_per_token, quantize_per_token_reference
from jaxq.kernels.gpu.int8_matmul import int8_matmul, int8_matmul_reference
from jaxq.kernels.gpu.linear import dynamic_int8_linear, dynamic_int8_linear_reference
from jaxq.kernels.gpu.weight_only import (
    dequantize_weight, weight_only_matmul, weight_only_matmul_reference)
from jaxq.kernels.gpu import backend as _backend

_backend.register()

__all__ = [
    "BlockConfig", "dequantize_weight", "dynamic_int8_linear", "dynamic_int8_linear_reference",
    "int8_matmul", "int8_matmul_block", "int8_matmul_reference", "quantize_per_token",
    "quantize_per_token_reference", "weight_only_block", "weight_only_matmul",
    "weight_only_matmul_reference",
]
