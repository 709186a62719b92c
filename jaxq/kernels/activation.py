"""Dynamic activation quantization and the float arithmetic torch's x86 kernels use.

torch's x86 dynamic Linear (``quantized::linear_dynamic``, fbgemm) does three things
that plain float32 XLA code does not reproduce:

* ATen's ``ChooseQuantizationParams`` computes the scale and zero point in float64;
* fbgemm quantizes with one rounding, ``rint(fma(x, 1/scale, zero_point))``;
* its float epilogue is ``fma(float(acc), act_scale * w_scale, bias)``, one rounding.

XLA:CPU contracts ``a * b + c`` into an FMA on its own, but not reliably (only inside one
fusion), so these functions compute the exact results explicitly: float64 under a local
``jax.enable_x64`` (the float32 product of two float32 values is exact in float64), and
the final float64 -> float32 rounding made exact by rounding to odd first. They are the
reference formulas every backend is checked against.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.kernels.activation import torch_choose_qparams
  >>> scale, zp = torch_choose_qparams(jnp.float32(-1.0), jnp.float32(3.0), 0, 127)
  >>> float(scale), int(zp)
  (0.031496062874794006, 32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxq.core.affine import choose_qparams_affine, exact_divide, quantize_affine
from jaxq.core.granularity import MappingType
from jaxq.kernels.problem import DynamicQuantization

__all__ = ["fma_f32", "fbgemm_quantize", "quantize_activation", "torch_choose_qparams"]

# ATen's SMALL_SCALE_THRESHOLD (a float constant, compared with a double scale).
SMALL_SCALE_THRESHOLD = 6.1e-5


def _round_to_odd_f32(s: jax.Array, err: jax.Array) -> jax.Array:
    """float32 of the exact value ``s + err`` (s = float64 round-to-nearest, err exact).

    Rounding to odd at 53 bits, then to nearest at 24 bits, equals one rounding to
    nearest at 24 bits (53 >= 24 + 2), so no double-rounding error is possible.
    """
    bits = jax.lax.bitcast_convert_type(s, jnp.int64)
    inexact = (err != 0) & jnp.isfinite(s)
    even = (bits & 1) == 0
    # Step one ulp toward the exact value: up in magnitude when err has s's sign.
    step = jnp.where((err > 0) == (s > 0), jnp.int64(1), jnp.int64(-1))
    bits = jnp.where(inexact & even, bits + step, bits)
    return jax.lax.bitcast_convert_type(bits, jnp.float64).astype(jnp.float32)


def fma_f32(a, b, c) -> jax.Array:
    """``a * b + c`` for float32 inputs with a single rounding to float32 (like FMA).

    Broadcasts its arguments. Exact for finite inputs whose product is finite.
    """
    a, b, c = (jnp.asarray(v, jnp.float32) for v in (a, b, c))
    with jax.enable_x64(True):
        product = a.astype(jnp.float64) * b.astype(jnp.float64)  # exact: 24 + 24 bits
        addend = c.astype(jnp.float64)
        s = product + addend
        # TwoSum: the exact rounding error of s (every product here is exact, so FMA
        # contraction by the compiler cannot change these values).
        virtual = s - product
        err = (product - (s - virtual)) + (addend - virtual)
        return _round_to_odd_f32(s, err)


def torch_choose_qparams(min_val, max_val, quant_min: int, quant_max: int
                         ) -> tuple[jax.Array, jax.Array]:
    """ATen's ``quant_utils::ChooseQuantizationParams`` (no sparsity, no power of two).

    Args:
      min_val, max_val: float32 scalars (or arrays of them) from the data.
      quant_min, quant_max: the (already reduced) integer range.

    Returns:
      ``(scale float32, zero_point int32)`` with the shape of ``min_val``.
    """
    qmin, qmax = int(quant_min), int(quant_max)
    width = float(qmax - qmin)
    threshold32 = jnp.float32(SMALL_SCALE_THRESHOLD)
    mn = jnp.minimum(jnp.asarray(min_val, jnp.float32), 0.0)
    mx = jnp.maximum(jnp.asarray(max_val, jnp.float32), 0.0)
    with jax.enable_x64(True):
        f64 = jnp.float64
        scale = exact_divide(mx.astype(f64) - mn.astype(f64), width)
        scale32 = scale.astype(jnp.float32)
        degenerate = (scale32 == 0) | jnp.isinf(exact_divide(jnp.float32(1), scale32))
        scale = jnp.where(degenerate, f64(0.1), scale)
        small = scale < threshold32.astype(f64)
        org_scale = scale.astype(jnp.float32)
        amplifier = exact_divide(threshold32, jnp.where(small, org_scale, 1.0))
        edge = threshold32 * jnp.float32(width)
        mn_small = jnp.where(mn == 0, mn, jnp.where(mx == 0, -edge, mn * amplifier))
        mx_small = jnp.where(mn == 0, edge, jnp.where(mx == 0, mx, mx * amplifier))
        mn = jnp.where(small, mn_small, mn)
        mx = jnp.where(small, mx_small, mx)
        scale = jnp.where(small, threshold32.astype(f64), scale)
        from_min = exact_divide(mn.astype(f64), scale)
        from_max = exact_divide(mx.astype(f64), scale)
        zp_from_min = qmin - from_min
        zp_from_max = qmax - from_max
        err_min = abs(qmin) - jnp.abs(from_min)
        err_max = abs(qmax) - jnp.abs(from_max)
        initial = jnp.where(err_min < err_max, zp_from_min, zp_from_max)
        nudged = jnp.clip(jnp.round(initial), qmin, qmax)
        return scale.astype(jnp.float32), nudged.astype(jnp.int32)


def fbgemm_quantize(x: jax.Array, scale, zero_point, dtype) -> jax.Array:
    """fbgemm's ``Quantize``: ``clamp(rint(fma(x, 1/scale, zp)), dtype range)``.

    ``scale`` / ``zero_point`` broadcast against ``x``. The clamp is the storage dtype's
    full range, as fbgemm's (the qparams keep values inside a reduced range anyway).
    """
    info = jnp.iinfo(dtype)
    inverse = exact_divide(jnp.float32(1), jnp.asarray(scale, jnp.float32))
    value = fma_f32(x, inverse, jnp.asarray(zero_point).astype(jnp.float32))
    value = jnp.clip(jnp.round(value), info.min, info.max)
    return jnp.where(jnp.isnan(value), 0, value).astype(dtype)


def quantize_activation(x: jax.Array, config: DynamicQuantization, row_groups: int = 1
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Quantizes a float ``(M, K)`` activation with qparams taken from the data.

    Args:
      x: float ``(M, K)``.
      config: the :class:`~jaxq.kernels.problem.DynamicQuantization`.
      row_groups: per-tensor qparams are taken separately over this many equal blocks of
        rows (the batch of a vmapped call).

    Returns:
      ``(xq (M, K), scale, zero_point)``: xq in the config's storage dtype; scale float32
      and zero_point int32 of shape ``()`` for one per-tensor group, else ``(M,)``.
    """
    m, k = x.shape
    x = x.astype(jnp.float32)
    lo, hi = config.quant_range
    storage = config.dtype.storage_dtype
    if config.torch_per_tensor:
        grouped = x.reshape(row_groups, (m // row_groups) * k)
        scale, zp = torch_choose_qparams(jnp.min(grouped, axis=1), jnp.max(grouped, axis=1),
                                         lo, hi)
        if row_groups == 1:
            scale, zp = scale[0], zp[0]
            return fbgemm_quantize(x, scale, zp, storage), scale, zp
        scale = jnp.repeat(scale, m // row_groups)
        zp = jnp.repeat(zp, m // row_groups)
        return fbgemm_quantize(x, scale[:, None], zp[:, None], storage), scale, zp
    mapping = MappingType.SYMMETRIC if config.symmetric else MappingType.ASYMMETRIC
    eps = float(jnp.finfo(jnp.float32).eps)
    if config.granularity == "per_token":
        block = (1, k)
        view = x
    else:
        view = x.reshape(row_groups, (m // row_groups) * k)
        block = (1, view.shape[1])
    scale, zp = choose_qparams_affine(view, mapping, block, config.dtype, lo, hi, eps=eps,
                                      scale_dtype=jnp.float32)
    xq = quantize_affine(view, block, scale, zp, config.dtype, lo, hi).reshape(m, k)
    scale, zp = scale.reshape(-1), zp.reshape(-1).astype(jnp.int32)
    if config.granularity == "per_tensor":
        if row_groups == 1:
            return xq, scale[0], zp[0]
        scale, zp = jnp.repeat(scale, m // row_groups), jnp.repeat(zp, m // row_groups)
    return xq, scale, zp
