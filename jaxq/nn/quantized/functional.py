"""``torch.ao.nn.quantized.functional`` on :class:`jaxq.QTensor` (channels-last).

Every function takes and returns QTensors with torch's output-qparams rules:

* ``max_pool*``, ``avg_pool*``, ``adaptive_avg_pool*``, ``interpolate``, ``threshold``,
  ``hardtanh``, ``clamp``, ``leaky_relu`` without ``scale``: the input's qparams;
* ``hardswish``, ``elu``, ``celu``, ``leaky_relu(scale=, zero_point=)``, ``linear``,
  ``conv*d``: the given output qparams;
* ``hardsigmoid``: fixed ``scale=1/256`` with ``zero_point`` 0 (quint8) / -128 (qint8).

Layout (Flax conventions): activations are channels-last, ``(N, L, C)``, ``(N, H, W, C)``,
``(N, D, H, W, C)``; weights of ``linear`` / ``conv*d`` are in torch's layout (as torch's
functional API takes them) or already packed.

Numerics follow torch's x86 kernels: the int8 matmul / convolution go through
:func:`jaxq.kernels.quantized_matmul` and :mod:`jaxq.nn.quantized._conv` (fbgemm's exact
requantize epilogue); element-wise float ops dequantize as torch's vectorized kernels do
(``fma(scale, q, -scale * zero_point)``), compute in float32 and requantize with
``rint(y * (1/scale)) + zero_point``; pooling averages in the integer domain like torch's
kernels. Results agree with torch bit for bit except where the float function itself
(``exp``) differs by an ulp from torch's SLEEF one, which can move an output by 1.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized import functional as qF
  >>> q = jaxq.quantize_per_tensor(jnp.arange(16.0).reshape(1, 4, 4, 1), 0.5, 0,
  ...                              jaxq.quint8)
  >>> qF.max_pool2d(q, 2).int_repr()[0, :, :, 0].tolist()
  [[10, 14], [26, 30]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.affine import exact_divide, quantize_values
from jaxq.core.dtypes import QuantDType, as_quant_dtype, qint8, quint8
from jaxq.core.qtensor import QTensor, quantize_values_zero_point_first
from jaxq.kernels import PackedWeight, pack_weight, quantized_matmul
from jaxq.core.float_arithmetic import fma_f32
from jaxq import kernels
from jaxq.nn.quantized._conv import (
    PackedConvWeight, normalize_padding, normalize_tuple, pack_weight_for_rank,
    packed_groups, packed_spatial_dims, quantized_conv_any)
from jaxq.nn.quantized._utils import output_qparams, require_per_tensor, same_qparams
# Interpolation has its own module; re-exported here, in torch's functional namespace.
from jaxq.nn.quantized.functional_interpolate import (
    interpolate, upsample, upsample_bilinear, upsample_nearest)

__all__ = [
    "avg_pool2d", "avg_pool3d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "conv1d",
    "conv2d", "conv3d", "interpolate", "linear", "max_pool1d", "max_pool2d", "celu",
    "leaky_relu", "hardtanh", "hardswish", "threshold", "elu", "hardsigmoid", "clamp",
    "upsample", "upsample_bilinear", "upsample_nearest",
    # jaxq extras used by the modules
    "relu6", "sigmoid", "dequantize_like_torch", "requantize", "quantize_scalar",
]


# ---------------------------------------------------------------------------
# The element-wise building blocks (torch's vectorized x86 kernels).
# ---------------------------------------------------------------------------
def dequantize_like_torch(x: QTensor) -> jax.Array:
    """float32 ``fma(scale, q, fl(scale * -zero_point))``: torch's vectorized dequantize.

    (The plain ``(q - zp) * scale`` of :meth:`QTensor.dequantize` can differ by an ulp.)
    """
    scale = x.scale.astype(jnp.float32)
    premul = scale * (-x.zero_point.astype(jnp.float32))
    return fma_f32(x.int_values().astype(jnp.float32), scale, premul)


def requantize(y: jax.Array, scale: jax.Array, zero_point: jax.Array,
               dtype: QuantDType) -> QTensor:
    """``clamp(rint(y * (1/scale)) + zero_point)``: torch's vectorized quantize.

    ``scale`` / ``zero_point`` are scalars; returns a per-tensor QTensor.
    """
    q = quantize_values(y.astype(jnp.float32), scale, zero_point.astype(jnp.float32),
                        dtype.quant_min, dtype.quant_max)
    return QTensor(q.astype(dtype.storage_dtype), scale, zero_point, dtype)


def quantize_scalar(value: Any, scale: jax.Array, zero_point: jax.Array,
                    dtype: QuantDType) -> jax.Array:
    """torch's scalar ``quantize_val``: ``clamp(rint(zp + fl(value * (1/scale))))`` (int32)."""
    q = quantize_values_zero_point_first(jnp.asarray(value, jnp.float32), scale,
                                         zero_point, dtype.quant_min, dtype.quant_max)
    return q.astype(jnp.int32)


