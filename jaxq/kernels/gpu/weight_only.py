"""Weight-only quantized GEMM for decode (float activations x int8 / packed int4 weights).

Computes ``y = x @ W.T (+ bias)`` for float activations ``x`` (M, K) and a quantized
weight ``W = (q - zero_point) * scale`` of shape (N, K) (torch's ``(out_features,
in_features)``; the ``jaxq.kernels.PackedWeight`` ``"nk"`` / ``"nk4"`` layouts), with the
weight dequantised in registers - it is read from HBM at 1 or 0.5 bytes per element, which
is what bounds decode (M = 1..64) throughput.

Weight formats:

* ``bits=8``: ``w`` (N, K) int8; ``scale`` (N,) per channel or (N, K // G) per group.
* ``bits=4``: ``w`` (N, K // 2) uint8, two values per byte along K, element ``2j`` in the
  low nibble and ``2j + 1`` in the high nibble (:func:`jaxq.core.packing.pack` along K,
  torch's ``quint4x2`` order). Nibbles are unsigned [0, 15] (the ``PackedWeight``
  convention, with a zero point per group) or, with ``signed=True``, two's complement
  [-8, 7]. ``scale`` and ``zero_point`` are (N, K // G) with G in {32, 64, 128, ...}.

Kernel structure (Pallas Triton): each program owns a (block_m, block_n) output tile and
a range of K (``split_k`` programs per tile add their float32 partial sums in a tiny XLA
reduction). The K loop walks one group (or ``block_k`` columns for per-channel scales) at
a time and computes ``s * (x . q - z * sum(x))`` per group - the integer weights are exact
in the activation dtype, so the tensor-core dot (M >= 2, padded to 16 rows) or the
broadcast-multiply-reduce GEMV (M = 1, ``block_m == 1``) sees unrounded weights and the
scale is applied once per group in float32. For int4 the even/odd-k halves of ``x`` are
split once outside the kernel (M x K, negligible at decode sizes) so that the unpacked
low/high nibble tiles meet matching activation tiles without an in-register interleave.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxq.core import packing
from jaxq.kernels.gpu._pallas import cdiv, compiler_params, load, pl, resolve_interpret, store
from jaxq.kernels.gpu.blocks import BlockConfig, weight_only_block

__all__ = ["weight_only_matmul", "weight_only_matmul_reference", "dequantize_weight"]

_FLOAT = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
_NT = (((1,), (1,)), ((), ()))


def _kernel(*refs, m, n, k, bits, signed, group, has_zp, has_bias, block: BlockConfig,
            split_k, out_dtype, compute_dtype):
    refs = list(refs)
    xs = [refs.pop(0)] if bits == 8 else [refs.pop(0), refs.pop(0)]
    w_ref, s_ref = refs.pop(0), refs.pop(0)
    z_ref = refs.pop(0) if has_zp else None
    b_ref = refs.pop(0) if has_bias else None
    [o_ref] = refs

    bm, bn = block.block_m, block.block_n
    bk = group if group is not None else block.block_k  # K columns per iteration.
    width = bk // 2 if bits == 4 else bk                  # stored columns per iteration.
    gemv = bm == 1
    grid_n = cdiv(n, bn)
    tile = pl.program_id(0)
    tile_m, tile_n = tile // grid_n, tile % grid_n
    m0 = tile_m * bm if gemv else pl.multiple_of(tile_m * bm, bm)
    n0 = pl.multiple_of(tile_n * bn, bn)
    rows = m0 + jnp.arange(bm, dtype=jnp.int32)
    cols = n0 + jnp.arange(bn, dtype=jnp.int32)
    row_mask = None if gemv or m % bm == 0 else rows < m
    col_mask = cols < n if n % bn else None
    k_tail = group is None and k % bk != 0  # only per-channel 8-bit K can be ragged.

    n_iter = k // group if group is not None else cdiv(k, bk)
    per_split = cdiv(n_iter, split_k)
    first = pl.program_id(1) * per_split
    last = jnp.minimum(first + per_split, n_iter)

    def and_(a, b):
        return b if a is None else (a if b is None else a & b)

    def read_x(x_ref, c0, k_mask):
        if gemv:
            return load(x_ref.at[m0, pl.ds(c0, width)], mask=k_mask,
                        other=None if k_mask is None else 0)
        mask = and_(None if row_mask is None else row_mask[:, None],
                    None if k_mask is None else k_mask[None, :])
        return load(x_ref.at[pl.ds(m0, bm), pl.ds(c0, width)], mask=mask,
                    other=None if mask is None else 0)

    def contract(x, w):
        """(bm, width) x (bn, width) -> (bm, bn) float32, or (width,) x ... -> (bn,)."""
        if gemv:
            return jnp.sum(w.astype(jnp.float32) * x.astype(jnp.float32)[None, :], axis=1)
        return jax.lax.dot_general(x, w.astype(compute_dtype), _NT,
                                   preferred_element_type=jnp.float32)

    def row_sum(x):
        return jnp.sum(x.astype(jnp.float32), axis=-1)

    def group_param(ref, it):
        return load(ref.at[pl.ds(n0, bn), it], mask=col_mask,
                    other=None if col_mask is None else 0).astype(jnp.float32)

    def body(it, acc):
        c0 = pl.multiple_of(it * width, width)
        k_mask = None
        if k_tail:
            k_mask = (c0 + jnp.arange(width, dtype=jnp.int32)) < k
        w_mask = and_(None if col_mask is None else col_mask[:, None],
                      None if k_mask is None else k_mask[None, :])
        packed = load(w_ref.at[pl.ds(n0, bn), pl.ds(c0, width)], mask=w_mask,
                      other=None if w_mask is None else 0)
        if bits == 8:
            x = read_x(xs[0], c0, k_mask)
            part = contract(x, packed)
            xsum = row_sum(x) if has_zp else None
        else:
            byte = packed.astype(jnp.int32)
            lo, hi = byte & 15, byte >> 4
            if signed:
                lo, hi = (lo ^ 8) - 8, (hi ^ 8) - 8
            x_even, x_odd = read_x(xs[0], c0, None), read_x(xs[1], c0, None)
            part = contract(x_even, lo) + contract(x_odd, hi)
            xsum = row_sum(x_even) + row_sum(x_odd) if has_zp else None
        if group is None:
            return acc + part
        if has_zp:
            z = group_param(z_ref, it)
            part = part - (xsum * z if gemv else xsum[:, None] * z[None, :])
        s = group_param(s_ref, it)
        return acc + (part * s if gemv else part * s[None, :])

    shape = (bn,) if gemv else (bm, bn)
    acc = jax.lax.fori_loop(first, last, body, jnp.zeros(shape, jnp.float32))
    if group is None:  # per-channel parameters: applied once, after the K loop.
        if has_zp:
            # sum_k x (q - z) = x.q - z * sum_k x; recomputing sum_k x here is one more
            # pass over x's K range, negligible next to the weight stream.
            def xsum_body(it, total):
                c0 = pl.multiple_of(it * width, width)
                k_mask = ((c0 + jnp.arange(width, dtype=jnp.int32)) < k) if k_tail else None
                return total + row_sum(read_x(xs[0], c0, k_mask))
            xsum = jax.lax.fori_loop(first, last, xsum_body,
                                     jnp.zeros((() if gemv else (bm,)), jnp.float32))
            z = load(z_ref.at[pl.ds(n0, bn)], mask=col_mask,
                     other=None if col_mask is None else 0).astype(jnp.float32)
            acc = acc - (xsum * z if gemv else xsum[:, None] * z[None, :])
        s = load(s_ref.at[pl.ds(n0, bn)], mask=col_mask,
                 other=None if col_mask is None else 0)
        acc = acc * (s if gemv else s[None, :])

    if split_k == 1:
        if has_bias:
            b = load(b_ref.at[pl.ds(n0, bn)], mask=col_mask,
                     other=None if col_mask is None else 0)
            acc = acc + (b if gemv else b[None, :])
        result, lead = acc.astype(out_dtype), ()
    else:  # float32 partial sums, one slab per K split.
        result, lead = acc, (pl.program_id(1),)
    if gemv:
        store(o_ref.at[(*lead, m0, pl.ds(n0, bn))], result, mask=col_mask)
    else:
        mask = and_(None if row_mask is None else row_mask[:, None],
                    None if col_mask is None else col_mask[None, :])
        store(o_ref.at[(*lead, pl.ds(m0, bm), pl.ds(n0, bn))], result, mask=mask)


def _param(value, name, n, groups, dtype):
    value = jnp.asarray(value)
    if groups is None:
        if value.shape == (n, 1):
            value = value.reshape(n)
        if value.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) like scale; got {value.shape}")
    elif value.shape != (n, groups):
        raise ValueError(f"{name} must have shape ({n}, {groups}) like scale; got {value.shape}")
    return value.astype(dtype)


def _check(x, w, scale, zero_point, bias, bits, out_dtype):
    x, w, scale = jnp.asarray(x), jnp.asarray(w), jnp.asarray(scale)
    if x.dtype not in _FLOAT:
        raise TypeError(f"x must be float32, bfloat16 or float16; got {x.dtype}")
    if x.ndim < 1:
        raise ValueError("x must have a last (K) dimension")
    if bits not in (8, 4):
        raise ValueError(f"bits must be 8 or 4; got {bits!r}")
    want = jnp.int8 if bits == 8 else jnp.uint8
    if w.dtype != want or w.ndim != 2:
        raise TypeError(f"w must be a 2-D {jnp.dtype(want)} array for bits={bits}; got "
                        f"{w.dtype}{w.shape}")
    k = x.shape[-1]
    n = w.shape[0]
    stored_k = k if bits == 8 else k // 2
    if (bits == 4 and k % 2) or w.shape[1] != stored_k:
        raise ValueError(f"x has K={k}, so w must have shape (N, {k if bits == 8 else k / 2}) "
                         f"for bits={bits}; got {w.shape}")
    if not jnp.issubdtype(scale.dtype, jnp.floating):
        raise TypeError(f"scale must be a float array; got {scale.dtype}")
    if scale.ndim == 2 and scale.shape[1] != 1:
        groups = scale.shape[1]
        if scale.shape[0] != n or k % groups:
            raise ValueError(f"scale must be (N,) or (N, K // group_size) with N={n}, K={k}; "
                             f"got {scale.shape}")
        group = k // groups
        if bits == 4 and (group < 32 or group & (group - 1)):
            raise ValueError(f"int4 group_size must be a power of two >= 32; got {group}")
        if bits == 8 and (group < 32 or group & (group - 1)):
            raise ValueError(f"int8 per-group group_size must be a power of two >= 32; got "
                             f"{group}")
    else:
        if bits == 4:
            raise ValueError(f"bits=4 needs group-wise scales (N, K // group_size); got "
                             f"{scale.shape}")
        groups = group = None
    scale = _param(scale, "scale", n, groups, jnp.float32)
    if zero_point is not None:
        zero_point = _param(zero_point, "zero_point", n, groups, jnp.float32)
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.shape != (n,):
            raise ValueError(f"bias must have shape ({n},); got {bias.shape}")
        bias = bias.astype(jnp.float32)
    out_dtype = x.dtype if out_dtype is None else jnp.dtype(out_dtype)
    if out_dtype not in _FLOAT:
        raise TypeError(f"out_dtype must be float32, bfloat16 or float16; got {out_dtype}")
    return x, w, scale, zero_point, bias, n, k, group, out_dtype


def weight_only_matmul(x: jax.Array, w: jax.Array, scale: jax.Array, zero_point: Any = None,
                       bias: Any = None, *, bits: int = 8, signed: bool = False,
                       out_dtype: Any = None, block: BlockConfig | None = None,
                       interpret: bool | None = None) -> jax.Array:
    """``x @ ((q - zero_point) * scale).T + bias`` with the weight dequantised in registers.

    Args:
      x: (..., K) float32/bfloat16/float16 activations (leading dims flattened into M).
      w: ``bits=8``: (N, K) int8. ``bits=4``: (N, K // 2) uint8, K-pairs packed low nibble
        first (:func:`jaxq.core.packing.pack` with ``bits=4`` along K).
      scale: float (N,) per channel (8-bit only) or (N, K // G) per group of G input
        features (G a power of two >= 32).
      zero_point: optional, same shape as ``scale`` (integer values, any numeric dtype).
      bias: optional (N,) float.
      bits: 8 or 4.
      signed: 4-bit only: nibbles are two's complement [-8, 7] instead of [0, 15].
      out_dtype: float output dtype (default ``x.dtype``).
      block: override the table entry (``block_m == 1`` selects the GEMV form).
      interpret: run in Pallas interpret mode (default: only when there is no GPU).

    Returns:
      (..., N) array of ``out_dtype``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxq.core.packing import pack
      >>> q = jnp.full((72, 64), 3, jnp.uint8)               # (N, K) nibbles
      >>> y = weight_only_matmul(jnp.ones((1, 64)), pack(q, 4), jnp.full((72, 2), 0.5),
      ...                        bits=4, interpret=True)
      >>> float(y[0, 0])
      96.0
    """
    x, w, scale, zero_point, bias, n, k, group, out_dtype = _check(
        x, w, scale, zero_point, bias, bits, out_dtype)
    if not isinstance(signed, bool):
        raise TypeError(f"signed must be a bool; got {signed!r}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    block = weight_only_block(m, n, k, group) if block is None else block
    if not isinstance(block, BlockConfig):
        raise TypeError(f"block must be a BlockConfig; got {block!r}")
    if block.block_m != 1 and (block.block_m < 16 or block.block_n < 16):
        raise ValueError(f"the tensor-core form needs block_m, block_n >= 16 (or block_m == 1 "
                         f"for the GEMV form); got {block}")
    y = _call(x2, w, scale, zero_point, bias, m=m, n=n, k=k, bits=bits, signed=signed,
              group=group, block=block, out_dtype=out_dtype,
              interpret=resolve_interpret(interpret))
    return y.reshape(*lead, n)


@functools.partial(jax.jit, static_argnames=(
    "m", "n", "k", "bits", "signed", "group", "block", "out_dtype", "interpret"))
def _call(x, w, scale, zero_point, bias, *, m, n, k, bits, signed, group, block, out_dtype,
          interpret):
    iters = k // group if group is not None else cdiv(k, block.block_k)
    split_k = max(1, min(block.split_k, iters))
    if bits == 4:
        pairs = x.reshape(m, k // 2, 2)
        inputs = [pairs[..., 0], pairs[..., 1]]
    else:
        inputs = [x]
    inputs += [w, scale] + [v for v in (zero_point, bias) if v is not None]
    kernel = functools.partial(
        _kernel, m=m, n=n, k=k, bits=bits, signed=signed, group=group,
        has_zp=zero_point is not None, has_bias=bias is not None and split_k == 1,
        block=block, split_k=split_k, out_dtype=out_dtype, compute_dtype=x.dtype)
    if split_k == 1:
        out_shape = jax.ShapeDtypeStruct((m, n), out_dtype)
    else:
        out_shape = jax.ShapeDtypeStruct((split_k, m, n), jnp.float32)
        if bias is not None:
            inputs.pop()  # added after the split-K reduction instead.
    grid = (cdiv(m, block.block_m) * cdiv(n, block.block_n), split_k)
    y = pl.pallas_call(
        kernel, out_shape=out_shape, grid=grid,
        compiler_params=compiler_params(block.num_warps, block.num_stages),
        interpret=interpret, name=f"jaxq_weight_only_int{bits}_matmul",
    )(*inputs)
    if split_k == 1:
        return y
    y = jnp.sum(y, axis=0)
    if bias is not None:
        y = y + bias
    return y.astype(out_dtype)


def dequantize_weight(w: jax.Array, scale: jax.Array, zero_point: Any = None, *,
                      bits: int = 8, signed: bool = False) -> jax.Array:
    """The float32 (N, K) weight ``(q - zero_point) * scale`` of a weight-only operand."""
    w, scale = jnp.asarray(w), jnp.asarray(scale, jnp.float32)
    if bits == 4:
        q = packing.unpack(w, bits=4, size=2 * w.shape[1], signed=signed)
    else:
        q = w
    q = q.astype(jnp.float32)
    n, k = q.shape

    def expand(p):
        p = jnp.asarray(p, jnp.float32)
        if p.ndim == 2 and p.shape[1] != 1:
            return jnp.repeat(p, k // p.shape[1], axis=1)
        return p.reshape(n, 1)

    if zero_point is not None:
        q = q - expand(zero_point)
    return q * expand(scale)


def weight_only_matmul_reference(x, w, scale, zero_point=None, bias=None, *, bits=8,
                                 signed=False, out_dtype=None) -> jax.Array:
    """Pure-jnp reference: dequantize the weight to float32, then one float32 matmul."""
    x, w, scale, zero_point, bias, n, k, group, out_dtype = _check(
        x, w, scale, zero_point, bias, bits, out_dtype)
    weight = dequantize_weight(w, scale, zero_point, bits=bits, signed=signed)
    y = jax.lax.dot_general(x.astype(jnp.float32), weight, (((x.ndim - 1,), (1,)), ((), ())),
                            precision=jax.lax.Precision.HIGHEST)
    if bias is not None:
        y = y + bias
    return y.astype(out_dtype)
