"""Affine quantization for any granularity: choose qparams, quantize, dequantize.

The formulas (torchao's ``quant_primitives`` and torch.ao's, see
shared/reference/torch_numerics.md), written once here and reused by QTensor,
fake-quant, observers and modules:

* quantize:   ``q = clamp(round_half_even(x * (1 / s)) + zp, qmin, qmax)`` in float32
  (in the promoted dtype of x and s, as torch);
* dequantize: ``x = (float32(q) - zp) * s``;
* NaN quantizes to ``qmin`` (torch's fake-quant does the same; integer casts of NaN
  are undefined in torch), +inf to ``qmax`` and -inf to ``qmin``.

``block_size`` has one entry per input dimension (see :mod:`jaxq.core.granularity`).
The parameter tensors (scale, zero_point) hold one value per block; any shape with
that many elements in row-major block order is accepted, as in torchao.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> x = jnp.linspace(-1.0, 1.0, 8).reshape(2, 4)
  >>> block = jaxq.get_block_size(x.shape, jaxq.PerAxis(0))
  >>> scale, zp = jaxq.choose_qparams_affine(x, jaxq.MappingType.ASYMMETRIC, block, jnp.int8)
  >>> q = jaxq.quantize_affine(x, block, scale, zp, jnp.int8)
  >>> y = jaxq.dequantize_affine(q, block, scale, zp, jnp.int8)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.dtypes import QuantDType, as_quant_dtype
from jaxq.core.float_arithmetic import separately_rounded
from jaxq.core.granularity import MappingType, ZeroPointDomain, check_block_size
from jaxq.core.ranges import quant_range

_FLOAT_INPUTS = (jnp.float32, jnp.float16, jnp.bfloat16)


# ---------------------------------------------------------------------------
# Rounding with a straight-through gradient: torchao's _Round.
# ---------------------------------------------------------------------------
@jax.custom_jvp
def round_ste(x: jax.Array) -> jax.Array:
    """Round half to even; the derivative is taken as 1 (straight-through)."""
    return jnp.round(x)


@round_ste.defjvp
def _round_ste_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.round(x), dx


def exact_divide(numerator: Any, denominator: Any) -> jax.Array:
    """IEEE ``numerator / denominator``, as torch computes it.

    XLA's algebraic simplifier rewrites ``a / broadcast(b)`` into ``a * (1 / b)``, which
    is off by one ulp for ~70% of float32 inputs. Broadcasting the denominator behind an
    optimization barrier keeps the true division; use this wherever torch divides by a
    scalar or a broadcast parameter and bit-exact agreement matters.
    """
    python_scalar = isinstance(denominator, (int, float))
    numerator, denominator = jnp.asarray(numerator), jnp.asarray(denominator)
    # A Python scalar takes the array's dtype, as in torch (bfloat16 / 127.5 is bfloat16).
    dtype = numerator.dtype if python_scalar else jnp.result_type(numerator, denominator)
    shape = jnp.broadcast_shapes(numerator.shape, denominator.shape)
    numerator = jnp.broadcast_to(numerator.astype(dtype), shape)
    denominator = jnp.broadcast_to(denominator.astype(dtype), shape)
    # Under vmap an unbatched denominator stays unbatched, and the batched division
    # broadcasts it again (then gets rewritten). Selecting through the numerator makes
    # the denominator batched whenever the numerator is; the select is a no-op for the
    # quotient (a NaN numerator gives NaN either way).
    denominator = jnp.where(jnp.isnan(numerator), numerator, denominator)
    return numerator / jax.lax.optimization_barrier(denominator)


# ---------------------------------------------------------------------------
# The element-wise formulas. Parameters must already broadcast against x.
# ---------------------------------------------------------------------------
def quantize_values(x: jax.Array, scale: jax.Array, zero_point: jax.Array | None,
                    quant_min: float, quant_max: float) -> jax.Array:
    """``clamp(round(x * (1/scale)) + zero_point, qmin, qmax)``, unclamped NaN -> qmin.

    The one quantization formula of jaxq. It is computed in the promoted dtype of
    ``x`` and ``scale`` as torch does (float32 for float32 inputs; bfloat16 when both
    are bfloat16), and is differentiable with torchao's semantics (straight-through
    round, the clamp masks the gradient).
    """
    q = rounded_values(x, scale, zero_point)
    return _clamp(q, quant_min, quant_max)


def _clamp(q: jax.Array, quant_min: float, quant_max: float) -> jax.Array:
    """``clamp(q, qmin, qmax)`` with NaN -> qmin and torch.clamp's gradient.

    torch.clamp passes the gradient on the closed interval ``[qmin, qmax]``; jnp.clip
    gives 0.5 at the bounds (max/min split ties), so the clamp is spelled with where.
    """
    low = jnp.asarray(quant_min, q.dtype)
    high = jnp.asarray(quant_max, q.dtype)
    clamped = jnp.where(q < low, low, jnp.where(q > high, high, q))
    return jnp.where(jnp.isnan(q), low, clamped)


def rounded_values(x: jax.Array, scale: jax.Array, zero_point: jax.Array | None
                   ) -> jax.Array:
    """``round(x * (1/scale)) + zero_point`` before clamping (see :func:`quantize_values`)."""
    scale = jnp.asarray(scale)
    compute_dtype = jnp.result_type(x.dtype, scale.dtype)
    q = round_ste(x.astype(compute_dtype) * (1.0 / scale.astype(compute_dtype)))
    if zero_point is not None:
        q = q + jnp.asarray(zero_point).astype(compute_dtype)
    return q


def dequantize_values(q: jax.Array, scale: jax.Array, zero_point: jax.Array | None,
                      output_dtype: Any = jnp.float32) -> jax.Array:
    """``(q - zero_point) * scale`` as torch computes it, cast to ``output_dtype``."""
    value = q.astype(output_dtype)
    if zero_point is not None:
        value = value - jnp.asarray(zero_point).astype(output_dtype)
    return (value * jnp.asarray(scale)).astype(output_dtype)


def cast_quantized(q: jax.Array, dtype: QuantDType) -> jax.Array:
    """Casts clamped float values to ``dtype``'s storage dtype (exact for integers)."""
    return q.astype(dtype.storage_dtype)