def _input(x: Any, op: str) -> QTensor:
    return require_per_tensor(x, op)


def _out_params(x: QTensor, scale: Any, zero_point: Any, op: str):
    scale = x.scale if scale is None else scale
    zero_point = x.zero_point if zero_point is None else zero_point
    return output_qparams(scale, zero_point, x.dtype, op)


def _float_op(x: QTensor, fn, scale, zero_point) -> QTensor:
    return requantize(fn(dequantize_like_torch(x)), scale, zero_point, x.dtype)


def _check_float(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                         np.integer)):
        raise TypeError(f"{argument}={value!r} must be a number")
    return float(value)


# ---------------------------------------------------------------------------
# Linear and convolutions.
# ---------------------------------------------------------------------------
def _linear(x: QTensor, weight: PackedWeight, bias, scale, zero_point, relu: bool,
            op: str) -> QTensor:
    data = quantized_matmul(x.data, weight, x.scale, x.zero_point, bias=bias, relu=relu,
                            out_dtype=x.dtype.storage_dtype, out_scale=scale,
                            out_zero_point=zero_point)
    return QTensor(data, scale, zero_point, x.dtype)


def pack_linear_weight(weight: Any) -> PackedWeight:
    """A qint8 QTensor ``(out, in)`` (per-tensor or per-channel on axis 0) packed once."""
    if isinstance(weight, PackedWeight):
        return weight
    if not isinstance(weight, QTensor) or weight.dtype is not qint8:
        raise TypeError("weight must be a qint8 QTensor of shape (out_features, "
                        "in_features) or a PackedWeight; got "
                        f"{getattr(weight, 'dtype', type(weight).__name__)}")
    if weight.ndim != 2:
        raise ValueError(f"weight must have shape (out_features, in_features); got "
                         f"{weight.shape}")
    if weight.qscheme().is_per_channel and weight.q_per_channel_axis() != 0:
        raise ValueError("per-channel linear weights must be quantized along axis 0 "
                         "(output features)")
    return pack_weight(weight.data, weight.scale, weight.zero_point)


def linear(input: QTensor, weight: Any, bias: Any = None, scale: Any = None,
           zero_point: Any = None) -> QTensor:
    """Quantized ``input @ weight.T + bias`` requantized to ``(scale, zero_point)``.

    Args:
      input: per-tensor quint8 (or qint8) QTensor ``(..., in_features)``.
      weight: qint8 QTensor ``(out_features, in_features)`` (torch's layout), per-tensor
        or per-channel on axis 0, or a :class:`jaxq.kernels.PackedWeight` (packed once).
      bias: float ``(out_features,)`` or None.
      scale, zero_point: output qparams (default: the input's, as torch).

    Returns:
      QTensor ``(..., out_features)`` of the input's dtype.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized import functional as qF
      >>> x = jaxq.quantize_per_tensor(jnp.ones((2, 3)), 0.1, 0, jaxq.quint8)
      >>> w = jaxq.quantize_per_tensor(jnp.ones((4, 3)), 0.1, 0, jaxq.qint8)
      >>> qF.linear(x, w, scale=0.1, zero_point=0).dequantize()[0].tolist()
      [3.0, 3.0, 3.0, 3.0]
    """
    x = _input(input, "quantized::linear")
    scale, zero_point = _out_params(x, scale, zero_point, "quantized::linear")
    return _linear(x, pack_linear_weight(weight), bias, scale, zero_point, False,
                   "quantized::linear")


