"""Dynamic activation quantization and the float arithmetic torch's x86 kernels use.

torch's x86 dynamic Linear (``quantized::linear_dynamic``, fbgemm) does three things
that plain float32 XLA code does not reproduce:

* ATen's ``ChooseQuantizationParams`` computes the scale and zero point in float64;
* fbgemm quantizes with one rounding, ``rint(fma(x, 1/scale, zero_point))``;
* its float epilogue is ``fma(float(acc), act_scale * w_scale, bias)``, one rounding.

XLA:CPU contracts ``a * b + c`` into an FMA on its own, but not reliably (only inside one
fusion), so these functions compute the exact results explicitly (:mod:`jaxq.core.float_arithmetic`,
:mod:`jaxq.core.aten_qparams`). They are the reference formulas every backend is
checked against.

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
from jaxq.core.aten_qparams import choose_quantization_params
from jaxq.core.float_arithmetic import fma_f32
from jaxq.core.granularity import MappingType
from jaxq.kernels.problem import DynamicQuantization

__all__ = ["fbgemm_quantize", "quantize_activation", "torch_choose_qparams"]

def torch_choose_qparams(min_val, max_val, quant_min: int, quant_max: int
                         ) -> tuple[jax.Array, jax.Array]:
    """ATen's ``ChooseQuantizationParams`` without sparsity preservation (fbgemm's rule).

    Args:
      min_val, max_val: float32 scalars (or arrays of them) from the data.
      quant_min, quant_max: the (already reduced) integer range.

    Returns:
      ``(scale float32, zero_point int32)`` with the shape of ``min_val``.
    """
    return choose_quantization_params(min_val, max_val, int(quant_min), int(quant_max),
                                      preserve_sparsity=False)


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
