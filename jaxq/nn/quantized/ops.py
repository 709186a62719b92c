"""``torch.ops.quantized`` element-wise / normalization ops on :class:`jaxq.QTensor`.

The ops behind :class:`~jaxq.nn.quantized.QFunctional` and the quantized normalization
modules, with torch's x86 numerics:

* ``add`` / ``add_relu``: dequantize both as torch's vectorized kernel
  (``fma(s, q, -s * zp)``), add in float32, requantize ``rint(y * (1/s)) + zp``;
* ``mul`` / ``mul_relu``: integer product ``(a - za)(b - zb)`` requantized with the
  multiplier ``(sa * sb) * (1/s)`` (exact, as torch's ``requantize_from_int``);
* ``add_scalar`` / ``mul_scalar``: torch changes the *output qparams* instead of the
  values where it can (its ``_add_scalar_out`` / ``_mul_scalar_out`` rules);
* ``cat`` / ``matmul`` / ``softmax`` / ``layer_norm`` / ``group_norm`` /
  ``instance_norm``: dequantize, float op, ``quantize_per_tensor`` (float summation
  order differs from torch's, so an output can move by 1);
* ``batch_norm``: torch's fused ``alpha * (q - zp) + beta`` per channel
  (``alpha``/``beta`` computed with torch's float/double mix), rounded once.

Only per-tensor quint8 / qint8 QTensors are accepted (torch's kernels' domain). torch's
vectorized kernels handle the last ``numel % 128`` elements of each contiguous chunk with
a scalar path whose rounding differs in rare ties; jaxq follows the vectorized path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.dtypes import QuantDType
from jaxq.core.qtensor import QTensor, quantize_per_tensor
from jaxq.core.float_arithmetic import fma_f32
from jaxq.nn.quantized._utils import output_qparams, require_per_tensor
from jaxq.nn.quantized.functional import dequantize_like_torch, requantize

__all__ = ["add", "add_relu", "mul", "mul_relu", "add_scalar", "mul_scalar", "cat",
           "matmul", "batch_norm", "softmax", "layer_norm", "group_norm", "instance_norm",
           "quantize_like_torch"]


def _pair(x: Any, y: Any, op: str) -> tuple[QTensor, QTensor]:
    x = require_per_tensor(x, op, "qa")
    y = require_per_tensor(y, op, "qb")
    if x.dtype is not y.dtype:
        raise TypeError(f"{op}: both inputs must have the same dtype; got {x.dtype.name} "
                        f"and {y.dtype.name}")
    return x, y


def _add(x, y, scale, zero_point, relu: bool, op: str) -> QTensor:
    x, y = _pair(x, y, op)
    scale, zero_point = output_qparams(scale, zero_point, x.dtype, op)
    value = dequantize_like_torch(x) + dequantize_like_torch(y)
    if relu:
        value = jnp.maximum(value, 0.0)
    return requantize(value, scale, zero_point, x.dtype)


def add(qa: QTensor, qb: QTensor, scale: Any, zero_point: Any) -> QTensor:
    """``quantized::add``: ``qa + qb`` requantized to ``(scale, zero_point)`` (broadcasts)."""
    return _add(qa, qb, scale, zero_point, False, "quantized::add")


def add_relu(qa: QTensor, qb: QTensor, scale: Any, zero_point: Any) -> QTensor:
    """``quantized::add_relu``: ``relu(qa + qb)`` requantized."""
    return _add(qa, qb, scale, zero_point, True, "quantized::add_relu")


def _mul(x, y, scale, zero_point, relu: bool, op: str) -> QTensor:
    x, y = _pair(x, y, op)
    scale, zero_point = output_qparams(scale, zero_point, x.dtype, op)
    product = ((x.data.astype(jnp.int32) - x.zero_point)
               * (y.data.astype(jnp.int32) - y.zero_point))
    multiplier = (x.scale * y.scale) * (jnp.float32(1.0) / scale)
    q = jnp.round(product.astype(jnp.float32) * multiplier) + zero_point.astype(jnp.float32)
    low = zero_point.astype(jnp.float32) if relu else x.dtype.quant_min
    q = jnp.clip(q, low, x.dtype.quant_max)
    return QTensor(q.astype(x.dtype.storage_dtype), scale, zero_point, x.dtype)


def mul(qa: QTensor, qb: QTensor, scale: Any, zero_point: Any) -> QTensor:
    """``quantized::mul``: integer product requantized (exact, as torch)."""
    return _mul(qa, qb, scale, zero_point, False, "quantized::mul")


def mul_relu(qa: QTensor, qb: QTensor, scale: Any, zero_point: Any) -> QTensor:
    """``quantized::mul_relu``."""
    return _mul(qa, qb, scale, zero_point, True, "quantized::mul_relu")


def _check_scalar(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument}={value!r} must be a Python number")
    return float(value)


def add_scalar(qa: QTensor, b: float) -> QTensor:
    """``quantized::add_scalar``: torch's rule, ``c_q = rint(b / s)``; the zero point moves
    to ``zp - c_q`` and, where that leaves the range, the scale widens instead.
    """
    op = "quantized::add_scalar"
    x = require_per_tensor(qa, op)
    c = _check_scalar(b, "b")
    qmin, qmax = int(x.dtype.quant_min), int(x.dtype.quant_max)
    with jax.enable_x64(True):
        s = x.scale.astype(jnp.float64)
        z = x.zero_point.astype(jnp.int64)
        c_q = jnp.round(jnp.float64(c) / s).astype(jnp.int64)
        shifted = z - c_q
        below = qmin > shifted
        above = qmax < shifted
        width = float(qmax - qmin)
        s_below = (qmax - shifted).astype(jnp.float64) / width * s
        s_above = (shifted - qmin).astype(jnp.float64) / width * s
        new_scale = jnp.where(below, s_below, jnp.where(above, s_above, s)).astype(
            jnp.float32)
        new_zp = jnp.where(below, qmin, jnp.where(above, qmax, shifted)).astype(jnp.int32)
        c_q32 = c_q.astype(jnp.int32)
    # In range: values unchanged. Out of range: requantize (q - zp + c_q) with the
    # multiplier s / s' (torch's requantize_from_int).
    moved = below | above
    multiplier = x.scale * (jnp.float32(1.0) / new_scale)
    requantized = jnp.round((x.data.astype(jnp.int32) - x.zero_point + c_q32).astype(
        jnp.float32) * multiplier) + new_zp.astype(jnp.float32)
    requantized = jnp.clip(requantized, qmin, qmax).astype(jnp.int32)
    values = jnp.where(moved, requantized, x.data.astype(jnp.int32))
    return QTensor(values.astype(x.dtype.storage_dtype), new_scale, new_zp, x.dtype)


def mul_scalar(qa: QTensor, b: float) -> QTensor:
    """``quantized::mul_scalar``: ``b > 0`` scales the scale; ``b == 0`` gives zeros with
    ``(1.0, 0)``; ``b < 0`` flips the values ``qmax + qmin - q`` (torch's rule)."""
    op = "quantized::mul_scalar"
    x = require_per_tensor(qa, op)
    value = _check_scalar(b, "b")
    qmin, qmax = int(x.dtype.quant_min), int(x.dtype.quant_max)
    if value == 0.0:
        return QTensor(jnp.zeros(x.data.shape, x.data.dtype), jnp.float32(1.0), jnp.int32(0),
                       x.dtype)
    with jax.enable_x64(True):
        new_scale = (jnp.float64(abs(value)) * x.scale.astype(jnp.float64)).astype(
            jnp.float32)
    if value > 0:
        return QTensor(x.data, new_scale, x.zero_point, x.dtype)
    flipped = (qmax + qmin - x.data.astype(jnp.int32)).astype(x.data.dtype)
    return QTensor(flipped, new_scale, qmax - (x.zero_point - qmin), x.dtype)


def quantize_like_torch(value: jax.Array, scale: jax.Array, zero_point: jax.Array,
                        dtype: QuantDType) -> QTensor:
    """``torch.quantize_per_tensor`` of a float result (the fallback of torch's ops)."""
    return quantize_per_tensor(value.astype(jnp.float32), scale, zero_point, dtype)


def cat(qx: Sequence[QTensor], scale: Any, zero_point: Any, dim: int = 0) -> QTensor:
    """``quantized::cat``: concatenate and requantize to ``(scale, zero_point)``."""
    op = "quantized::cat"
    if isinstance(qx, QTensor) or not isinstance(qx, Sequence) or not qx:
        raise TypeError(f"{op}: qx must be a non-empty list of QTensors")
    tensors = [require_per_tensor(t, op, f"qx[{i}]") for i, t in enumerate(qx)]
    dtype = tensors[0].dtype
    if any(t.dtype is not dtype for t in tensors):
        raise TypeError(f"{op}: all inputs must have the same dtype")
    scale, zero_point = output_qparams(scale, zero_point, dtype, op)
    value = jnp.concatenate([t.dequantize() for t in tensors], axis=dim)
    return quantize_like_torch(value, scale, zero_point, dtype)


def matmul(qa: QTensor, qb: QTensor, scale: Any, zero_point: Any) -> QTensor:
    """``quantized::matmul``: float matmul of the dequantized inputs, requantized."""
    x, y = _pair(qa, qb, "quantized::matmul")
    scale, zero_point = output_qparams(scale, zero_point, x.dtype, "quantized::matmul")
    value = jnp.matmul(x.dequantize(), y.dequantize(), precision=jax.lax.Precision.HIGHEST)
    return quantize_like_torch(value, scale, zero_point, x.dtype)


def batch_norm(qx: QTensor, weight: Any, bias: Any, mean: Any, var: Any, eps: float,
               output_scale: Any, output_zero_point: Any, relu: bool = False) -> QTensor:
    """``quantized::batch_norm`` on a channels-last QTensor ``(N, ..., C)``.

    torch: ``alpha = f32(inv_sigma * w) * (s_in / s_out)``,
    ``beta = (b - mean * inv_sigma * w) / s_out`` (``inv_sigma = 1 / sqrt(var + eps)``,
    the divisions in float64), then ``q = rint(fma(alpha, q_in - zp_in, beta)) + zp_out``.
    """
    op = "quantized::batch_norm"
    x = require_per_tensor(qx, op)
    scale, zero_point = output_qparams(output_scale, output_zero_point, x.dtype, op)
    channels = x.shape[-1]
    arrays = []
    for name, value, default in (("weight", weight, 1.0), ("bias", bias, 0.0),
                                 ("mean", mean, None), ("var", var, None)):
        if value is None:
            if default is None:
                raise ValueError(f"{op}: {name} is required")
            value = jnp.full((channels,), default, jnp.float32)
        value = jnp.asarray(value, jnp.float32)
        if value.shape != (channels,):
            raise ValueError(f"{op}: {name} must have shape ({channels},) (channels last); "
                             f"got {value.shape}")
        arrays.append(value)
    w, b, m, v = arrays
    with jax.enable_x64(True):
        root = jnp.sqrt(v + jnp.float32(eps))
        inv_sigma = (1.0 / root.astype(jnp.float64)).astype(jnp.float32)
        ratio = x.scale.astype(jnp.float64) / scale.astype(jnp.float64)
        alpha = ((inv_sigma * w).astype(jnp.float64) * ratio).astype(jnp.float32)
        centered = b - jax.lax.optimization_barrier((m * inv_sigma) * w)
        beta = (centered.astype(jnp.float64) / scale.astype(jnp.float64)).astype(
            jnp.float32)
    shifted = (x.data.astype(jnp.int32) - x.zero_point).astype(jnp.float32)
    y = jnp.round(fma_f32(alpha, shifted, beta)) + zero_point.astype(jnp.float32)
    low = zero_point.astype(jnp.float32) if relu else x.dtype.quant_min
    q = jnp.clip(y, low, x.dtype.quant_max)
    return QTensor(q.astype(x.dtype.storage_dtype), scale, zero_point, x.dtype)


def softmax(qx: QTensor, dim: int, output_scale: Any, output_zero_point: Any) -> QTensor:
    """``quantized::softmax`` (x86: dequantize, softmax, quantize)."""
    x = require_per_tensor(qx, "quantized::softmax")
    scale, zero_point = output_qparams(output_scale, output_zero_point, x.dtype,
                                       "quantized::softmax")
    return quantize_like_torch(jax.nn.softmax(x.dequantize(), axis=dim), scale, zero_point,
                               x.dtype)


def _normalize(value: jax.Array, axes: tuple[int, ...], eps: float) -> jax.Array:
    mean = jnp.mean(value, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(value - mean), axis=axes, keepdims=True)
    return (value - mean) * jax.lax.rsqrt(var + jnp.float32(eps))


def layer_norm(qx: QTensor, normalized_shape: Sequence[int], weight: Any, bias: Any,
               eps: float, output_scale: Any, output_zero_point: Any) -> QTensor:
    """``quantized::layer_norm`` over the trailing ``normalized_shape`` dims."""
    op = "quantized::layer_norm"
    x = require_per_tensor(qx, op)
    scale, zero_point = output_qparams(output_scale, output_zero_point, x.dtype, op)
    shape = tuple(normalized_shape)
    if tuple(x.shape[-len(shape):]) != shape:
        raise ValueError(f"{op}: input shape {x.shape} does not end with normalized_shape "
                         f"{shape}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    y = _normalize(x.dequantize(), axes, eps)
    if weight is not None:
        y = y * jnp.asarray(weight, jnp.float32)
    if bias is not None:
        y = y + jnp.asarray(bias, jnp.float32)
    return quantize_like_torch(y, scale, zero_point, x.dtype)


def group_norm(qx: QTensor, num_groups: int, weight: Any, bias: Any, eps: float,
               output_scale: Any, output_zero_point: Any) -> QTensor:
    """``quantized::group_norm`` on channels-last ``(N, *spatial, C)``."""
    op = "quantized::group_norm"
    x = require_per_tensor(qx, op)
    scale, zero_point = output_qparams(output_scale, output_zero_point, x.dtype, op)
    channels = x.shape[-1]
    if x.ndim < 2 or channels % num_groups:
        raise ValueError(f"{op}: num_groups={num_groups} must divide the channels "
                         f"({channels}) of a (N, ..., C) input; got shape {x.shape}")
    value = x.dequantize()
    grouped = value.reshape(value.shape[:-1] + (num_groups, channels // num_groups))
    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
    y = _normalize(grouped, axes, eps).reshape(value.shape)
    if weight is not None:
        y = y * jnp.asarray(weight, jnp.float32)
    if bias is not None:
        y = y + jnp.asarray(bias, jnp.float32)
    return quantize_like_torch(y, scale, zero_point, x.dtype)


def instance_norm(qx: QTensor, weight: Any, bias: Any, eps: float, output_scale: Any,
                  output_zero_point: Any) -> QTensor:
    """``quantized::instance_norm`` on channels-last ``(N, *spatial, C)`` (group norm
    with one channel per group, as torch computes it)."""
    x = require_per_tensor(qx, "quantized::instance_norm")
    return group_norm(x, x.shape[-1], weight, bias, eps, output_scale, output_zero_point)