def _conv(input, weight, bias, stride, padding, dilation, groups, padding_mode, scale,
          zero_point, dtype, n: int) -> QTensor:
    op = f"quantized::conv{n}d"
    if padding_mode != "zeros":
        raise ValueError(f"{op}: only padding_mode='zeros' is supported; got "
                         f"{padding_mode!r}")
    if as_quant_dtype(dtype, "dtype") is not quint8:
        raise ValueError(f"{op}: only dtype=quint8 is supported (as torch); got {dtype!r}")
    x = _input(input, op)
    if not isinstance(weight, (PackedConvWeight, kernels.PackedConvWeight)):
        weight = pack_weight_for_rank(weight, groups)
    elif packed_groups(weight) != groups:
        raise ValueError(f"{op}: groups={groups} disagrees with the packed weight "
                         f"(groups={packed_groups(weight)})")
    if packed_spatial_dims(weight) != n:
        raise ValueError(f"{op}: weight has {packed_spatial_dims(weight)} spatial dims; "
                         f"expected {n}")
    scale, zero_point = output_qparams(scale, zero_point, x.dtype, op)
    return quantized_conv_any(x, weight, bias, normalize_tuple(stride, n, "stride"),
                          normalize_padding(padding, n), normalize_tuple(dilation, n,
                                                                         "dilation"),
                          scale, zero_point, op=op)


def conv1d(input: QTensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, padding_mode: str = "zeros",
           scale: float = 1.0, zero_point: int = 0, dtype: Any = quint8) -> QTensor:
    """Quantized 1-d convolution: input ``(N, L, C)`` quint8, weight qint8 ``(O, C/g, k)``
    (torch's layout) or a ``PackedConvWeight``; output ``(N, L', O)`` with
    ``(scale, zero_point)`` (torch's defaults 1.0 / 0)."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, padding_mode,
                 scale, zero_point, dtype, 1)


def conv2d(input: QTensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, padding_mode: str = "zeros",
           scale: float = 1.0, zero_point: int = 0, dtype: Any = quint8) -> QTensor:
    """Quantized 2-d convolution: input ``(N, H, W, C)`` quint8, weight qint8
    ``(O, C/g, kh, kw)`` (torch's layout) or a ``PackedConvWeight``; output
    ``(N, H', W', O)``.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> from jaxq.nn.quantized import functional as qF
      >>> x = jaxq.quantize_per_tensor(jnp.ones((1, 4, 4, 2)), 0.1, 0, jaxq.quint8)
      >>> w = jaxq.quantize_per_tensor(jnp.ones((3, 2, 3, 3)), 0.1, 0, jaxq.qint8)
      >>> qF.conv2d(x, w, scale=0.1).shape
      (1, 2, 2, 3)
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, padding_mode,
                 scale, zero_point, dtype, 2)


def conv3d(input: QTensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, padding_mode: str = "zeros",
           scale: float = 1.0, zero_point: int = 0, dtype: Any = quint8) -> QTensor:
    """Quantized 3-d convolution: input ``(N, D, H, W, C)`` quint8, weight qint8
    ``(O, C/g, kd, kh, kw)`` (torch's layout) or a ``PackedConvWeight``."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, padding_mode,
                 scale, zero_point, dtype, 3)


# ---------------------------------------------------------------------------
# Activations.
# ---------------------------------------------------------------------------
def clamp(input: QTensor, min_: float, max_: float) -> QTensor:
    """Integer clamp between ``quantize(min_)`` and ``quantize(max_)``; input qparams."""
    x = _input(input, "quantized::clamp")
    lo = quantize_scalar(_check_float(min_, "min_"), x.scale, x.zero_point, x.dtype)
    hi = quantize_scalar(_check_float(max_, "max_"), x.scale, x.zero_point, x.dtype)
    values = jnp.minimum(jnp.maximum(x.data.astype(jnp.int32), lo), hi)
    return same_qparams(x, values)


def hardtanh(input: QTensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> QTensor:
    """torch's quantized hardtanh (an integer clamp; ``inplace`` is ignored)."""
    del inplace
    return clamp(input, min_val, max_val)


def relu6(input: QTensor, inplace: bool = False) -> QTensor:
    """``min(max(q, zero_point), quantize(6.0))`` (torch.ops.quantized.relu6); input qparams."""
    del inplace
    x = _input(input, "quantized::relu6")
    six = quantize_scalar(6.0, x.scale, x.zero_point, x.dtype)
    values = jnp.minimum(jnp.maximum(x.data.astype(jnp.int32), x.zero_point), six)
    return same_qparams(x, values)


