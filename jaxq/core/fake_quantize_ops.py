"""torch's fake-quantize functions: per-tensor, per-channel and learnable (LSQ).

Pure, jittable functions whose outputs and gradients follow torch's CPU kernels
(``aten/src/ATen/native/quantized/FakeQuant*.cpp``) bit for bit, with the one formula of
:mod:`jaxq.core.affine` underneath:

* forward: ``q = clamp(round_half_even(x * (1/s)) + zp, qmin, qmax)``,
  ``y = (q - zp) * s`` (computed in float32, cast back to the input dtype);
* gradient: straight-through with torch's mask ``qmin <= round(x/s) + zp <= qmax``
  (the unclamped rounded value); ``scale`` and ``zero_point`` get zero gradients
  (torch does not differentiate them);
* learnable variants also return LSQ gradients for ``scale`` and ``zero_point``.

Special values, as torch's x86 build computes them:

* per-tensor: ``+inf -> (qmax-zp)*s``; ``-inf`` and NaN ``-> (qmin-zp)*s``; mask False.
* per-channel: torch casts the rounded value to int64 *before* clamping, and the x86
  cast of NaN, +-inf or anything ``>= 2**63`` yields ``INT64_MIN``; so ``+inf``, NaN and
  huge positive values all become ``(qmin-zp)*s`` there, with mask False. jaxq
  reproduces this.
* learnable backward: torch also casts to int64 first, so NaN, +-inf and values whose
  rounded quotient is ``>= 2**63`` take the *below range* branch
  (``d_scale = dy*(qmin-zp)``).

torch's x86 kernels for float-qparams and LSQ are compiled with fused multiply-add
(``zp + x * inv_scale`` and ``xfq - x`` are each rounded once); jaxq forms those exact
products with error-free transformations, so the results agree bit for bit, eagerly and
under jit.

Deviations from torch (stricter or more permissive, never silently different):

* a concrete ``scale <= 0`` raises ValueError (torch computes with it);
* the per-tensor learnable op requires one scale/zero point (torch reads element 0);
* negative ``axis`` is accepted (torch raises for ``axis < 0``);
* learnable backward works for float16/bfloat16 inputs (computed in float32; torch
  raises);
* ``d_scale`` / ``d_zero_point`` are sums over the elements in float32; the summation
  order differs from torch's, so they agree to float32 rounding, not bit for bit;
* zero points beyond ``2**24`` in magnitude (only possible with qint32 ranges) may give
  results one float32 ulp away from torch, which subtracts in int64.

Example:
  >>> import jax, jax.numpy as jnp, jaxq
  >>> x = jnp.array([-2.0, 0.26, 3.0])
  >>> jaxq.fake_quantize_per_tensor_affine(x, 0.1, 0, -128, 127)
  Array([-2. ,  0.3,  3. ], dtype=float32)
  >>> jax.grad(lambda x: jaxq.fake_quantize_per_tensor_affine(x, 0.01, 0, -128, 127).sum())(x)
  Array([0., 1., 0.], dtype=float32)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.float_arithmetic import fma_f32, two_product, two_sum
from jaxq.core.affine import (
    _FLOAT_INPUTS,
    _is_concrete,
    check_scale,
    check_zero_point,
    dequantize_values,
    quantize_values,
    rounded_values,
)

__all__ = [
    "fake_quantize_per_tensor_affine",
    "fake_quantize_per_tensor_affine_cachemask",
    "fake_quantize_per_channel_affine",
    "fake_quantize_per_channel_affine_cachemask",
    "fake_quantize_learnable_per_tensor_affine",
    "fake_quantize_learnable_per_channel_affine",
    "_fake_quantize_learnable_per_tensor_affine",
    "_fake_quantize_learnable_per_channel_affine",
]

# torch casts the rounded quotient to int64; on x86 NaN, +-inf and values >= 2**63 (or
# below -2**63) become INT64_MIN, i.e. they land below quant_min.
_INT64_LIMIT = float(2**63)


# ---------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------
def _check_quant_range(quant_min: Any, quant_max: Any) -> tuple[int, int]:
    for name, value in (("quant_min", quant_min), ("quant_max", quant_max)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}={value!r} must be a Python int")
    quant_min, quant_max = int(quant_min), int(quant_max)
    if quant_min > quant_max:
        raise ValueError(f"quant_min={quant_min} must be less than or equal to "
                         f"quant_max={quant_max}")
    return quant_min, quant_max


def _check_input(input: Any) -> jax.Array:
    input = jnp.asarray(input)
    if input.dtype not in _FLOAT_INPUTS:
        raise TypeError(f"input must be float32, float16 or bfloat16; got {input.dtype}")
    return input


def _float_param(value: Any, argument: str) -> jax.Array:
    value = jnp.asarray(value)
    if not (jnp.issubdtype(value.dtype, jnp.floating)
            or jnp.issubdtype(value.dtype, jnp.integer)):
        raise TypeError(f"{argument} must be a float array; got {value.dtype}")
    return value


def _single(value: jax.Array, argument: str) -> jax.Array:
    if value.size != 1 or value.ndim > 1:
        raise ValueError(f"{argument} must be a scalar or have shape (1,) for per-tensor "
                         f"fake-quantize; got shape {value.shape}")
    return value


def _per_tensor_qparams(scale: Any, zero_point: Any, quant_min: int, quant_max: int
                        ) -> tuple[jax.Array, jax.Array]:
    scale = _single(_float_param(scale, "scale"), "scale")
    zero_point = jnp.asarray(zero_point)
    if not jnp.issubdtype(zero_point.dtype, jnp.integer):
        raise TypeError(f"zero_point must be an integer (int or integer array); got "
                        f"{zero_point.dtype}. Float zero points: use the learnable or "
                        "the per-channel function")
    zero_point = _single(zero_point, "zero_point")
    check_scale(scale)
    check_zero_point(zero_point, quant_min, quant_max)
    return scale, zero_point


def _normalize_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis={axis!r} must be a Python int")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an input of rank {ndim}; "
                         f"accepted: {-ndim}..{ndim - 1}")
    return int(axis) % ndim


def _per_channel_qparams(input: jax.Array, scale: Any, zero_point: Any, axis: Any
                         ) -> tuple[jax.Array, jax.Array, int]:
    if input.ndim == 0:
        raise ValueError("input must have at least one dimension for per-channel "
                         "fake-quantize (it has rank 0)")
    axis = _normalize_axis(axis, input.ndim)
    scale, zero_point = jnp.asarray(scale), jnp.asarray(zero_point)
    if scale.dtype not in _FLOAT_INPUTS:
        raise TypeError(f"scale must be a float32 or bfloat16 array; got {scale.dtype}")
    if not (jnp.issubdtype(zero_point.dtype, jnp.integer)
            or jnp.issubdtype(zero_point.dtype, jnp.floating)):
        raise TypeError(f"zero_point must be an integer or float array; got "
                        f"{zero_point.dtype}")
    channels = input.shape[axis]
    for name, value in (("scale", scale), ("zero_point", zero_point)):
        if value.shape != (channels,):
            raise ValueError(f"{name} must be 1-D with input.shape[axis] = {channels} "
                             f"entries (axis={axis}); got shape {value.shape}")
    check_scale(scale)
    return scale, zero_point, axis


def _along_axis(param: jax.Array, axis: int, ndim: int) -> jax.Array:
    shape = [1] * ndim
    shape[axis] = param.shape[0]
    return param.reshape(shape)


def _zero_cotangent(value: jax.Array):
    if jnp.issubdtype(value.dtype, jnp.inexact):
        return jnp.zeros_like(value)
    return np.zeros(value.shape, dtype=jax.dtypes.float0)


# ---------------------------------------------------------------------------
# Exact ``float32((q - zp) * s)`` as torch's per-channel kernel computes it (in double).
# ---------------------------------------------------------------------------
def _scaled_difference(q: jax.Array, zero_point: jax.Array, scale: jax.Array
                       ) -> jax.Array:
    """float32 rounding of the exact ``(q - zero_point) * scale``.

    torch's per-channel kernel evaluates ``(clamp(q) - zp) * scale`` in double and
    rounds once to float; with a fractional (float-qparams) zero point a float32
    evaluation differs from it in ~25% of elements. Error-free transformations give
    the same single rounding in float32 arithmetic.
    """
    difference, difference_error = two_sum(q, -zero_point)
    product, product_error = two_product(difference, scale)
    return product + (product_error + difference_error * scale)


# ---------------------------------------------------------------------------
# Per-tensor.
# ---------------------------------------------------------------------------
def _per_tensor_forward(x, scale, zero_point, quant_min, quant_max):
    scale = scale.astype(jnp.float32)
    unclamped = rounded_values(x, scale, zero_point)
    q = quantize_values(x, scale, zero_point, quant_min, quant_max)
    out = dequantize_values(q, scale, zero_point, jnp.float32).astype(x.dtype)
    mask = (unclamped >= quant_min) & (unclamped <= quant_max)
    return out, mask


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _per_tensor_cachemask(x, scale, zero_point, quant_min, quant_max):
    return _per_tensor_forward(x, scale, zero_point, quant_min, quant_max)


def _per_tensor_cachemask_fwd(x, scale, zero_point, quant_min, quant_max):
    out, mask = _per_tensor_forward(x, scale, zero_point, quant_min, quant_max)
    return (out, mask), (mask, scale, zero_point)


def _masked_backward(quant_min, quant_max, residuals, cotangents):
    del quant_min, quant_max
    mask, scale, zero_point = residuals
    dy, _ = cotangents
    dx = dy * mask.astype(dy.dtype)  # torch multiplies: a NaN cotangent stays NaN
    return dx, _zero_cotangent(scale), _zero_cotangent(zero_point)


_per_tensor_cachemask.defvjp(_per_tensor_cachemask_fwd, _masked_backward)


def fake_quantize_per_tensor_affine_cachemask(input: jax.Array, scale: Any,
                                              zero_point: Any, quant_min: int,
                                              quant_max: int
                                              ) -> tuple[jax.Array, jax.Array]:
    """Per-tensor fake-quantize plus torch's gradient mask.

    Args:
      input: float32/float16/bfloat16 array of any shape.
      scale: Python float or float array with one element (shape ``()`` or ``(1,)``).
      zero_point: Python int or integer array with one element.
      quant_min: lower end of the integer range (Python int).
      quant_max: upper end of the integer range (Python int).

    Returns:
      ``(output, mask)``: output has ``input``'s shape and dtype; mask is a bool array
      of the same shape, True where ``qmin <= round(x/s) + zp <= qmax``.

    Raises:
      ValueError: ``quant_min > quant_max``, zero point outside the range, concrete
        ``scale <= 0``, or more than one scale/zero point.
      TypeError: non-float input or a non-integer zero point.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> y, mask = jaxq.fake_quantize_per_tensor_affine_cachemask(
      ...     jnp.array([0.3, 9.0]), 0.1, 0, 0, 15)
      >>> mask
      Array([ True, False], dtype=bool)
    """
    input = _check_input(input)
    quant_min, quant_max = _check_quant_range(quant_min, quant_max)
    scale, zero_point = _per_tensor_qparams(scale, zero_point, quant_min, quant_max)
    return _per_tensor_cachemask(input, scale.reshape(()), zero_point.reshape(()),
                                 quant_min, quant_max)


def fake_quantize_per_tensor_affine(input: jax.Array, scale: Any, zero_point: Any,
                                    quant_min: int, quant_max: int) -> jax.Array:
    """``torch.fake_quantize_per_tensor_affine``: quantize then dequantize, per tensor.

    ``y = (clamp(round(x * (1/s)) + zp, qmin, qmax) - zp) * s`` with the
    straight-through gradient ``dy * (qmin <= round(x/s) + zp <= qmax)``. Arguments,
    errors and special values as in :func:`fake_quantize_per_tensor_affine_cachemask`.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> jaxq.fake_quantize_per_tensor_affine(jnp.array([0.26, -2.0]), 0.1, 3, 0, 255)
      Array([ 0.3, -0.3], dtype=float32)
    """
    return fake_quantize_per_tensor_affine_cachemask(input, scale, zero_point, quant_min,
                                                     quant_max)[0]


# ---------------------------------------------------------------------------
# Per-channel.
# ---------------------------------------------------------------------------
def _per_channel_forward(x, scale, zero_point, axis, quant_min, quant_max):
    scale = _along_axis(scale.astype(jnp.float32), axis, x.ndim)
    if jnp.issubdtype(zero_point.dtype, jnp.floating):
        # float qparams: torch rounds ``zp + x * (1/s)`` (zp added before rounding).
        zero_point = _along_axis(zero_point.astype(jnp.float32), axis, x.ndim)
        inverse = 1.0 / scale
        unclamped = jnp.round(fma_f32(x.astype(jnp.float32), inverse,
                                                  zero_point))
    else:
        zero_point = _along_axis(zero_point.astype(jnp.float32), axis, x.ndim)
        unclamped = rounded_values(x, scale, zero_point)
    unclamped = jnp.where(unclamped < _INT64_LIMIT, unclamped, -jnp.inf)
    q = jnp.clip(unclamped, quant_min, quant_max)
    out = _scaled_difference(q, zero_point, scale).astype(x.dtype)
    mask = (unclamped >= quant_min) & (unclamped <= quant_max)
    return out, mask


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _per_channel_cachemask(x, scale, zero_point, axis, quant_min, quant_max):
    return _per_channel_forward(x, scale, zero_point, axis, quant_min, quant_max)


def _per_channel_cachemask_fwd(x, scale, zero_point, axis, quant_min, quant_max):
    out, mask = _per_channel_forward(x, scale, zero_point, axis, quant_min, quant_max)
    return (out, mask), (mask, scale, zero_point)


def _per_channel_cachemask_bwd(axis, quant_min, quant_max, residuals, cotangents):
    del axis
    return _masked_backward(quant_min, quant_max, residuals, cotangents)


_per_channel_cachemask.defvjp(_per_channel_cachemask_fwd, _per_channel_cachemask_bwd)


def fake_quantize_per_channel_affine_cachemask(input: jax.Array, scale: jax.Array,
                                               zero_point: jax.Array, axis: int,
                                               quant_min: int, quant_max: int
                                               ) -> tuple[jax.Array, jax.Array]:
    """Per-channel fake-quantize plus torch's gradient mask.

    An integer ``zero_point`` uses the canonical formula
    ``q = clamp(round(x * (1/s)) + zp)``; a float ``zero_point``
    (``per_channel_affine_float_qparams``) uses ``q = clamp(round(x * (1/s) + zp))``.
    The output is ``(q - zp) * s`` rounded once to float32, as torch computes it.

    Args:
      input: float32/float16/bfloat16 array of rank >= 1.
      scale: float32 (or bfloat16) array of shape ``(input.shape[axis],)``.
      zero_point: integer or float array of shape ``(input.shape[axis],)``.
      axis: the channel dimension (negative values count from the end).
      quant_min: lower end of the integer range (Python int).
      quant_max: upper end of the integer range (Python int).

    Returns:
      ``(output, mask)`` with ``input``'s shape; output in ``input``'s dtype.

    Raises:
      ValueError: ``quant_min > quant_max``, an integer zero point outside the range,
        concrete ``scale <= 0``, ``axis`` out of range, or scale/zero_point not of
        shape ``(input.shape[axis],)``.
      TypeError: non-float input, non-float scale, or non-numeric zero point.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> x = jnp.array([[0.26, 3.0], [-0.5, 0.5]])
      >>> y, mask = jaxq.fake_quantize_per_channel_affine_cachemask(
      ...     x, jnp.array([0.1, 0.25]), jnp.array([0, 0], jnp.int32), 1, -8, 7)
    """
    input = _check_input(input)
    quant_min, quant_max = _check_quant_range(quant_min, quant_max)
    scale, zero_point, axis = _per_channel_qparams(input, scale, zero_point, axis)
    if jnp.issubdtype(zero_point.dtype, jnp.integer):
        check_zero_point(zero_point, quant_min, quant_max)
    return _per_channel_cachemask(input, scale, zero_point, axis, quant_min, quant_max)


def fake_quantize_per_channel_affine(input: jax.Array, scale: jax.Array,
                                     zero_point: jax.Array, axis: int, quant_min: int,
                                     quant_max: int) -> jax.Array:
    """``torch.fake_quantize_per_channel_affine``: one (scale, zero point) per channel.

    Straight-through gradient with torch's mask; see
    :func:`fake_quantize_per_channel_affine_cachemask` for arguments and errors.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> x = jnp.array([[0.26, 3.0], [-0.5, 0.5]])
      >>> jaxq.fake_quantize_per_channel_affine(
      ...     x, jnp.array([0.1, 0.25]), jnp.array([0, 0], jnp.int32), 1, -8, 7)
      Array([[ 0.3 ,  1.75],
             [-0.5 ,  0.5 ]], dtype=float32)
    """
    return fake_quantize_per_channel_affine_cachemask(input, scale, zero_point, axis,
                                                      quant_min, quant_max)[0]


# ---------------------------------------------------------------------------
# Learnable (LSQ) variants.
# ---------------------------------------------------------------------------
def _lsq_gradients(x, dy, scale, zero_point, quant_min, quant_max, grad_factor):
    """torch's per-element LSQ gradients (``fake_quantize_learnable_*_grad_kernel``).

    ``scale`` and ``zero_point`` are float32 and broadcast against ``x``; the zero point
    is already rounded the way the respective torch backward rounds it.
    """
    x = x.astype(jnp.float32)
    dy = dy.astype(jnp.float32)
    inverse = 1.0 / scale
    # torch: nearbyint(zp + x * inv) cast to int64 (zp added before rounding).
    xq = jnp.round(fma_f32(x, inverse, zero_point))
    valid = xq < _INT64_LIMIT  # False for NaN, +-inf and int64 overflow: INT64_MIN.
    below = ~valid | (xq < quant_min)
    above = valid & (xq > quant_max)
    inside = ~(below | above)
    dx = dy * inside.astype(jnp.float32)
    # torch: xfq = (clamp(xq) - zp) * s; dscale = dy * (xfq - x) * inv; the compiler
    # fuses ``xfq - x`` into one FMA, so the error ``xfq - x`` is rounded once.
    fake_minus_x = fma_f32(jnp.clip(xq, quant_min, quant_max) - zero_point,
                                       scale, -x)
    d_scale_outside = dy * jnp.where(below, quant_min - zero_point,
                                     quant_max - zero_point)
    d_scale = jnp.where(inside, dy * fake_minus_x * inverse, d_scale_outside) * grad_factor
    d_zero_point = jnp.where(inside, 0.0, dy * -1.0 * scale * grad_factor)
    return dx, d_scale, d_zero_point


def _check_learnable_range(quant_min, quant_max):
    if not (quant_min <= 0 <= quant_max):
        raise ValueError("the learnable fake-quantize gradient needs quant_min <= 0 <= "
                         f"quant_max; got quant_min={quant_min}, quant_max={quant_max}")


def _learnable_per_tensor_impl(x, scale, zero_point, grad_factor, quant_min, quant_max):
    del grad_factor
    zp = jnp.clip(jnp.round(zero_point.astype(jnp.float32)), quant_min, quant_max)
    return _per_tensor_forward(x, scale, zp, quant_min, quant_max)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _learnable_per_tensor(x, scale, zero_point, grad_factor, quant_min, quant_max):
    return _learnable_per_tensor_impl(x, scale, zero_point, grad_factor, quant_min,
                                      quant_max)


def _learnable_per_tensor_fwd(x, scale, zero_point, grad_factor, quant_min, quant_max):
    out = _learnable_per_tensor_impl(x, scale, zero_point, grad_factor, quant_min,
                                     quant_max)
    return out, (x, scale, zero_point, grad_factor)


def _learnable_per_tensor_bwd(quant_min, quant_max, residuals, dy):
    _check_learnable_range(quant_min, quant_max)
    x, scale, zero_point, grad_factor = residuals
    # torch's per-tensor backward rounds the zero point as trunc(clamp(zp + 0.5)).
    zp = jnp.trunc(jnp.clip(zero_point.astype(jnp.float32) + 0.5, quant_min, quant_max))
    dx, d_scale, d_zp = _lsq_gradients(x, dy, scale.astype(jnp.float32), zp, quant_min,
                                       quant_max, jnp.asarray(grad_factor, jnp.float32))
    d_scale = jnp.sum(d_scale).reshape(scale.shape).astype(scale.dtype)
    if jnp.issubdtype(zero_point.dtype, jnp.inexact):
        d_zp = jnp.sum(d_zp).reshape(zero_point.shape).astype(zero_point.dtype)
    else:
        d_zp = _zero_cotangent(zero_point)
    return dx.astype(x.dtype), d_scale, d_zp, _zero_cotangent(jnp.asarray(grad_factor))


_learnable_per_tensor.defvjp(_learnable_per_tensor_fwd, _learnable_per_tensor_bwd)


def fake_quantize_learnable_per_tensor_affine(input: jax.Array, scale: jax.Array,
                                              zero_point: jax.Array, quant_min: int,
                                              quant_max: int, grad_factor: float = 1.0
                                              ) -> jax.Array:
    """``torch._fake_quantize_learnable_per_tensor_affine`` (LSQ), gradients included.

    Forward: the zero point is rounded half-to-even and clamped into the range, then
    :func:`fake_quantize_per_tensor_affine`. Backward (torch's kernel): with the zero
    point rounded as ``trunc(clamp(zp + 0.5, qmin, qmax))`` and
    ``xq = round(zp + x * (1/s))``:

    * inside the range: ``dx = dy``, ``d_scale = dy * (xfq - x) * (1/s) * g``,
      ``d_zp = 0``;
    * below: ``dx = 0``, ``d_scale = dy * (qmin - zp) * g``, ``d_zp = -dy * s * g``;
    * above: ``dx = 0``, ``d_scale = dy * (qmax - zp) * g``, ``d_zp = -dy * s * g``;

    summed over all elements for ``scale`` and ``zero_point``.

    Args:
      input: float32/float16/bfloat16 array of any shape.
      scale: float array with one element (shape ``()`` or ``(1,)``).
      zero_point: float (or integer) array with one element; integer zero points get
        no gradient.
      quant_min: lower end of the integer range (Python int).
      quant_max: upper end of the integer range (Python int); the gradient needs
        ``quant_min <= 0 <= quant_max`` (as torch).
      grad_factor: the LSQ gradient scale ``g`` (float or float scalar array).

    Returns:
      An array with ``input``'s shape and dtype.

    Raises:
      ValueError: ``quant_min > quant_max``, concrete ``scale <= 0``, or more than one
        scale/zero point; when differentiating, a range that does not contain 0.
      TypeError: non-float input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxq
      >>> x = jnp.array([-1.0, 0.26, 3.0])
      >>> f = lambda s, z: jaxq.fake_quantize_learnable_per_tensor_affine(
      ...     x, s, z, -8, 7).sum()
      >>> d_scale, d_zp = jax.grad(f, argnums=(0, 1))(jnp.array([0.1]), jnp.array([0.]))
    """
    input = _check_input(input)
    quant_min, quant_max = _check_quant_range(quant_min, quant_max)
    scale = _single(_float_param(scale, "scale"), "scale")
    zero_point = _single(_float_param(zero_point, "zero_point"), "zero_point")
    check_scale(scale)
    return _learnable_per_tensor(input, scale, zero_point, grad_factor, quant_min,
                                 quant_max)


def _learnable_per_channel_impl(x, scale, zero_point, grad_factor, axis, quant_min,
                                quant_max):
    del grad_factor
    zp = jnp.clip(jnp.round(zero_point.astype(jnp.float32)), quant_min, quant_max)
    return _per_channel_forward(x, scale, zp.astype(jnp.int32), axis, quant_min,
                                quant_max)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _learnable_per_channel(x, scale, zero_point, grad_factor, axis, quant_min, quant_max):
    return _learnable_per_channel_impl(x, scale, zero_point, grad_factor, axis, quant_min,
                                       quant_max)


def _learnable_per_channel_fwd(x, scale, zero_point, grad_factor, axis, quant_min,
                               quant_max):
    out = _learnable_per_channel_impl(x, scale, zero_point, grad_factor, axis, quant_min,
                                      quant_max)
    return out, (x, scale, zero_point, grad_factor)


def _learnable_per_channel_bwd(axis, quant_min, quant_max, residuals, dy):
    _check_learnable_range(quant_min, quant_max)
    x, scale, zero_point, grad_factor = residuals
    # torch's per-channel backward rounds half to even and clamps (not trunc(zp+0.5)).
    zp = jnp.clip(jnp.round(zero_point.astype(jnp.float32)), quant_min, quant_max)
    dx, d_scale, d_zp = _lsq_gradients(
        x, dy, _along_axis(scale.astype(jnp.float32), axis, x.ndim),
        _along_axis(zp, axis, x.ndim), quant_min, quant_max,
        jnp.asarray(grad_factor, jnp.float32))
    reduce_axes = tuple(i for i in range(x.ndim) if i != axis)
    d_scale = jnp.sum(d_scale, axis=reduce_axes).astype(scale.dtype)
    if jnp.issubdtype(zero_point.dtype, jnp.inexact):
        d_zp = jnp.sum(d_zp, axis=reduce_axes).astype(zero_point.dtype)
    else:
        d_zp = _zero_cotangent(zero_point)
    return dx.astype(x.dtype), d_scale, d_zp, _zero_cotangent(jnp.asarray(grad_factor))


_learnable_per_channel.defvjp(_learnable_per_channel_fwd, _learnable_per_channel_bwd)


def fake_quantize_learnable_per_channel_affine(input: jax.Array, scale: jax.Array,
                                               zero_point: jax.Array, axis: int,
                                               quant_min: int, quant_max: int,
                                               grad_factor: float = 1.0) -> jax.Array:
    """``torch._fake_quantize_learnable_per_channel_affine`` (LSQ), gradients included.

    Forward: zero points rounded half-to-even, clamped into the range, then
    :func:`fake_quantize_per_channel_affine` with integer zero points. Backward: the
    LSQ rules of :func:`fake_quantize_learnable_per_tensor_affine` per element (zero
    points rounded half-to-even and clamped), summed over every dimension but ``axis``.

    Args:
      input: float32/float16/bfloat16 array of rank >= 1.
      scale: float array of shape ``(input.shape[axis],)``.
      zero_point: float (or integer) array of shape ``(input.shape[axis],)``.
      axis: the channel dimension (negative values count from the end).
      quant_min: lower end of the integer range; gradients need ``quant_min <= 0``.
      quant_max: upper end of the integer range; gradients need ``quant_max >= 0``.
      grad_factor: the LSQ gradient scale.

    Returns:
      An array with ``input``'s shape and dtype.

    Raises:
      ValueError: ``quant_min > quant_max``, concrete ``scale <= 0``, ``axis`` out of
        range, or parameters not of shape ``(input.shape[axis],)``.
      TypeError: non-float input or scale.

    Example:
      >>> import jax, jax.numpy as jnp, jaxq
      >>> x = jnp.array([[0.26, 3.0], [-0.5, 0.5]])
      >>> f = lambda s: jaxq.fake_quantize_learnable_per_channel_affine(
      ...     x, s, jnp.zeros(2), 1, -8, 7).sum()
      >>> jax.grad(f)(jnp.array([0.1, 0.25])).shape
      (2,)
    """
    input = _check_input(input)
    quant_min, quant_max = _check_quant_range(quant_min, quant_max)
    scale, zero_point, axis = _per_channel_qparams(input, scale, zero_point, axis)
    return _learnable_per_channel(input, scale, zero_point, grad_factor, axis, quant_min,
                                  quant_max)


# torch's private names.
_fake_quantize_learnable_per_tensor_affine = fake_quantize_learnable_per_tensor_affine
_fake_quantize_learnable_per_channel_affine = fake_quantize_learnable_per_channel_affine
