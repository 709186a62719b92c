"""Quantized ``interpolate`` / ``upsample*`` (``torch.ao.nn.quantized.functional``).

Split out of :mod:`jaxq.nn.quantized.functional`, which re-exports every public name.
Inputs are channels-last QTensors (``(N, L, C)``, ``(N, H, W, C)``, ``(N, D, H, W, C)``);
outputs keep the input's qparams. Nearest and (bi/tri)linear modes follow torch's
quantized x86 kernels: source indices and weights computed as ATen computes them, the
blend in float32 with every operation rounded as in torch's scalar loop, then
requantized with the input's qparams.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized.functional_interpolate import interpolate
  >>> q = jaxq.quantize_per_tensor(jnp.arange(4.0).reshape(1, 2, 2, 1), 1.0, 0, jaxq.quint8)
  >>> interpolate(q, scale_factor=2, mode="nearest").int_repr()[0, :, :, 0].tolist()
  [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.affine import exact_divide
from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized._conv import normalize_tuple
from jaxq.nn.quantized._utils import require_per_tensor, same_qparams

__all__ = ["interpolate", "upsample", "upsample_bilinear", "upsample_nearest"]


def _output_sizes(spatial, size, scale_factor, op):
    n = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: exactly one of size and scale_factor must be given")
    if size is not None:
        sizes = normalize_tuple(size, n, "size")
        return sizes, (None,) * n
    if isinstance(scale_factor, (int, float)):
        factors = (float(scale_factor),) * n
    elif isinstance(scale_factor, Sequence) and len(scale_factor) == n:
        factors = tuple(float(f) for f in scale_factor)
    else:
        raise ValueError(f"{op}: scale_factor={scale_factor!r} must be a number or {n} "
                         "numbers")
    if any(f <= 0 for f in factors):
        raise ValueError(f"{op}: scale_factor must be positive")
    return tuple(int(math.floor(L * f)) for L, f in zip(spatial, factors)), factors


def _scale_value(scale_factor, in_size, out_size) -> np.float32:
    # ATen's compute_scales_value: 1 / scale_factor when given, else in / out (float).
    if scale_factor is not None and scale_factor > 0:
        return np.float32(1.0 / scale_factor)
    return np.float32(np.float32(in_size) / np.float32(out_size))


def _nearest_indices(in_size, out_size, scale_factor) -> np.ndarray:
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    scale = _scale_value(scale_factor, in_size, out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def _linear_coefficients(in_size, out_size, align_corners, scale_factor):
    """ATen's area_pixel_compute_source_index (float32): (i0, i1, lambda0, lambda1)."""
    if align_corners:
        scale = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0)
        source = np.float32(scale) * np.arange(out_size, dtype=np.float32)
    else:
        scale = _scale_value(scale_factor, in_size, out_size)
        source = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) \
            - np.float32(0.5)
        source = np.maximum(source, np.float32(0)).astype(np.float32)
    i0 = source.astype(np.int64)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    lambda1 = (source - i0.astype(np.float32)).astype(np.float32)
    lambda0 = (np.float32(1.0) - lambda1).astype(np.float32)
    return i0, i1, lambda0, lambda1


def _mul32(a: jax.Array, b: jax.Array) -> jax.Array:
    """float32 ``a * b`` rounded once, never contracted into an FMA with a later add
    (computed exactly in float64, then rounded: torch's scalar kernel rounds each op)."""
    with jax.enable_x64(True):
        return (jnp.asarray(a).astype(jnp.float64) * jnp.asarray(b).astype(jnp.float64)
                ).astype(jnp.float32)


def _add32(a: jax.Array, b: jax.Array) -> jax.Array:
    """float32 ``a + b`` rounded once (exact in float64 for these magnitudes)."""
    with jax.enable_x64(True):
        return (jnp.asarray(a).astype(jnp.float64) + jnp.asarray(b).astype(jnp.float64)
                ).astype(jnp.float32)


def interpolate(input: QTensor, size: Any = None, scale_factor: Any = None,
                mode: str = "nearest", align_corners: bool | None = None) -> QTensor:
    """Resizes ``(N, H, W, C)`` (or ``(N, D, H, W, C)`` for nearest) quantized values.

    ``mode`` is ``"nearest"`` (integer copies) or ``"bilinear"`` (torch's quantized
    kernel: integer-valued weighted sum in float32, then ``quantize_val`` with the
    input's qparams). Output qparams = input's.
    """
    op = "quantized::interpolate"
    x = require_per_tensor(input, op)
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"{op}: mode={mode!r} must be 'nearest' or 'bilinear' (the "
                         "quantized modes torch supports)")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{op}: align_corners is only for mode='bilinear'")
    n = 2 if mode == "bilinear" else x.ndim - 2
    if x.ndim != n + 2 or n not in (1, 2, 3):
        raise ValueError(f"{op}: input must be (N, *spatial, C) with 2 spatial dims for "
                         f"bilinear (1 to 3 for nearest); got {x.shape}")
    spatial = x.shape[1:-1]
    sizes, factors = _output_sizes(spatial, size, scale_factor, op)
    if mode == "nearest":
        values = x.data
        for axis, (L, out, f) in enumerate(zip(spatial, sizes, factors)):
            values = jnp.take(values, jnp.asarray(_nearest_indices(L, out, f), jnp.int32),
                              axis=axis + 1)
        return same_qparams(x, values)
    (h0, h1, hl0, hl1), (w0, w1, wl0, wl1) = (
        _linear_coefficients(L, out, bool(align_corners), f)
        for L, out, f in zip(spatial, sizes, factors))
    v = x.data.astype(jnp.float32)

    def pick(hi, wi):
        return jnp.take(jnp.take(v, jnp.asarray(hi, jnp.int32), axis=1),
                        jnp.asarray(wi, jnp.int32), axis=2)

    wl0 = jnp.asarray(wl0)[None, None, :, None]
    wl1 = jnp.asarray(wl1)[None, None, :, None]
    hl0 = jnp.asarray(hl0)[None, :, None, None]
    hl1 = jnp.asarray(hl1)[None, :, None, None]
    top = _add32(_mul32(wl0, pick(h0, w0)), _mul32(wl1, pick(h0, w1)))
    bottom = _add32(_mul32(wl0, pick(h1, w0)), _mul32(wl1, pick(h1, w1)))
    result = _add32(_mul32(hl0, top), _mul32(hl1, bottom))
    result = _add32(result, -x.zero_point.astype(jnp.float32))
    # quantize_val: rint(zp + fl(fl(result * s_in) * (1 / s_out))), every op rounded.
    inverse = exact_divide(jnp.float32(1.0), x.scale)
    value = _mul32(_mul32(result, x.scale), inverse)
    q = jnp.clip(jnp.round(_add32(value, x.zero_point.astype(jnp.float32))),
                 x.dtype.quant_min, x.dtype.quant_max)
    return same_qparams(x, q.astype(jnp.int32))


def upsample(input: QTensor, size: Any = None, scale_factor: Any = None,
             mode: str = "nearest", align_corners: bool | None = None) -> QTensor:
    """Deprecated alias of :func:`interpolate` (as torch)."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_bilinear(input: QTensor, size: Any = None, scale_factor: Any = None
                      ) -> QTensor:
    """``interpolate(..., mode="bilinear", align_corners=True)`` (as torch)."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


def upsample_nearest(input: QTensor, size: Any = None, scale_factor: Any = None
                     ) -> QTensor:
    """``interpolate(..., mode="nearest")`` (as torch)."""
    return interpolate(input, size, scale_factor, mode="nearest")