def threshold(input: QTensor, threshold: float, value: float) -> QTensor:
    """``x if x > threshold else value`` on dequantized values; input qparams."""
    x = _input(input, "quantized::threshold")
    t = jnp.float32(_check_float(threshold, "threshold"))
    v = jnp.float32(_check_float(value, "value"))
    return _float_op(x, lambda y: jnp.where(y > t, y, v), x.scale, x.zero_point)


def hardsigmoid(input: QTensor, inplace: bool = False) -> QTensor:
    """``clamp(x + 3, 0, 6) / 6`` with fixed output qparams ``(1/256, 0)`` (quint8) or
    ``(1/256, -128)`` (qint8), as torch."""
    del inplace
    x = _input(input, "quantized::hardsigmoid")
    zero_point = jnp.int32(0 if x.dtype is quint8 else -128)
    scale = jnp.float32(1.0 / 256)
    return _float_op(x, lambda y: exact_divide(jnp.clip(y + 3.0, 0.0, 6.0), 6.0),
                     scale, zero_point)


def hardswish(input: QTensor, scale: float, zero_point: int) -> QTensor:
    """``x * clamp(x + 3, 0, 6) / 6`` requantized to ``(scale, zero_point)``."""
    x = _input(input, "quantized::hardswish")
    scale, zero_point = output_qparams(scale, zero_point, x.dtype, "quantized::hardswish")
    return _float_op(x, lambda y: exact_divide(y * jnp.clip(y + 3.0, 0.0, 6.0), 6.0),
                     scale, zero_point)


def _elu_values(y: jax.Array, alpha: float, input_scale: float = 1.0) -> jax.Array:
    # torch's qelu kernel: negative part alpha * (exp(x * input_scale) - 1).
    negative = (jnp.exp(y * jnp.float32(input_scale)) - 1.0) * jnp.float32(alpha)
    return jnp.where(y < 0, negative, y)


def elu(input: QTensor, scale: float, zero_point: int, alpha: float = 1.0) -> QTensor:
    """ELU requantized to ``(scale, zero_point)``."""
    x = _input(input, "quantized::elu")
    scale, zero_point = output_qparams(scale, zero_point, x.dtype, "quantized::elu")
    alpha = _check_float(alpha, "alpha")
    return _float_op(x, lambda y: _elu_values(y, alpha), scale, zero_point)


def celu(input: QTensor, scale: float, zero_point: int, alpha: float = 1.0) -> QTensor:
    """CELU ``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`` requantized."""
    x = _input(input, "quantized::celu")
    scale, zero_point = output_qparams(scale, zero_point, x.dtype, "quantized::celu")
    alpha = _check_float(alpha, "alpha")
    if alpha == 0:
        raise ValueError("alpha must not be 0 for celu")
    return _float_op(x, lambda y: _elu_values(y, alpha, float(np.float32(1.0 / alpha))),
                     scale, zero_point)


def leaky_relu(input: QTensor, negative_slope: float = 0.01, inplace: bool = False,
               scale: Any = None, zero_point: Any = None) -> QTensor:
    """``x * (negative_slope if x < 0 else 1)``; output qparams given or the input's."""
    del inplace
    x = _input(input, "quantized::leaky_relu")
    scale, zero_point = _out_params(x, scale, zero_point, "quantized::leaky_relu")
    slope = jnp.float32(_check_float(negative_slope, "negative_slope"))
    return _float_op(x, lambda y: y * jnp.where(y < 0, slope, jnp.float32(1.0)), scale,
                     zero_point)


def sigmoid(input: QTensor, scale: Any = None, zero_point: Any = None) -> QTensor:
    """``1 / (1 + exp(-x))``; default output qparams ``(1/256, 0)`` (quint8) or
    ``(1/256, -128)`` (qint8) as ``torch.sigmoid`` on a quantized tensor."""
    x = _input(input, "quantized::sigmoid")
    if scale is None:
        scale, zero_point = 1.0 / 256, (0 if x.dtype is quint8 else -128)
    scale, zero_point = output_qparams(scale, zero_point, x.dtype, "quantized::sigmoid")
    return _float_op(x, lambda y: 1.0 / (1.0 + jnp.exp(-y)), scale, zero_point)


# ---------------------------------------------------------------------------
# Pooling (integer domain).
# ---------------------------------------------------------------------------
def _pool_output_size(length: int, kernel: int, stride: int, pad: int, dilation: int,
                      ceil_mode: bool) -> int:
    numerator = length + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-numerator // stride) if ceil_mode else numerator // stride) + 1
    if ceil_mode and (out - 1) * stride >= length + pad:
        out -= 1
    return out


