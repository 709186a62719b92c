"""int8 x int8 -> int32 GEMM with a fused dequantize / requantize epilogue (Pallas GPU).

For ``x_q`` (M, K) int8 with per-token scale ``x_scale`` (M,) and optional zero point, and
``w_q`` (N, K) int8 (torch's ``(out_features, in_features)`` layout, the
``jaxq.kernels.PackedWeight`` ``"nk"`` layout) with per-channel scale ``w_scale`` (N,) and
optional zero point, the kernel computes::

    acc[m, n] = sum_k (x_q[m, k] - x_zp[m]) * (w_q[n, k] - w_zp[n])        # exact int32

and writes ``acc`` (``out_dtype=int32``) or the epilogue of :mod:`jaxq.kernels.xla` (torch's
x86/fbgemm formulas, so the result equals the XLA reference backend exactly):

* float32/bfloat16/float16: ``y = fma(float(acc), x_scale * w_scale, bias)``, then ReLU;
* int8/uint8 (requantized per tensor): ``m = (x_scale * w_scale) / out_scale``,
  ``q = clamp(rint((float(acc) + bias / (x_scale * w_scale)) * m) + out_zero_point,
  out_zero_point if relu else quant_min, quant_max)``.

Divisions are IEEE (``div.rn.f32`` on GPU) and ``rint`` rounds half to even, as fbgemm.

Zero points are handled without widening the operands: the int8 dot accumulates
``sum x*w`` on the tensor cores and the kernel also accumulates the row sums of ``x`` and
the column sums of ``w`` (only when the other side has a zero point), then applies
``acc - x_zp*colsum(w) - w_zp*rowsum(x) + K*x_zp*w_zp``. Out-of-range tiles (M, N or K not
a multiple of the block; M = 1) are handled by masked loads (padding with 0, which adds
nothing to any of the sums) and masked stores.

Both operands are K-contiguous ("TN" GEMM): that is the layout NVIDIA's int8 tensor-core
instructions (``mma``/``wgmma`` with 8-bit inputs) read without a shared-memory transpose,
and the one cuBLASLt requires for its int8 kernels.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxq.kernels.gpu._pallas import (
    cdiv, compiler_params, ieee_divide, load, pl, resolve_interpret, round_half_even, store)
from jaxq.kernels.gpu.blocks import BlockConfig, int8_matmul_block

__all__ = ["int8_matmul", "int8_matmul_reference"]

_FLOAT_OUT = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
_QUANT_OUT = {jnp.dtype(jnp.int8): (-128, 127), jnp.dtype(jnp.uint8): (0, 255)}
_INT32 = jnp.dtype(jnp.int32)
_NT = (((1,), (1,)), ((), ()))  # contract the K axis of (M, K) and (N, K).


def _tile_indices(pid, grid_m: int, grid_n: int, group_m: int):
    """Maps a 1-D program id to (tile_m, tile_n), grouping ``group_m`` M-tiles for L2 reuse."""
    if group_m == 1:
        return pid // grid_n, pid % grid_n
    width = group_m * grid_n
    group = pid // width
    first_m = group * group_m
    size_m = jnp.minimum(grid_m - first_m, group_m)
    return first_m + (pid % width) % size_m, (pid % width) // size_m


def _kernel(*refs, m, n, k, block: BlockConfig, has_x_zp, has_w_zp, has_bias, relu,
            out_kind, out_dtype, quant_min, quant_max, interpret):
    refs = list(refs)
    x_ref, w_ref = refs.pop(0), refs.pop(0)
    xs_ref = ws_ref = None
    if out_kind != "int32":
        xs_ref, ws_ref = refs.pop(0), refs.pop(0)
    xz_ref = refs.pop(0) if has_x_zp else None
    wz_ref = refs.pop(0) if has_w_zp else None
    b_ref = refs.pop(0) if has_bias else None
    if out_kind == "quant":
        os_ref, oz_ref = refs.pop(0), refs.pop(0)
    [o_ref] = refs

    bm, bn, bk = block.block_m, block.block_n, block.block_k
    grid_m, grid_n = cdiv(m, bm), cdiv(n, bn)
    tile_m, tile_n = _tile_indices(pl.program_id(0), grid_m, grid_n, block.group_m)
    m0 = pl.multiple_of(tile_m * bm, bm)
    n0 = pl.multiple_of(tile_n * bn, bn)
    rows = m0 + jnp.arange(bm, dtype=jnp.int32)
    cols = n0 + jnp.arange(bn, dtype=jnp.int32)
    # Static knowledge of divisibility drops the masks from the hot loop.
    row_mask = rows < m if m % bm else None
    col_mask = cols < n if n % bn else None

    def both(a, b):
        if a is None:
            return b
        if b is None:
            return a
        return a & b

    def body(kb, carry):
        acc, xsum, wsum = carry
        k0 = pl.multiple_of(kb * bk, bk)
        kk = k0 + jnp.arange(bk, dtype=jnp.int32)
        k_mask = kk < k if k % bk else None
        x_mask = both(None if row_mask is None else row_mask[:, None],
                      None if k_mask is None else k_mask[None, :])
        w_mask = both(None if col_mask is None else col_mask[:, None],
                      None if k_mask is None else k_mask[None, :])
        x = load(x_ref.at[pl.ds(m0, bm), pl.ds(k0, bk)], mask=x_mask,
                 other=None if x_mask is None else 0)
        w = load(w_ref.at[pl.ds(n0, bn), pl.ds(k0, bk)], mask=w_mask,
                 other=None if w_mask is None else 0)
        acc = acc + jax.lax.dot_general(x, w, _NT, preferred_element_type=jnp.int32)
        if has_w_zp:
            xsum = xsum + jnp.sum(x.astype(jnp.int32), axis=1)
        if has_x_zp:
            wsum = wsum + jnp.sum(w.astype(jnp.int32), axis=1)
        return acc, xsum, wsum

    init = (jnp.zeros((bm, bn), jnp.int32), jnp.zeros((bm,), jnp.int32),
            jnp.zeros((bn,), jnp.int32))
    acc, xsum, wsum = jax.lax.fori_loop(0, cdiv(k, bk), body, init)

    def vector(ref, start, size, mask, other):
        return load(ref.at[pl.ds(start, size)], mask=mask,
                    other=None if mask is None else other)

    if has_x_zp:
        xz = vector(xz_ref, m0, bm, row_mask, 0)
        acc = acc - xz[:, None] * wsum[None, :]
    if has_w_zp:
        wz = vector(wz_ref, n0, bn, col_mask, 0)
        acc = acc - xsum[:, None] * wz[None, :]
    if has_x_zp and has_w_zp:
        acc = acc + (xz[:, None] * wz[None, :]) * k

    if out_kind == "int32":
        result = acc
    else:
        # Padded rows/columns get scale 1 so that no division below sees a zero.
        xs = vector(xs_ref, m0, bm, row_mask, 1.0)
        ws = vector(ws_ref, n0, bn, col_mask, 1.0)
        act_times_w = xs[:, None] * ws[None, :]
        value = acc.astype(jnp.float32)
        bias = vector(b_ref, n0, bn, col_mask, 0.0)[None, :] if has_bias else None
        if out_kind == "float":
            # a * b + c is contracted to one FMA by Triton (and by XLA:CPU in interpret
            # mode), which is the reference's single-rounding fma(acc, sx*sw, bias).
            y = value * act_times_w if bias is None else value * act_times_w + bias
            result = (jnp.maximum(y, 0.0) if relu else y).astype(out_dtype)
        else:
            multiplier = ieee_divide(act_times_w, os_ref[0], interpret)
            if bias is not None:
                value = value + ieee_divide(bias, act_times_w, interpret)
            scaled = jnp.minimum(jnp.maximum(value * multiplier, -2.0**31), 2.0**31 - 256)
            q = round_half_even(scaled, interpret).astype(jnp.int32) + oz_ref[0]
            low = oz_ref[0] if relu else quant_min
            result = jnp.minimum(jnp.maximum(q, low), quant_max).astype(out_dtype)

    out_mask = both(None if row_mask is None else row_mask[:, None],
                    None if col_mask is None else col_mask[None, :])
    store(o_ref.at[pl.ds(m0, bm), pl.ds(n0, bn)], result, mask=out_mask)


def _check_vector(value, length: int, name: str, dtype) -> jax.Array | None:
    if value is None:
        return None
    value = jnp.asarray(value)
    if value.ndim == 2 and 1 in value.shape:
        value = value.reshape(-1)
    if value.ndim == 0 or value.shape == (1,):
        value = jnp.broadcast_to(value.reshape(()), (length,))
    if value.shape != (length,):
        raise ValueError(f"{name} must be a scalar or have shape ({length},); got {value.shape}")
    return value.astype(dtype)


def _check_operands(x_q, w_q):
    x_q, w_q = jnp.asarray(x_q), jnp.asarray(w_q)
    if x_q.dtype != jnp.int8 or w_q.dtype != jnp.int8:
        raise TypeError(f"x_q and w_q must be int8; got {x_q.dtype} and {w_q.dtype}")
    if x_q.ndim != 2 or w_q.ndim != 2 or x_q.shape[1] != w_q.shape[1]:
        raise ValueError(f"x_q must be (M, K) and w_q (N, K); got {x_q.shape} and {w_q.shape}")
    return x_q, w_q


def _out_kind(out_dtype, out_scale, bias, relu):
    out_dtype = jnp.dtype(out_dtype)
    if out_dtype == _INT32:
        if bias is not None or relu or out_scale is not None:
            raise ValueError("out_dtype=int32 returns the raw accumulator: bias, relu and "
                             "out_scale must be unset")
        return "int32", out_dtype
    if out_dtype in _FLOAT_OUT:
        if out_scale is not None:
            raise ValueError(f"out_scale is only used with an int8/uint8 out_dtype; got "
                             f"out_dtype={out_dtype}")
        return "float", out_dtype
    if out_dtype in _QUANT_OUT:
        if out_scale is None:
            raise ValueError(f"out_dtype={out_dtype} requantizes the output: out_scale is "
                             "required")
        return "quant", out_dtype
    raise TypeError(f"out_dtype must be one of float32, bfloat16, float16, int8, uint8 or "
                    f"int32; got {out_dtype}")


def _quant_range(out_dtype, quant_min, quant_max):
    lo, hi = _QUANT_OUT[jnp.dtype(out_dtype)]
    quant_min = lo if quant_min is None else int(quant_min)
    quant_max = hi if quant_max is None else int(quant_max)
    if not lo <= quant_min <= quant_max <= hi:
        raise ValueError(f"quant_min/quant_max must satisfy {lo} <= quant_min <= quant_max <= "
                         f"{hi}; got {quant_min}, {quant_max}")
    return quant_min, quant_max


def int8_matmul(x_q: jax.Array, w_q: jax.Array, x_scale: Any = None, w_scale: Any = None, *,
                x_zero_point: Any = None, w_zero_point: Any = None, bias: Any = None,
                relu: bool = False, out_dtype: Any = jnp.float32, out_scale: Any = None,
                out_zero_point: Any = 0, quant_min: int | None = None,
                quant_max: int | None = None, block: BlockConfig | None = None,
                interpret: bool | None = None) -> jax.Array:
    """int8 GEMM with per-token x per-channel dequantization fused into the epilogue.

    Args:
      x_q: (M, K) int8 activations.
      w_q: (N, K) int8 weights (torch layout; a Flax kernel ``(K, N)`` is ``kernel.T``).
      x_scale: float32 scalar or (M,) per-token scales (unused for ``out_dtype=int32``).
      w_scale: float32 scalar or (N,) per-channel scales (unused for ``out_dtype=int32``).
      x_zero_point: optional int scalar or (M,) zero points of ``x_q``.
      w_zero_point: optional int scalar or (N,) zero points of ``w_q``.
      bias: optional (N,) float bias, added in float32 after the scales.
      relu: apply ``max(y, 0)`` after the bias.
      out_dtype: float32, bfloat16 or float16 (dequantized output), int8 or uint8
        (requantized with ``out_scale``/``out_zero_point``), or int32 (the exact
        zero-point-corrected accumulator, no scale/bias/ReLU).
      out_scale, out_zero_point: per-tensor output qparams for an int8/uint8 output.
      quant_min, quant_max: output clamp range (default the dtype's).
      block: override the :mod:`~jaxq.kernels.gpu.blocks` table entry.
      interpret: run in Pallas interpret mode (default: only when there is no GPU).

    Returns:
      (M, N) array of ``out_dtype``.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.ones((3, 40), jnp.int8); w = jnp.ones((72, 40), jnp.int8)
      >>> int8_matmul(x, w, 0.5, 0.25, interpret=True)[0, 0]
      Array(5., dtype=float32)
    """
    x_q, w_q = _check_operands(x_q, w_q)
    (m, k), n = x_q.shape, w_q.shape[0]
    kind, out_dtype = _out_kind(out_dtype, out_scale, bias, relu)
    if kind != "int32" and (x_scale is None or w_scale is None):
        raise ValueError(f"x_scale and w_scale are required for out_dtype={out_dtype}")
    quant_min, quant_max = (_quant_range(out_dtype, quant_min, quant_max) if kind == "quant"
                            else (None, None))
    block = int8_matmul_block(m, n, k) if block is None else block
    if not isinstance(block, BlockConfig):
        raise TypeError(f"block must be a BlockConfig; got {block!r}")
    if block.block_m < 16 or block.block_n < 16 or block.block_k < 32:
        raise ValueError(f"int8_matmul needs block_m, block_n >= 16 and block_k >= 32 "
                         f"(tensor-core dot); got {block}")

    inputs = [x_q, w_q]
    if kind != "int32":
        inputs += [_check_vector(x_scale, m, "x_scale", jnp.float32),
                   _check_vector(w_scale, n, "w_scale", jnp.float32)]
    x_zp = _check_vector(x_zero_point, m, "x_zero_point", jnp.int32)
    w_zp = _check_vector(w_zero_point, n, "w_zero_point", jnp.int32)
    inputs += [v for v in (x_zp, w_zp) if v is not None]
    if bias is not None:
        inputs.append(_check_vector(bias, n, "bias", jnp.float32))
    if kind == "quant":
        scale = jnp.asarray(out_scale, jnp.float32)
        if scale.size != 1:
            raise ValueError(f"out_scale must be a per-tensor scalar; got shape {scale.shape}")
        inputs += [scale.reshape(1), jnp.asarray(out_zero_point, jnp.int32).reshape(1)]
    return _call(tuple(inputs), m=m, n=n, k=k, block=block, has_x_zp=x_zp is not None,
                 has_w_zp=w_zp is not None, has_bias=bias is not None, relu=bool(relu),
                 out_kind=kind, out_dtype=out_dtype, quant_min=quant_min,
                 quant_max=quant_max, interpret=resolve_interpret(interpret))


@functools.partial(jax.jit, static_argnames=(
    "m", "n", "k", "block", "has_x_zp", "has_w_zp", "has_bias", "relu", "out_kind",
    "out_dtype", "quant_min", "quant_max", "interpret"))
def _call(inputs, *, m, n, k, block, has_x_zp, has_w_zp, has_bias, relu, out_kind,
          out_dtype, quant_min, quant_max, interpret):
    kernel = functools.partial(
        _kernel, m=m, n=n, k=k, block=block, has_x_zp=has_x_zp, has_w_zp=has_w_zp,
        has_bias=has_bias, relu=relu, out_kind=out_kind, out_dtype=out_dtype,
        quant_min=quant_min, quant_max=quant_max, interpret=interpret)
    grid = cdiv(m, block.block_m) * cdiv(n, block.block_n)
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((m, n), out_dtype),
        grid=(grid,),
        compiler_params=compiler_params(block.num_warps, block.num_stages),
        interpret=interpret,
        name="jaxq_int8_matmul",
    )(*inputs)


def int8_matmul_reference(x_q, w_q, x_scale=None, w_scale=None, *, x_zero_point=None,
                          w_zero_point=None, bias=None, relu=False, out_dtype=jnp.float32,
                          out_scale=None, out_zero_point=0, quant_min=None,
                          quant_max=None) -> jax.Array:
    """Pure-jnp reference of :func:`int8_matmul`: XLA int32 dot + :mod:`jaxq.kernels.xla`'s
    epilogues."""
    x_q, w_q = _check_operands(x_q, w_q)
    (m, k), n = x_q.shape, w_q.shape[0]
    kind, out_dtype = _out_kind(out_dtype, out_scale, bias, relu)
    x = x_q.astype(jnp.int32)
    w = w_q.astype(jnp.int32)
    if x_zero_point is not None:
        x = x - _check_vector(x_zero_point, m, "x_zero_point", jnp.int32)[:, None]
    if w_zero_point is not None:
        w = w - _check_vector(w_zero_point, n, "w_zero_point", jnp.int32)[:, None]
    acc = jax.lax.dot_general(x, w, _NT, preferred_element_type=jnp.int32)
    if kind == "int32":
        return acc
    # The epilogue formulas are written once, in the XLA reference backend.
    from jaxq.kernels.xla import float_epilogue, requantize_epilogue
    x_scale = _check_vector(x_scale, m, "x_scale", jnp.float32)
    w_scale = _check_vector(w_scale, n, "w_scale", jnp.float32)
    bias = None if bias is None else _check_vector(bias, n, "bias", jnp.float32)
    if kind == "float":
        return float_epilogue(acc, x_scale, w_scale, bias, bool(relu)).astype(out_dtype)
    quant_min, quant_max = _quant_range(out_dtype, quant_min, quant_max)
    return requantize_epilogue(acc, x_scale, w_scale,
                               jnp.asarray(out_scale, jnp.float32).reshape(()),
                               jnp.asarray(out_zero_point, jnp.int32).reshape(()),
                               quant_min, quant_max, bias, bool(relu), out_dtype)
