"""Fused per-token dynamic quantization (row min/max + qparams + int8 cast in one kernel).

For ``x`` (M, K) float the kernel computes, per row, torchao's ``choose_qparams_affine``
with ``block_size=(1, K)`` followed by ``quantize_affine`` - the activation side of W8A8
dynamic quantization - reading each row once when it fits one tile (K <= 16384) and writing
the int8 row, its scale and its zero point::

    SYMMETRIC:  scale = max(max(-min(x,0), max(x,0)) / ((qmax - qmin) / 2), eps)
                zero_point = (qmax + qmin + 1) // 2          (0 for int8)
    ASYMMETRIC: scale = max((max(x,0) - min(x,0)) / (qmax - qmin), eps)
                zero_point = clamp(qmin - round(min(x,0) / scale), qmin, qmax)
    q = clamp(round(x * (1/scale)) + zero_point, qmin, qmax)

Divisions are IEEE-rounded and rounding is half-to-even, as in torch, so the output is
bit-identical to :func:`quantize_per_token_reference` (the jaxq core functions, which are
bit-exact against torchao).

Deviation from torchao, documented: statistics and qparams are computed in float32 for
every input dtype (torchao computes a bfloat16 input's scale in bfloat16), and ``eps``
defaults to float32's smallest normal.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxq.core.affine import choose_qparams_affine, quantize_affine
from jaxq.core.granularity import MappingType
from jaxq.core.ranges import quant_range
from jaxq.kernels.gpu._pallas import (
    cdiv, compiler_params, ieee_divide, load, pl, resolve_interpret, round_half_even, store)
from jaxq.kernels.gpu.blocks import BlockConfig, quantize_block

__all__ = ["quantize_per_token", "quantize_per_token_reference"]

_FLOAT_IN = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
_TARGETS = (jnp.dtype(jnp.int8), jnp.dtype(jnp.uint8))
_MAPPINGS = (MappingType.SYMMETRIC, MappingType.ASYMMETRIC)


def _qparams(min_val, max_val, *, mapping, quant_min, quant_max, eps, interpret):
    """The core's ``_qparams_from_min_max`` with in-kernel IEEE division and rounding."""
    min_neg = jnp.minimum(min_val, 0.0)
    max_pos = jnp.maximum(max_val, 0.0)
    if mapping is MappingType.SYMMETRIC:
        bound = jnp.maximum(-min_neg, max_pos)
        scale = ieee_divide(bound, float(quant_max - quant_min) / 2, interpret)
        scale = jnp.maximum(scale, eps)
        zero_point = jnp.full_like(scale, float(int((quant_max + quant_min + 1) / 2)))
    else:
        scale = jnp.maximum(
            ieee_divide(max_pos - min_neg, float(quant_max - quant_min), interpret), eps)
        shift = round_half_even(ieee_divide(min_neg, scale, interpret), interpret)
        zero_point = jnp.minimum(jnp.maximum(quant_min - shift, float(quant_min)),
                                 float(quant_max))
    return scale, zero_point


def _quantize(x, inv_scale, zero_point, *, quant_min, quant_max, out_dtype, interpret):
    q = round_half_even(x * inv_scale[:, None], interpret) + zero_point[:, None]
    q = jnp.minimum(jnp.maximum(q, float(quant_min)), float(quant_max))
    q = jnp.where(q != q, float(quant_min), q)
    return q.astype(jnp.int32).astype(out_dtype)


def _kernel(x_ref, q_ref, s_ref, z_ref, *, m, k, block: BlockConfig, mapping, quant_min,
            quant_max, eps, out_dtype, interpret):
    bm, width = block.block_m, block.block_k
    m0 = pl.multiple_of(pl.program_id(0) * bm, bm)
    rows = m0 + jnp.arange(bm, dtype=jnp.int32)
    row_mask = rows < m if m % bm else None
    n_chunks = cdiv(k, width)

    def tile_mask(k0):
        cols = k0 + jnp.arange(width, dtype=jnp.int32)
        col_mask = (cols < k)[None, :] if k % width else None
        if row_mask is None:
            return col_mask
        return row_mask[:, None] if col_mask is None else row_mask[:, None] & col_mask

    def read(k0):
        mask = tile_mask(k0)
        # Padding with 0 leaves min(x, 0) and max(x, 0) unchanged.
        x = load(x_ref.at[pl.ds(m0, bm), pl.ds(k0, width)], mask=mask,
                 other=None if mask is None else 0)
        return x.astype(jnp.float32)

    def write(k0, x, inv_scale, zero_point):
        q = _quantize(x, inv_scale, zero_point, quant_min=quant_min, quant_max=quant_max,
                      out_dtype=out_dtype, interpret=interpret)
        store(q_ref.at[pl.ds(m0, bm), pl.ds(k0, width)], q, mask=tile_mask(k0))

    if n_chunks == 1:
        x = read(0)
        min_val, max_val = jnp.min(x, axis=1), jnp.max(x, axis=1)
    else:
        def stats(c, carry):
            x = read(pl.multiple_of(c * width, width))
            return (jnp.minimum(carry[0], jnp.min(x, axis=1)),
                    jnp.maximum(carry[1], jnp.max(x, axis=1)))
        zeros = jnp.zeros((bm,), jnp.float32)
        min_val, max_val = jax.lax.fori_loop(0, n_chunks, stats, (zeros, zeros))

    scale, zero_point = _qparams(min_val, max_val, mapping=mapping, quant_min=quant_min,
                                 quant_max=quant_max, eps=eps, interpret=interpret)
    inv_scale = ieee_divide(1.0, scale, interpret)
    if n_chunks == 1:
        write(0, x, inv_scale, zero_point)
    else:
        def emit(c, carry):
            k0 = pl.multiple_of(c * width, width)
            write(k0, read(k0), inv_scale, zero_point)
            return carry
        jax.lax.fori_loop(0, n_chunks, emit, 0)
    store(s_ref.at[pl.ds(m0, bm)], scale, mask=row_mask)
    store(z_ref.at[pl.ds(m0, bm)], zero_point.astype(jnp.int32), mask=row_mask)