def _check_pool_input(x: QTensor, n: int, op: str) -> None:
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(f"{op}: input must be ({'N, ' if True else ''}*{n} spatial dims, C) "
                         f"channels-last (batched or not); got shape {x.shape}")


def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
              n: int) -> QTensor:
    op = f"quantized::max_pool{n}d"
    if return_indices:
        raise NotImplementedError(f"{op}: return_indices=True is not supported (torch "
                                  "raises too)")
    x = _input(input, op)
    _check_pool_input(x, n, op)
    kernel = normalize_tuple(kernel_size, n, "kernel_size")
    stride = kernel if stride is None or stride == [] or stride == () else \
        normalize_tuple(stride, n, "stride")
    pad = normalize_tuple(padding, n, "padding", minimum=0)
    dil = normalize_tuple(dilation, n, "dilation")
    if any(p * 2 > k for p, k in zip(pad, kernel)):
        raise ValueError(f"{op}: padding={pad} should be at most half of kernel_size="
                         f"{kernel}")
    spatial = x.shape[-n - 1:-1]
    outs = [_pool_output_size(L, k, s, p, d, ceil_mode)
            for L, k, s, p, d in zip(spatial, kernel, stride, pad, dil)]
    if any(o <= 0 for o in outs):
        raise ValueError(f"{op}: output size {outs} is too small for input {spatial}")
    lead = x.ndim - n - 1
    pads = [(0, 0)] * lead + [
        (p, max(0, (o - 1) * s + d * (k - 1) + 1 - L - p))
        for L, k, s, p, d, o in zip(spatial, kernel, stride, pad, dil, outs)] + [(0, 0)]
    lowest = jnp.array(jnp.iinfo(x.data.dtype).min, x.data.dtype)
    result = jax.lax.reduce_window(
        x.data, lowest, jax.lax.max, (1,) * lead + kernel + (1,),
        (1,) * lead + stride + (1,), pads, window_dilation=(1,) * lead + dil + (1,))
    index = tuple([slice(None)] * lead + [slice(0, o) for o in outs] + [slice(None)])
    return same_qparams(x, result[index])


def max_pool1d(input: QTensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False
               ) -> QTensor:
    """Max pooling of ``(N, L, C)`` quantized values (input qparams kept)."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, 1)


def max_pool2d(input: QTensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False
               ) -> QTensor:
    """Max pooling of ``(N, H, W, C)`` quantized values (input qparams kept)."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, 2)


