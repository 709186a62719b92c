"""torch's C++ ``quant_utils::ChooseQuantizationParams``, pure and jittable.

The qparams rule of torch's fused fake-quant (``FusedMovingAvgObsFakeQuantize``) and of
fbgemm's dynamic activation quantization (``quantized::linear_dynamic``). torch
computes it in double, and so does jaxq (locally, under ``jax.enable_x64``), checked
bit for bit against torch.

It differs from the Python observers' rule
(:func:`jaxq.observer.base.calculate_qparams_from_min_max`) on symmetric ranges and tiny scales (raised to 6.1e-5), see the function's docstring.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.core.aten_qparams import choose_quantization_params
  >>> scale, zp = choose_quantization_params(jnp.float32(-1.0), jnp.float32(3.0), 0, 127,
  ...                                        preserve_sparsity=False)
  >>> float(scale), int(zp)
  (0.031496062874794006, 32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.affine import exact_divide

__all__ = ["SMALL_SCALE_THRESHOLD", "choose_quantization_params"]

SMALL_SCALE_THRESHOLD = np.float32(6.1e-5)


def choose_quantization_params(min_val: jax.Array, max_val: jax.Array, quant_min: int,
                               quant_max: int, preserve_sparsity: bool
                               ) -> tuple[jax.Array, jax.Array]:
    """torch's C++ ``quant_utils::ChooseQuantizationParams``, element-wise, jittable.

    Follows the C++ step by step: with ``preserve_sparsity`` and ``min < 0 < max`` the
    range is made symmetric around 0 (in float32); then ``scale = (max - min) / (qmax -
    qmin)`` in double (0 or 1/scale = inf -> 0.1; below 6.1e-5 raised to 6.1e-5 with the
    range amplified), the zero point from whichever of min/max gives the smaller error
    (in double), nudged into ``[qmin, qmax]`` with round-half-even. Double steps run in
    float64 under a local ``jax.enable_x64``.

    Args:
      min_val, max_val: float32 arrays of one shape.
      quant_min, quant_max: the integer range.
      preserve_sparsity: torch's symmetric flag (``symmetric_quant``).

    Returns:
      ``(scale, zero_point)``: float32 and int32 arrays of ``min_val``'s shape. NaN
      statistics give torch's x86 zero point, INT32_MIN.

    torch raises when ``min > max``; here the caller checks (eagerly) and the
    jittable function computes with whatever it gets.
    """
    qmin, qmax = int(quant_min), int(quant_max)
    width = qmax - qmin
    min_val = jnp.asarray(min_val, jnp.float32)
    max_val = jnp.asarray(max_val, jnp.float32)
    if preserve_sparsity:
        symmetric_qmin = -(width // 2 + 1)
        symmetric_qmax = width // 2
        max_scale = jnp.maximum(jnp.abs(exact_divide(min_val, float(symmetric_qmin))),
                                jnp.abs(exact_divide(max_val, float(symmetric_qmax))))
        straddles = (min_val < 0) & (max_val > 0)
        min_val = jnp.where(straddles, max_scale * np.float32(symmetric_qmin), min_val)
        max_val = jnp.where(straddles, max_scale * np.float32(symmetric_qmax), max_val)
    straddles = (min_val < 0) & (max_val > 0)
    mn = jnp.minimum(min_val, 0.0)
    mx = jnp.maximum(max_val, 0.0)
    threshold32 = jnp.float32(SMALL_SCALE_THRESHOLD)
    with jax.enable_x64(True):
        f64 = jnp.float64
        scale = exact_divide(mx.astype(f64) - mn.astype(f64), float(width))
        scale32 = scale.astype(jnp.float32)
        degenerate = (scale32 == 0) | jnp.isinf(exact_divide(jnp.float32(1), scale32))
        scale = jnp.where(degenerate, f64(0.1), scale)
        small = scale < threshold32.astype(f64)
        original_scale = scale.astype(jnp.float32)
        amplifier = exact_divide(threshold32, jnp.where(small, original_scale, 1.0))
        edge = threshold32 * jnp.float32(width)
        mn_small = jnp.where(mn == 0, mn, jnp.where(mx == 0, -edge, mn * amplifier))
        mx_small = jnp.where(mn == 0, edge, jnp.where(mx == 0, mx, mx * amplifier))
        mn = jnp.where(small, mn_small, mn)
        mx = jnp.where(small, mx_small, mx)
        scale = jnp.where(small, threshold32.astype(f64), scale)
        from_min = exact_divide(mn.astype(f64), scale)
        from_max = exact_divide(mx.astype(f64), scale)
        error_min = abs(qmin) - jnp.abs(from_min)
        error_max = abs(qmax) - jnp.abs(from_max)
        initial = jnp.where(error_min < error_max, qmin - from_min, qmax - from_max)
        if preserve_sparsity:
            initial = jnp.where(straddles, f64((qmin + qmax) / 2), initial)
        zero_point = jnp.where(initial < qmin, f64(qmin),
                               jnp.where(initial > qmax, f64(qmax), jnp.round(initial)))
        # NaN statistics: every comparison is False, nearbyint(NaN) -> INT32_MIN on x86.
        zero_point = jnp.where(jnp.isnan(zero_point), f64(-(2.0**31)), zero_point)
        return scale.astype(jnp.float32), zero_point.astype(jnp.int32)