def _check(x, mapping_type, target_dtype, quant_min, quant_max, eps):
    x = jnp.asarray(x)
    if x.dtype not in _FLOAT_IN:
        raise TypeError(f"x must be float32, bfloat16 or float16; got {x.dtype}")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last (K) dimension; got shape {x.shape}")
    if mapping_type not in _MAPPINGS:
        raise ValueError(f"mapping_type must be MappingType.SYMMETRIC or "
                         f"MappingType.ASYMMETRIC; got {mapping_type!r}")
    target_dtype = jnp.dtype(target_dtype)
    if target_dtype not in _TARGETS:
        raise TypeError(f"target_dtype must be int8 or uint8; got {target_dtype}")
    quant_min, quant_max = quant_range(target_dtype, quant_min, quant_max)
    eps = float(jnp.finfo(jnp.float32).smallest_normal) if eps is None else float(eps)
    return x, target_dtype, int(quant_min), int(quant_max), eps


def quantize_per_token(x: jax.Array, *, mapping_type: MappingType = MappingType.SYMMETRIC,
                       target_dtype: Any = jnp.int8, quant_min: int | None = None,
                       quant_max: int | None = None, eps: float | None = None,
                       block: BlockConfig | None = None, interpret: bool | None = None
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Quantizes each row (token) of ``x`` with its own scale, in one fused kernel.

    Args:
      x: (..., K) float32/bfloat16/float16; leading dimensions are flattened into M rows.
      mapping_type: ``MappingType.SYMMETRIC`` (default) or ``MappingType.ASYMMETRIC``.
      target_dtype: int8 (default) or uint8.
      quant_min, quant_max: custom integer range inside the dtype's (default the dtype's).
      eps: smallest scale (default float32's smallest normal).
      block: override the table's rows-per-program / K chunk (``block_m``, ``block_k``).
      interpret: run in Pallas interpret mode (default: only when there is no GPU).

    Returns:
      ``(q, scale, zero_point)``: ``q`` of ``x.shape`` and ``target_dtype``; ``scale``
      float32 and ``zero_point`` int32 of shape ``x.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp
      >>> q, s, z = quantize_per_token(jnp.array([[1.0, -2.0, 0.5]]), interpret=True)
      >>> q.tolist(), z.tolist()
      ([[64, -127, 32]], [0])
    """
    x, target_dtype, quant_min, quant_max, eps = _check(x, mapping_type, target_dtype,
                                                        quant_min, quant_max, eps)
    lead, k = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    block = quantize_block(max(m, 1), k) if block is None else block
    if not isinstance(block, BlockConfig):
        raise TypeError(f"block must be a BlockConfig; got {block!r}")
    q, scale, zero_point = _call(x2, m=m, k=k, block=block, mapping=mapping_type,
                                 quant_min=quant_min, quant_max=quant_max, eps=eps,
                                 out_dtype=target_dtype,
                                 interpret=resolve_interpret(interpret))
    return q.reshape(x.shape), scale.reshape(lead), zero_point.reshape(lead)


@functools.partial(jax.jit, static_argnames=(
    "m", "k", "block", "mapping", "quant_min", "quant_max", "eps", "out_dtype", "interpret"))
def _call(x, *, m, k, block, mapping, quant_min, quant_max, eps, out_dtype, interpret):
    kernel = functools.partial(_kernel, m=m, k=k, block=block, mapping=mapping,
                               quant_min=quant_min, quant_max=quant_max, eps=eps,
                               out_dtype=out_dtype, interpret=interpret)
    return pl.pallas_call(
        kernel,
        out_shape=(jax.ShapeDtypeStruct((m, k), out_dtype),
                   jax.ShapeDtypeStruct((m,), jnp.float32),
                   jax.ShapeDtypeStruct((m,), jnp.int32)),
        grid=(cdiv(m, block.block_m),),
        compiler_params=compiler_params(block.num_warps, block.num_stages),
        interpret=interpret,
        name="jaxq_quantize_per_token",
    )(x)


def quantize_per_token_reference(x: jax.Array, *,
                                 mapping_type: MappingType = MappingType.SYMMETRIC,
                                 target_dtype: Any = jnp.int8, quant_min: int | None = None,
                                 quant_max: int | None = None, eps: float | None = None
                                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`quantize_per_token` by the jaxq core (``choose_qparams_affine`` +
    ``quantize_affine`` with ``block_size=(1, K)`` on the float32 input)."""
    x, target_dtype, quant_min, quant_max, eps = _check(x, mapping_type, target_dtype,
                                                        quant_min, quant_max, eps)
    x2 = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    block_size = (1, x2.shape[1])
    scale, zero_point = choose_qparams_affine(
        x2, mapping_type, block_size, target_dtype, quant_min, quant_max, eps=eps,
        scale_dtype=jnp.float32, zero_point_dtype=jnp.int32)
    q = quantize_affine(x2, block_size, scale, zero_point, target_dtype, quant_min, quant_max)
    lead = x.shape[:-1]
    return q.reshape(x.shape), scale.reshape(lead), zero_point.reshape(lead)