# ---------------------------------------------------------------------------
# Block layout helpers.
# ---------------------------------------------------------------------------
def reduction_params(block_size: Sequence[int], input_shape: Sequence[int]
                     ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """torchao's ``_get_reduction_params``: the blocked view shape and the dims to reduce.

    Example: block (3, 3, 2, 10) on shape (3, 3, 10, 10) gives the view
    (3, 3, 5, 2, 10) and reduction dims (0, 1, 3, 4).
    """
    block = check_block_size(input_shape, block_size)
    view_shape: list[int] = []
    dims: list[int] = []
    for size, b in zip(input_shape, block):
        if b != size and b > 1:
            view_shape += [size // b, b]
            dims.append(len(view_shape) - 1)
        else:
            view_shape.append(size)
            if b != 1:
                dims.append(len(view_shape) - 1)
    return tuple(view_shape), tuple(dims)


def _param_shape(view_shape: Sequence[int], dims: Sequence[int]) -> tuple[int, ...]:
    return tuple(1 if i in dims else s for i, s in enumerate(view_shape))


def _reshape_param(param: Any, shape: tuple[int, ...], argument: str) -> jax.Array:
    param = jnp.asarray(param)
    expected = int(np.prod(shape))
    if param.size != expected:
        raise ValueError(f"{argument} has {param.size} elements (shape {param.shape}) but "
                         f"the block_size gives {expected} blocks")
    return param.reshape(shape)


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def check_scale(scale: Any, argument: str = "scale") -> None:
    """Raises ValueError when a concrete ``scale`` has a non-positive or NaN entry."""
    if _is_concrete(scale):
        values = np.asarray(scale, dtype=np.float64)
        if values.size and not np.all(values > 0):
            raise ValueError(f"{argument} must be positive; got {values.ravel()[:8]}")


def check_zero_point(zero_point: Any, quant_min: float, quant_max: float,
                     argument: str = "zero_point") -> None:
    """Raises ValueError when a concrete integer zero point lies outside the range."""
    if zero_point is not None and _is_concrete(zero_point):
        values = np.asarray(zero_point)
        if values.size and (values.min() < quant_min or values.max() > quant_max):
            raise ValueError(f"{argument} must lie in [quant_min, quant_max] = "
                             f"[{quant_min}, {quant_max}]; got {values.ravel()[:8]}")


def _check_float_input(x: jax.Array, argument: str = "input") -> None:
    if x.dtype not in _FLOAT_INPUTS:
        raise TypeError(f"{argument} must be float32, float16 or bfloat16; got {x.dtype}")


def _zero_point_for_domain(zero_point, domain: ZeroPointDomain):
    if not isinstance(domain, ZeroPointDomain):
        raise TypeError(f"zero_point_domain={domain!r} must be a ZeroPointDomain "
                        "(INT, FLOAT or NONE)")
    if domain is ZeroPointDomain.NONE and zero_point is not None:
        raise ValueError("zero_point must be None when zero_point_domain is NONE")
    if domain is not ZeroPointDomain.NONE and zero_point is None:
        raise ValueError(f"zero_point is required with zero_point_domain={domain.name}")
    if zero_point is not None and jnp.asarray(zero_point).size == 0:
        return None
    return zero_point


# ---------------------------------------------------------------------------
# Public block-wise API (torchao names and arguments).
# ---------------------------------------------------------------------------
def _qparams_from_min_max(min_val, max_val, mapping_type, quant_min, quant_max, eps,
                          zero_point_dtype):
    min_neg = jnp.minimum(min_val, 0.0)
    max_pos = jnp.maximum(max_val, 0.0)
    if mapping_type is MappingType.ASYMMETRIC:
        scale = jnp.maximum(exact_divide(max_pos - min_neg, float(quant_max - quant_min)),
                            eps)
        zero_point = jnp.clip(quant_min - jnp.round(exact_divide(min_neg, scale)),
                              quant_min, quant_max)
    elif mapping_type is MappingType.SYMMETRIC:
        bound = jnp.maximum(-min_neg, max_pos)
        scale = exact_divide(bound, float(quant_max - quant_min) / 2)
        zero_point = jnp.full_like(scale, int((quant_max + quant_min + 1) / 2))
        scale = jnp.maximum(scale, eps)
    elif mapping_type is MappingType.SYMMETRIC_NO_CLIPPING_ERR:
        scale_from_min = exact_divide(min_neg, float(quant_min))
        scale_from_max = exact_divide(max_pos, float(quant_max))
        scale = jnp.where(scale_from_min > scale_from_max, scale_from_min, scale_from_max)
        zero_point = jnp.full_like(scale, int((quant_max + quant_min + 1) / 2))
        scale = jnp.maximum(scale, eps)
    else:
        raise TypeError(f"mapping_type={mapping_type!r} must be a MappingType "
                        "(SYMMETRIC, SYMMETRIC_NO_CLIPPING_ERR or ASYMMETRIC)")
    return scale, zero_point.astype(zero_point_dtype)


def choose_qparams_affine(input: jax.Array, mapping_type: MappingType,
                          block_size: Sequence[int], target_dtype: Any,
                          quant_min: int | float | None = None,
                          quant_max: int | float | None = None, eps: float | None = None,
                          scale_dtype: Any = None, zero_point_dtype: Any = jnp.int32,
                          keepdim: bool = False) -> tuple[jax.Array, jax.Array]:
    """Scale and zero point per block from the block's min and max (torchao semantics).

    Args:
      input: float array of any shape.
      mapping_type: a :class:`MappingType`.
      block_size: one entry per dimension of ``input``.
      target_dtype: the quantized dtype (``jaxq.qint8``, ``jnp.int8``, ``jaxq.int4`` ...).
      quant_min, quant_max: custom range inside the dtype's; default the dtype's.
      eps: smallest scale; default ``finfo(input.dtype).smallest_normal``.
      scale_dtype: default ``input.dtype``.
      zero_point_dtype: default int32.
      keepdim: if True the outputs have shape ``input.shape[i] // block_size[i]``;
        otherwise the reduced dimensions are dropped (torchao's default).

    Returns:
      ``(scale, zero_point)``.
    """
    input = jnp.asarray(input)
    _check_float_input(input)
    qmin, qmax = quant_range(target_dtype, quant_min, quant_max)
    view_shape, dims = reduction_params(block_size, input.shape)
    if eps is None:
        eps = float(jnp.finfo(input.dtype).smallest_normal)
    scale_dtype = input.dtype if scale_dtype is None else scale_dtype
    blocks = input.reshape(view_shape)
    min_val = jnp.min(blocks, axis=dims) if dims else blocks
    max_val = jnp.max(blocks, axis=dims) if dims else blocks
    scale, zero_point = _qparams_from_min_max(min_val, max_val, mapping_type, qmin, qmax,
                                              eps, zero_point_dtype)
    if keepdim:
        grid = tuple(s // b for s, b in zip(input.shape, block_size))
        scale, zero_point = scale.reshape(grid), zero_point.reshape(grid)
    return scale.astype(scale_dtype), zero_point


def choose_qparams_affine_with_min_max(min_val: jax.Array, max_val: jax.Array,
                                       mapping_type: MappingType,
                                       block_size: Sequence[int], target_dtype: Any,
                                       quant_min: int | float | None = None,
                                       quant_max: int | float | None = None,
                                       eps: float | None = None, scale_dtype: Any = None,
                                       zero_point_dtype: Any = None
                                       ) -> tuple[jax.Array, jax.Array]:
    """:func:`choose_qparams_affine` from precomputed per-block ``min_val``/``max_val``.

    ``block_size`` is accepted for torchao signature compatibility; the parameter shape
    is that of ``min_val``.
    """
    del block_size
    min_val, max_val = jnp.asarray(min_val), jnp.asarray(max_val)
    if min_val.dtype != max_val.dtype or min_val.shape != max_val.shape:
        raise ValueError(f"min_val ({min_val.dtype}{min_val.shape}) and max_val "
                         f"({max_val.dtype}{max_val.shape}) must match in dtype and shape")
    qmin, qmax = quant_range(target_dtype, quant_min, quant_max)
    if eps is None:
        eps = float(jnp.finfo(min_val.dtype).smallest_normal)
    scale_dtype = min_val.dtype if scale_dtype is None else scale_dtype
    zero_point_dtype = jnp.int32 if zero_point_dtype is None else zero_point_dtype
    scale, zero_point = _qparams_from_min_max(min_val, max_val, mapping_type, qmin, qmax,
                                              eps, zero_point_dtype)
    return scale.astype(scale_dtype), zero_point


def _blocked(input, block_size, scale, zero_point):
    view_shape, dims = reduction_params(block_size, input.shape)
    param_shape = _param_shape(view_shape, dims)
    scale = _reshape_param(scale, param_shape, "scale")
    if zero_point is not None:
        zero_point = _reshape_param(zero_point, param_shape, "zero_point")
    return input.reshape(view_shape), scale, zero_point


def _tinygemm_min_val(scale, zero_point, qmin, qmax):
    mid_point = (qmax + qmin + 1) / 2
    return zero_point - separately_rounded(scale * jnp.asarray(mid_point, scale.dtype))


def _tinygemm_unclamped(x, scale, zero_point, qmin, qmax):
    # torchao: round((x - (zp - scale * mid)) / scale) in the promoted dtype.
    min_val = _tinygemm_min_val(scale, zero_point, qmin, qmax)
    return round_ste(exact_divide(x - min_val, scale))


def _unclamped_blocks(x, scale, zero_point, qmin, qmax, domain):
    """The rounded values before the clamp, in the zero-point domain's formula."""
    if domain is ZeroPointDomain.FLOAT:
        return _tinygemm_unclamped(x, scale, zero_point, qmin, qmax)
    return rounded_values(x, scale, zero_point)


def _quantize_blocks(x, scale, zero_point, qmin, qmax, domain):
    return _clamp(_unclamped_blocks(x, scale, zero_point, qmin, qmax, domain), qmin, qmax)


def _dequantize_blocks(q, scale, zero_point, qmin, qmax, domain, output_dtype):
    if domain is ZeroPointDomain.FLOAT:
        # torchao: ((q - mid) -> output_dtype) *= scale; += zero_point (in-place ops
        # keep output_dtype after each step).
        mid_point = (qmax + qmin + 1) / 2
        value = (q.astype(jnp.float32) - mid_point).astype(output_dtype)
        value = separately_rounded(value * scale).astype(output_dtype)
        return (value + zero_point).astype(output_dtype)
    return dequantize_values(q, scale, zero_point, output_dtype)


def quantize_affine(input: jax.Array, block_size: Sequence[int], scale: jax.Array,
                    zero_point: jax.Array | None, output_dtype: Any,
                    quant_min: int | float | None = None,
                    quant_max: int | float | None = None,
                    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT) -> jax.Array:
    """Quantizes ``input`` block-wise into ``output_dtype``'s storage dtype.

    Args:
      input: float32/float16/bfloat16 array.
      block_size: one entry per dimension of ``input``.
      scale: one positive value per block.
      zero_point: one value per block (None with ``ZeroPointDomain.NONE``).
      output_dtype: the target dtype; sub-byte dtypes are stored one value per byte.
      quant_min, quant_max: custom range inside the dtype's.
      zero_point_domain: INT (default), FLOAT (tinygemm) or NONE.

    Returns:
      An array of ``input.shape`` in the target's storage dtype.
    """
    input = jnp.asarray(input)
    _check_float_input(input)
    qdtype = as_quant_dtype(output_dtype, "output_dtype")
    qmin, qmax = quant_range(qdtype, quant_min, quant_max)
    zero_point = _zero_point_for_domain(zero_point, zero_point_domain)
    check_scale(scale)
    if zero_point_domain is ZeroPointDomain.INT:
        check_zero_point(zero_point, qmin, qmax)
    blocks, scale, zero_point = _blocked(input, block_size, scale, zero_point)
    q = _quantize_blocks(blocks, scale, zero_point, qmin, qmax, zero_point_domain)
    return cast_quantized(q.reshape(input.shape), qdtype)


def dequantize_affine(input: jax.Array, block_size: Sequence[int], scale: jax.Array,
                      zero_point: jax.Array | None, input_dtype: Any,
                      quant_min: int | float | None = None,
                      quant_max: int | float | None = None, *,
                      output_dtype: Any = jnp.float32,
                      zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT
                      ) -> jax.Array:
    """Dequantizes block-wise: ``(q - zp) * scale`` (or the FLOAT/NONE domain forms).

    Raises:
      TypeError: ``input``'s dtype is not ``input_dtype``'s storage dtype, or
        ``output_dtype`` is not float32/float16/bfloat16.
    """
    input = jnp.asarray(input)
    qdtype = as_quant_dtype(input_dtype, "input_dtype")
    if input.dtype != qdtype.storage_dtype:
        raise TypeError(f"input has dtype {input.dtype} but input_dtype={qdtype!r} is "
                        f"stored as {qdtype.storage_dtype}")
    if jnp.dtype(output_dtype) not in _FLOAT_INPUTS:
        raise TypeError(f"output_dtype={output_dtype} must be float32, float16 or bfloat16")
    qmin, qmax = quant_range(qdtype, quant_min, quant_max)
    zero_point = _zero_point_for_domain(zero_point, zero_point_domain)
    blocks, scale, zero_point = _blocked(input, block_size, scale, zero_point)
    out = _dequantize_blocks(blocks, scale, zero_point, qmin, qmax, zero_point_domain,
                             output_dtype)
    return out.reshape(input.shape)


def fake_quantize_affine_cachemask(input: jax.Array, block_size: Sequence[int],
                                   scale: jax.Array, zero_point: jax.Array | None,
                                   quant_dtype: Any, quant_min: int | float | None = None,
                                   quant_max: int | float | None = None,
                                   zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT
                                   ) -> tuple[jax.Array, jax.Array]:
    """Fake-quantizes and also returns the in-range mask of the unclamped values."""
    input = jnp.asarray(input)
    _check_float_input(input)
    qmin, qmax = quant_range(quant_dtype, quant_min, quant_max)
    zero_point = _zero_point_for_domain(zero_point, zero_point_domain)
    check_scale(scale)
    if zero_point_domain is ZeroPointDomain.INT:
        check_zero_point(zero_point, qmin, qmax)
    blocks, scale, zero_point = _blocked(input, block_size, scale, zero_point)
    # Round once; the clamp and the mask both read the unclamped values.
    unclamped = _unclamped_blocks(blocks, scale, zero_point, qmin, qmax, zero_point_domain)
    q = _clamp(unclamped, qmin, qmax)
    out = _dequantize_blocks(q, scale, zero_point, qmin, qmax, zero_point_domain,
                             input.dtype)
    # torchao's clamp keeps NaN, so NaN inputs fake-quantize to NaN.
    out = jnp.where(jnp.isnan(unclamped), jnp.asarray(jnp.nan, out.dtype), out)
    mask = (unclamped >= qmin) & (unclamped <= qmax)
    return out.reshape(input.shape), mask.reshape(input.shape)


def fake_quantize_affine(input: jax.Array, block_size: Sequence[int], scale: jax.Array,
                         zero_point: jax.Array | None, quant_dtype: Any,
                         quant_min: int | float | None = None,
                         quant_max: int | float | None = None,
                         zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT
                         ) -> jax.Array:
    """``dequantize_affine(quantize_affine(x))`` without the integer cast.

    Differentiable as torchao's ``_fake_quantize_affine``: straight-through round,
    clamp passes the gradient only inside ``[quant_min, quant_max]``; scale and zero
    point receive their autodiff gradients.

    Example:
      >>> import jax, jax.numpy as jnp, jaxq
      >>> x = jnp.array([[-1.0, 0.3, 2.0]])
      >>> g = jax.grad(lambda x: jaxq.fake_quantize_affine(
      ...     x, (1, 3), jnp.array(0.01), jnp.array(0), jnp.int8).sum())(x)
    """
    return fake_quantize_affine_cachemask(input, block_size, scale, zero_point, quant_dtype,
                                          quant_min, quant_max, zero_point_domain)[0]
