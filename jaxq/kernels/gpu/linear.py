"""W8A8 dynamic linear: fused per-token quantization feeding the int8 GEMM.

``dynamic_int8_linear(x, w_q, w_scale, bias)`` is torchao's
``Int8DynamicActivationInt8WeightConfig`` forward (symmetric per-token int8 activations,
symmetric per-channel int8 weights) as two Pallas kernels: :func:`quantize_per_token`
(one read of ``x``, writes int8 + per-row scales) and :func:`int8_matmul` (int8 tensor-core
GEMM, dequantization, bias and ReLU fused in its epilogue).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxq.core.granularity import MappingType
from jaxq.kernels.gpu.blocks import BlockConfig
from jaxq.kernels.gpu.dynamic_quant import quantize_per_token, quantize_per_token_reference
from jaxq.kernels.gpu.int8_matmul import int8_matmul, int8_matmul_reference

__all__ = ["dynamic_int8_linear", "dynamic_int8_linear_reference"]


def _zero_point(mapping_type, zero_point):
    return None if mapping_type is MappingType.SYMMETRIC else zero_point


def dynamic_int8_linear(x: jax.Array, w_q: jax.Array, w_scale: Any, bias: Any = None, *,
                        relu: bool = False, out_dtype: Any = None,
                        mapping_type: MappingType = MappingType.SYMMETRIC,
                        eps: float | None = None, block: BlockConfig | None = None,
                        interpret: bool | None = None) -> jax.Array:
    """``relu?(x @ dequant(w).T + bias)`` with ``x`` quantized per token on the fly.

    Args:
      x: (..., K) float activations.
      w_q: (N, K) int8 weight (torch layout), symmetric.
      w_scale: float32 scalar or (N,) per-channel scales.
      bias: optional (N,) float.
      relu: fuse a ReLU.
      out_dtype: float output dtype (default ``x.dtype``).
      mapping_type: activation mapping, SYMMETRIC (default) or ASYMMETRIC (int8 with a
        per-token zero point, removed in the GEMM epilogue).
      eps: smallest activation scale (default float32's smallest normal).
      block: GEMM block override.
      interpret: Pallas interpret mode (default: only without a GPU).

    Returns:
      (..., N) array of ``out_dtype``.

    Example:
      >>> import jax.numpy as jnp
      >>> y = dynamic_int8_linear(jnp.ones((2, 40)), jnp.ones((8, 40), jnp.int8), 0.5,
      ...                         interpret=True)
      >>> y.shape
      (2, 8)
    """
    x = jnp.asarray(x)
    out_dtype = x.dtype if out_dtype is None else out_dtype
    q, scale, zero_point = quantize_per_token(x, mapping_type=mapping_type, eps=eps,
                                              interpret=interpret)
    k = x.shape[-1]
    y = int8_matmul(q.reshape(-1, k), w_q, scale.reshape(-1), w_scale,
                    x_zero_point=_zero_point(mapping_type, zero_point.reshape(-1)),
                    bias=bias, relu=relu, out_dtype=out_dtype, block=block,
                    interpret=interpret)
    return y.reshape(*x.shape[:-1], y.shape[-1])


def dynamic_int8_linear_reference(x, w_q, w_scale, bias=None, *, relu=False, out_dtype=None,
                                  mapping_type=MappingType.SYMMETRIC, eps=None) -> jax.Array:
    """Pure-jnp reference of :func:`dynamic_int8_linear` (the two kernels' references)."""
    x = jnp.asarray(x)
    out_dtype = x.dtype if out_dtype is None else out_dtype
    q, scale, zero_point = quantize_per_token_reference(x, mapping_type=mapping_type, eps=eps)
    k = x.shape[-1]
    y = int8_matmul_reference(q.reshape(-1, k), w_q, scale.reshape(-1), w_scale,
                              x_zero_point=_zero_point(mapping_type, zero_point.reshape(-1)),
                              bias=bias, relu=relu, out_dtype=out_dtype)
    return y.reshape(*x.shape[:-1], y.shape[-1])