def _window_matrix(starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """0/1 int32 ``(out, length)``: row o selects positions ``[starts[o], ends[o])``."""
    positions = np.arange(length)
    return ((positions[None, :] >= starts[:, None])
            & (positions[None, :] < ends[:, None])).astype(np.int32)


def _window_sums(values: jax.Array, matrices: Sequence[np.ndarray]) -> jax.Array:
    """Integer sums over separable windows: values ``(..., *spatial, C)`` int32."""
    n = len(matrices)
    out = values
    first = values.ndim - n - 1
    for i, matrix in enumerate(matrices):
        axis = first + i
        out = jnp.moveaxis(jnp.tensordot(jnp.asarray(matrix), out, axes=([1], [axis]),
                                         preferred_element_type=jnp.int32), 0, axis)
    return out


def _requantize_average(x: QTensor, sums: jax.Array, sizes: np.ndarray,
                        divisors: np.ndarray) -> QTensor:
    """torch's integer averaging: ``rint(fl((sum - size * zp) / divisor) + zp)``.

    ``sizes``: number of real (unpadded) elements per window; ``divisors``: the divide
    factor (count_include_pad / divisor_override rules). Output qparams = input's.
    """
    acc = sums - jnp.asarray(sizes, jnp.int32) * x.zero_point
    # Static: the float32 quotient computed on the host (XLA may fold a constant
    # division differently).
    multiplier = jnp.asarray(np.float32(1.0) / np.asarray(divisors, np.float32))
    # The zero point is added before rounding (ties round to even on the full value),
    # after the product is rounded to float32. Computed through float64 (exact) so
    # that XLA cannot contract the two roundings into one FMA under jit.
    with jax.enable_x64(True):
        product = (acc.astype(jnp.float64) * multiplier.astype(jnp.float64)).astype(
            jnp.float32)
        shifted = (product.astype(jnp.float64) + x.zero_point.astype(jnp.float64)).astype(
            jnp.float32)
    q = jnp.round(shifted)
    q = jnp.clip(q, x.dtype.quant_min, x.dtype.quant_max)
    return same_qparams(x, q.astype(jnp.int32))


def _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override, n: int) -> QTensor:
    op = f"quantized::avg_pool{n}d"
    x = _input(input, op)
    _check_pool_input(x, n, op)
    kernel = normalize_tuple(kernel_size, n, "kernel_size")
    stride = kernel if stride is None or stride == [] or stride == () else \
        normalize_tuple(stride, n, "stride")
    pad = normalize_tuple(padding, n, "padding", minimum=0)
    if any(p * 2 > k for p, k in zip(pad, kernel)):
        raise ValueError(f"{op}: pad should be at most half of kernel size; got padding="
                         f"{pad}, kernel_size={kernel}")
    if divisor_override is not None and (isinstance(divisor_override, bool) or
                                         int(divisor_override) == 0):
        raise ValueError(f"{op}: divisor_override={divisor_override!r} must be a "
                         "non-zero int")
    spatial = x.shape[-n - 1:-1]
    matrices, pool_sizes, real_sizes = [], [], []
    for L, k, s, p in zip(spatial, kernel, stride, pad):
        out = _pool_output_size(L, k, s, p, 1, ceil_mode)
        start = np.arange(out) * s - p
        end = np.minimum(start + k, L + p)
        pool_sizes.append(end - start)
        start_c, end_c = np.maximum(start, 0), np.minimum(end, L)
        real_sizes.append(end_c - start_c)
        matrices.append(_window_matrix(start_c, end_c, L))
    shape_n = lambda sizes: functools_reduce_outer(sizes)  # noqa: E731
    real = shape_n(real_sizes)
    if divisor_override is not None:
        divisors = np.full(real.shape, int(divisor_override))
    elif count_include_pad:
        divisors = shape_n(pool_sizes)
    else:
        divisors = real
    sums = _window_sums(x.data.astype(jnp.int32), matrices)
    return _requantize_average(x, sums, real[..., None], divisors[..., None])


def functools_reduce_outer(sizes: Sequence[np.ndarray]) -> np.ndarray:
    """Outer product of per-dimension window sizes: ``(out_1, ..., out_n)`` int64."""
    result = np.ones((), np.int64)
    for size in sizes:
        result = np.multiply.outer(result, size.astype(np.int64))
    return result


def avg_pool2d(input: QTensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> QTensor:
    """Average pooling of ``(N, H, W, C)`` in the integer domain (input qparams kept)."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, 2)


def avg_pool3d(input: QTensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> QTensor:
    """Average pooling of ``(N, D, H, W, C)`` in the integer domain (input qparams kept)."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, 3)


def _adaptive_avg_pool(input, output_size, n: int) -> QTensor:
    op = f"quantized::adaptive_avg_pool{n}d"
    x = _input(input, op)
    _check_pool_input(x, n, op)
    spatial = x.shape[-n - 1:-1]
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size,) * n
    if len(output_size) != n:
        raise ValueError(f"{op}: output_size={output_size!r} must have {n} entries")
    sizes = tuple(L if o is None else int(o) for L, o in zip(spatial, output_size))
    if any(o <= 0 for o in sizes):
        raise ValueError(f"{op}: output_size={output_size!r} must be positive")
    matrices, counts = [], []
    for L, out in zip(spatial, sizes):
        o = np.arange(out)
        start = (o * L) // out
        end = -((-(o + 1) * L) // out)
        matrices.append(_window_matrix(start, end, L))
        counts.append(end - start)
    real = functools_reduce_outer(counts)
    sums = _window_sums(x.data.astype(jnp.int32), matrices)
    return _requantize_average(x, sums, real[..., None], real[..., None])


def adaptive_avg_pool2d(input: QTensor, output_size: Any) -> QTensor:
    """Adaptive average pooling of ``(N, H, W, C)`` (input qparams kept)."""
    return _adaptive_avg_pool(input, output_size, 2)


def adaptive_avg_pool3d(input: QTensor, output_size: Any) -> QTensor:
    """Adaptive average pooling of ``(N, D, H, W, C)`` (input qparams kept)."""
    return _adaptive_avg_pool(input, output_size, 3)
