"""Quantized ConvTranspose1d/2d/3d (``torch.ao.nn.quantized.ConvTranspose*d``), channels-last.

A transposed convolution is a plain convolution of the input dilated by ``stride``
(``stride - 1`` holes between neighbours), padded by ``dilation * (k - 1) - padding``
(plus ``output_padding`` at the high end), with the kernel flipped in space and its
``(in, out / groups)`` channel axes swapped. The holes and the padding hold the input
zero point, so they contribute exactly 0 to ``sum (x - zx)(w - zw)``, and the whole op is
the existing integer convolution of :mod:`jaxq.nn.quantized._conv` (int32 accumulators,
then fbgemm's ``ReQuantizeOutput`` epilogue of :mod:`jaxq.kernels.xla`): only the
operands are rearranged here, no formula is repeated. Results are bit-exact with torch's
fbgemm ``quantized::conv_transpose{1,2,3}d``, and so with its x86 engine, except where
torch 2.13's x86 engine hands the op to oneDNN (groups 1, output_padding 0, symmetric
weight) and in_channels != out_channels: there x86 disagrees with fbgemm and with the
float reference, and jaxq follows fbgemm.

Unlike torch's quantized modules (which accept it silently), ``output_padding`` must be
smaller than ``stride`` or ``dilation``, as for torch's float ConvTranspose.

Layouts: activations ``(N, L, C)``, ``(N, H, W, C)``, ``(N, D, H, W, C)`` (torch:
``(N, C, ...)``); weights in torch's transposed layout ``(in, out / groups, *k)``.
The output size per spatial dim is torch's
``(L - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

Weights: per-tensor qint8, as torch's x86 engine. jaxq also takes per-channel weights
quantized along axis 1 (the output-channel axis of the transposed layout, qnnpack's
convention), which torch's x86 / fbgemm engine refuses ("Per Channel Quantization is
currently disabled for transposed conv"); with ``groups > 1`` output channel
``g * out / groups + j`` uses the qparams of ``j``, as dequantizing the weight says.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized.conv_transpose import ConvTranspose2d
  >>> m = ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1)
  >>> x = jaxq.quantize_per_tensor(jnp.ones((1, 5, 5, 2)), 0.1, 0, jaxq.quint8)
  >>> m(x).shape
  (1, 10, 10, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core.dtypes import qint8, quint8
from jaxq.core.qscheme import QScheme
from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized._conv import (
    PackedConvWeight, check_conv_channels, normalize_tuple, pack_conv_weight, quantized_conv)
from jaxq.nn.quantized._utils import QuantizedBuffer, QuantizedWeight

__all__ = ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "pack_conv_transpose_weight", "unpack_conv_transpose_weight",
           "normalize_transpose_padding", "conv_transpose_output_size",
           "quantized_conv_transpose", "conv_transpose_config_from_flax"]


# ---------------------------------------------------------------------------
# Pure functions.
# ---------------------------------------------------------------------------
def pack_conv_transpose_weight(weight: QTensor, groups: int = 1) -> PackedConvWeight:
    """Packs a transposed-conv weight as the equivalent forward-conv weight, once.

    Args:
      weight: qint8 QTensor in torch's transposed layout ``(in, out / groups, *k)``,
        per-tensor, or per-channel along axis 1 (``out / groups`` qparams).
      groups: feature groups (``in`` must be divisible by it).

    Returns:
      The :class:`jaxq.nn.quantized._conv.PackedConvWeight` of the forward convolution
      (kernel flipped in space, channels swapped per group): ``(*k, in / groups, out)``,
      per-channel qparams repeated to ``(out,)``.

    Raises:
      TypeError: not a qint8 QTensor.
      ValueError: fewer than 3 dims, ``in`` not divisible by ``groups``, per-channel
        along another axis than 1.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> w = jaxq.quantize_per_tensor(jnp.ones((4, 3, 2, 2)), 0.1, 0, jaxq.qint8)
      >>> pack_conv_transpose_weight(w, groups=2).data.shape
      (2, 2, 2, 6)
    """
    if not isinstance(weight, QTensor) or weight.dtype is not qint8:
        kind = weight.dtype.name if isinstance(weight, QTensor) else type(weight).__name__
        raise TypeError(f"weight must be a qint8 QTensor of shape (in_channels, "
                        f"out_channels / groups, *kernel_size); got {kind}")
    if weight.ndim < 3:
        raise ValueError(f"weight must have shape (in_channels, out_channels / groups, "
                         f"*kernel_size); got {weight.shape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups={groups!r} must be a positive int")
    groups = int(groups)
    in_channels, out_per_group = weight.shape[:2]
    if in_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} (the "
                         "weight's first dim)")
    n = weight.ndim - 2
    kernel_size = tuple(weight.shape[2:])
    scale, zero_point = weight.scale, weight.zero_point
    if weight.qscheme().is_per_channel:
        if weight.q_per_channel_axis() != 1:
            raise ValueError("per-channel transposed-conv weights must be quantized along "
                             "axis 1 (output channels of the (in, out / groups, *k) "
                             f"layout); got axis {weight.q_per_channel_axis()}")
        scale, zero_point = jnp.tile(scale, groups), jnp.tile(zero_point, groups)
        qscheme, axis = QScheme.per_channel_affine, 0
    else:
        qscheme, axis = QScheme.per_tensor_affine, None
    in_per_group = in_channels // groups
    values = weight.int_values().reshape((groups, in_per_group, out_per_group) + kernel_size)
    values = jnp.flip(values, axis=tuple(range(3, 3 + n)))
    # (out, in / groups, *k): output channel g * out_per_group + j.
    values = jnp.moveaxis(values, 2, 1).reshape(
        (groups * out_per_group, in_per_group) + kernel_size).astype(jnp.int8)
    forward = QTensor(values, scale, zero_point, qint8, qscheme, axis)
    return pack_conv_weight(forward, groups)


def unpack_conv_transpose_weight(packed: PackedConvWeight) -> QTensor:
    """The inverse of :func:`pack_conv_transpose_weight`: torch's ``(in, out / g, *k)``."""
    spec = packed.spec
    n, groups = spec.spatial_dims, spec.groups
    out_per_group = spec.out_channels // groups
    in_per_group = spec.in_channels // groups
    values = jnp.flip(packed.data, axis=tuple(range(n)))  # (*k, in / g, out)
    values = values.reshape(spec.kernel_size + (in_per_group, groups, out_per_group))
    values = jnp.transpose(values, (n + 1, n, n + 2, *range(n)))
    values = values.reshape((spec.in_channels, out_per_group) + spec.kernel_size)
    if spec.granularity == "per_channel":
        return QTensor(values, packed.scale[:out_per_group],
                       packed.zero_point[:out_per_group], qint8, "per_channel_affine", 1)
    return QTensor(values, packed.scale, packed.zero_point, qint8)


def normalize_transpose_padding(padding: Any, n: int) -> tuple[tuple[int, int], ...]:
    """torch's transposed-conv ``padding`` as ``((low, high), ...)`` amounts cropped.

    Accepts an int or ``n`` ints (torch: the same on both sides) or ``n`` ``(low, high)``
    pairs (jaxq: a different amount cropped from the start and the end of the full
    output, what ``nnx.ConvTranspose``'s ``"SAME"`` padding needs). All >= 0.
    """
    if isinstance(padding, str):
        raise ValueError(f"padding={padding!r} must be an int, {n} ints or {n} (low, high) "
                         "pairs (transposed convolutions take no 'same' / 'valid')")
    if isinstance(padding, Sequence) and len(padding) == n and all(
            isinstance(p, Sequence) and not isinstance(p, str) for p in padding):
        pairs = []
        for pair in padding:
            if len(pair) != 2 or not all(isinstance(v, (int, np.integer))
                                         and not isinstance(v, bool) for v in pair):
                raise ValueError(f"padding={padding!r}: each pair must be two ints")
            pairs.append((int(pair[0]), int(pair[1])))
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            raise ValueError(f"padding={padding!r} must be non-negative")
        return tuple(pairs)
    values = normalize_tuple(padding, n, "padding", minimum=0)
    return tuple((p, p) for p in values)


def _check_output_padding(output_padding, stride, dilation) -> None:
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ValueError(f"output padding must be smaller than either stride or "
                             f"dilation, but got output_padding={output_padding}, "
                             f"stride={stride}, dilation={dilation}")


def conv_transpose_output_size(spatial: Sequence[int], kernel_size, stride, padding,
                               output_padding, dilation) -> tuple[int, ...]:
    """torch's ``(L - 1) s - p_lo - p_hi + d (k - 1) + output_padding + 1`` per dim."""
    return tuple((size - 1) * s - lo - hi + d * (k - 1) + op + 1 for size, k, s, (lo, hi),
                 op, d in zip(spatial, kernel_size, stride, padding, output_padding,
                              dilation))


def quantized_conv_transpose(x: QTensor, weight: PackedConvWeight, bias: Any,
                             stride: tuple[int, ...], padding, output_padding,
                             dilation: tuple[int, ...], out_scale: jax.Array,
                             out_zero_point: jax.Array,
                             op: str = "quantized::conv_transpose") -> QTensor:
    """Quantized N-d transposed convolution of a channels-last QTensor (fbgemm numerics).

    Args:
      x: per-tensor quint8 QTensor ``(N, *spatial, in_channels)``.
      weight: from :func:`pack_conv_transpose_weight`.
      bias: float ``(out_channels,)`` or None.
      stride, output_padding, dilation: n-tuples of ints.
      padding: ``((low, high), ...)`` cropped from the full output
        (:func:`normalize_transpose_padding`).
      out_scale, out_zero_point: float32 / int32 scalars.
      op: name for error messages.

    Returns:
      A quint8 QTensor ``(N, *out_spatial, out_channels)`` with the output qparams.

    Raises:
      ValueError: wrong input rank / channels, or an empty output.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> w = pack_conv_transpose_weight(
      ...     jaxq.quantize_per_tensor(jnp.ones((2, 3, 3)), 0.1, 0, jaxq.qint8))
      >>> x = jaxq.quantize_per_tensor(jnp.ones((1, 4, 2)), 0.1, 0, jaxq.quint8)
      >>> y = quantized_conv_transpose(x, w, None, (2,), ((0, 0),), (0,), (1,),
      ...                              jnp.float32(0.1), jnp.int32(0))
      >>> y.shape
      (1, 9, 3)
    """
    spec = weight.spec
    n = spec.spatial_dims
    if x.ndim != n + 2 or x.shape[-1] != spec.in_channels:
        raise ValueError(f"{op}: input must have shape (N, *{n} spatial dims, "
                         f"{spec.in_channels}) (channels last); got {x.shape}")
    out_size = conv_transpose_output_size(x.shape[1:-1], spec.kernel_size, stride, padding,
                                          output_padding, dilation)
    if min(out_size) < 1:
        raise ValueError(f"{op}: the output size {out_size} is empty (input {x.shape}, "
                         f"kernel_size={spec.kernel_size}, stride={stride}, padding="
                         f"{padding}, output_padding={output_padding}, dilation={dilation})")
    # Dilate by the stride and pad with the zero point in one lax.pad (a negative side
    # crops: padding larger than dilation * (k - 1)).
    config = [(0, 0, 0)]
    for k, s, d, (lo, hi), extra in zip(spec.kernel_size, stride, dilation, padding,
                                        output_padding):
        reach = d * (k - 1)
        config.append((reach - lo, reach - hi + extra, s - 1))
    config.append((0, 0, 0))
    fill = jnp.asarray(x.zero_point, jnp.int32).astype(x.data.dtype)
    dilated = QTensor(jax.lax.pad(x.data, fill, config), x.scale, x.zero_point, x.dtype)
    return quantized_conv(dilated, weight, bias, (1,) * n, "VALID", dilation, out_scale,
                          out_zero_point, relu=False, op=op)


def _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation,
                    scale, zero_point, n: int) -> QTensor:
    op = f"quantized::conv_transpose{n}d"
    x = _utils.require_per_tensor(input, op, dtypes=(quint8,))
    if not isinstance(weight, PackedConvWeight):
        weight = pack_conv_transpose_weight(weight, groups)
    elif weight.spec.groups != groups:
        raise ValueError(f"{op}: groups={groups} disagrees with the packed weight "
                         f"(groups={weight.spec.groups})")
    if weight.spec.spatial_dims != n:
        raise ValueError(f"{op}: weight has {weight.spec.spatial_dims} spatial dims; "
                         f"expected {n}")
    stride = normalize_tuple(stride, n, "stride")
    dilation = normalize_tuple(dilation, n, "dilation")
    output_padding = normalize_tuple(output_padding, n, "output_padding", minimum=0)
    _check_output_padding(output_padding, stride, dilation)
    scale, zero_point = _utils.output_qparams(scale, zero_point, x.dtype, op)
    return quantized_conv_transpose(x, weight, bias, stride,
                                    normalize_transpose_padding(padding, n),
                                    output_padding, dilation, scale, zero_point, op)


def conv_transpose1d(input: QTensor, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1, scale: float = 1.0, zero_point: int = 0
                     ) -> QTensor:
    """Quantized 1-d transposed convolution: input ``(N, L, C)`` quint8, weight qint8
    ``(C, O / groups, k)`` (torch's layout) or packed; output ``(N, L', O)`` with
    ``(scale, zero_point)``. Argument order of ``torch.nn.functional.conv_transpose1d``."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups,
                           dilation, scale, zero_point, 1)


def conv_transpose2d(input: QTensor, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1, scale: float = 1.0, zero_point: int = 0
                     ) -> QTensor:
    """Quantized 2-d transposed convolution: input ``(N, H, W, C)`` quint8, weight qint8
    ``(C, O / groups, kh, kw)`` or packed; output ``(N, H', W', O)``.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> x = jaxq.quantize_per_tensor(jnp.ones((1, 3, 3, 2)), 0.1, 0, jaxq.quint8)
      >>> w = jaxq.quantize_per_tensor(jnp.ones((2, 4, 2, 2)), 0.1, 0, jaxq.qint8)
      >>> conv_transpose2d(x, w, stride=2, scale=0.1).shape
      (1, 6, 6, 4)
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups,
                           dilation, scale, zero_point, 2)


def conv_transpose3d(input: QTensor, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1, scale: float = 1.0, zero_point: int = 0
                     ) -> QTensor:
    """Quantized 3-d transposed convolution: input ``(N, D, H, W, C)`` quint8, weight
    qint8 ``(C, O / groups, kd, kh, kw)`` or packed; output ``(N, D', H', W', O)``."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups,
                           dilation, scale, zero_point, 3)


# ---------------------------------------------------------------------------
# From a Flax nnx.ConvTranspose.
# ---------------------------------------------------------------------------
def _flax_tuple(value: Any, n: int) -> tuple[int, ...]:
    value = 1 if value is None else value
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    return tuple(int(v) for v in value)


def _flax_transpose_pads(padding: Any, kernel_size, stride, dilation, owner: str
                         ) -> tuple[tuple[int, int], ...]:
    """The ``(low, high)`` padding ``lax.conv_transpose`` gives the dilated input.

    Flax calls ``lax.conv_transpose`` without ``use_consistent_padding``: explicit
    pairs pad the stride-dilated input as given; ``"SAME"`` / ``"VALID"`` follow jax's
    ``_conv_transpose_padding`` (mirrored here: it is private).
    """
    n = len(kernel_size)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in ("SAME", "VALID"):
            raise ValueError(f"{owner}.from_float: padding={padding!r} is not supported "
                             "(quantized transposed convolutions pad with zeros only)")
        pads = []
        for k, s, d in zip(kernel_size, stride, dilation):
            k = d * (k - 1) + 1
            if mode == "SAME":
                total = k + s - 2
                low = k - 1 if s > k - 1 else int(np.ceil(total / 2))
            else:
                total = k + s - 2 + max(k - s, 0)
                low = k - 1
            pads.append((low, total - low))
        return tuple(pads)
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * n
    pairs = []
    for p in padding:
        if isinstance(p, (int, np.integer)):
            pairs.append((int(p), int(p)))
        else:
            lo, hi = p
            pairs.append((int(lo), int(hi)))
    if len(pairs) == 1:
        pairs = pairs * n
    if len(pairs) != n:
        raise ValueError(f"{owner}.from_float: padding={padding!r} has {len(pairs)} "
                         f"entries for a {n}-d convolution")
    return tuple(pairs)


def conv_transpose_config_from_flax(conv: Any, rank: int, owner: str) -> dict[str, Any]:
    """torch-style constructor arguments of an ``nnx.ConvTranspose``.

    Flax pads the dilated input by ``(low, high)``; torch crops ``padding`` from the
    full output and appends ``output_padding``: ``padding = (d (k - 1) - low,
    d (k - 1) - high)`` when ``high <= low`` (jaxq pairs when they differ), else
    ``output_padding = high - low``.

    Raises:
      TypeError: the kernel rank differs from ``rank``.
      ValueError: circular / causal padding, a mask, or a padding with no torch
        equivalent (wider than ``d (k - 1)``, or ``output_padding`` too large).
    """
    kernel_size = tuple(int(k) for k in np.atleast_1d(conv.kernel_size))
    if len(kernel_size) != rank:
        raise TypeError(f"{owner}.from_float expects a {rank}-d transposed convolution "
                        f"(nnx.ConvTranspose with {rank} spatial dims); got kernel_size="
                        f"{kernel_size}")
    if getattr(conv, "mask", None) is not None:
        raise ValueError(f"{owner}.from_float: masked convolutions are not supported")
    stride = _flax_tuple(conv.strides, rank)
    dilation = _flax_tuple(conv.kernel_dilation, rank)
    pads = _flax_transpose_pads(conv.padding, kernel_size, stride, dilation, owner)
    padding, output_padding = [], []
    for k, d, (lo, hi) in zip(kernel_size, dilation, pads):
        reach = d * (k - 1)
        extra = max(hi - lo, 0)
        crop = (reach - lo, reach - hi + extra)
        if min(crop) < 0:
            raise ValueError(f"{owner}.from_float: padding={conv.padding!r} pads more "
                             f"than dilation * (kernel_size - 1) = {reach}; torch's "
                             "transposed convolution has no equivalent")
        padding.append(crop)
        output_padding.append(extra)
    if all(lo == hi for lo, hi in padding):
        padding = [lo for lo, _ in padding]
    _check_output_padding(tuple(output_padding), stride, dilation)
    return dict(in_channels=int(conv.in_features), out_channels=int(conv.out_features),
                kernel_size=kernel_size, stride=stride, padding=tuple(padding),
                output_padding=tuple(output_padding), groups=1, dilation=dilation)


def _torch_ordered_kernel(conv: Any) -> jax.Array:
    """The Flax kernel as ``(*k, out, in)``, whose torch layout is ``(in, out, *k)``.

    ``transpose_kernel=True`` stores exactly that (lax flips it and swaps the channels,
    torch's definition); otherwise Flax convolves its ``(*k, in, out)`` kernel as is,
    which is torch's weight flipped in space.
    """
    kernel = jnp.asarray(_utils.variable_value(conv.kernel), jnp.float32)
    if getattr(conv, "transpose_kernel", False):
        return kernel
    n = kernel.ndim - 2
    return jnp.swapaxes(jnp.flip(kernel, axis=tuple(range(n))), -1, -2)


def _observes_float(post: Any) -> bool:
    """A float (dynamic-quantization placeholder) activation observer."""
    try:
        return bool(jnp.issubdtype(jnp.dtype(getattr(post, "dtype", None)), jnp.floating))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------
# Modules.
# ---------------------------------------------------------------------------
class _ConvTransposeNd(nnx.Module):
    """Shared implementation of the quantized ConvTransposeNd modules."""

    _RANK: ClassVar[int] = 2
    _FLOAT_MODULE: ClassVar[type] = nnx.ConvTranspose

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any,
                 stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
                 groups: int = 1, bias: bool = True, dilation: Any = 1,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None):
        del device, dtype
        n = self._RANK
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for '
                             f"{type(self).__name__}; got padding_mode={padding_mode!r}")
        check_conv_channels(in_channels, out_channels, groups)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = normalize_tuple(kernel_size, n, "kernel_size")
        self.stride = normalize_tuple(stride, n, "stride")
        self.padding = normalize_transpose_padding(padding, n)
        self.output_padding = normalize_tuple(output_padding, n, "output_padding",
                                              minimum=0)
        self.dilation = normalize_tuple(dilation, n, "dilation")
        _check_output_padding(self.output_padding, self.stride, self.dilation)
        self.groups = int(groups)
        self.padding_mode = padding_mode
        weight = QTensor(jnp.zeros((in_channels, out_channels // groups) + self.kernel_size,
                                   jnp.int8), 1.0, 0, qint8)
        self._packed_params = QuantizedWeight(pack_conv_transpose_weight(weight, groups))
        self._bias = QuantizedBuffer(jnp.zeros((out_channels,), jnp.float32) if bias
                                     else None)
        self.scale = QuantizedBuffer(jnp.float32(1.0))
        self.zero_point = QuantizedBuffer(jnp.int32(0))

    @property
    def _op(self) -> str:
        return f"quantized::conv_transpose{self._RANK}d"

    def __call__(self, x: QTensor) -> QTensor:
        """``x``: per-tensor quint8 ``(N, *spatial, in_channels)`` -> quint8 ``(N,
        *out_spatial, out_channels)`` with the module's ``scale`` / ``zero_point``."""
        x = _utils.require_qtensor(x, self._op)
        if x.ndim != self._RANK + 2:
            layout = {1: "(N, L, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}[self._RANK]
            raise ValueError(f"Input shape must be `{layout}`! (channels last); got "
                             f"{x.shape}")
        x = _utils.require_per_tensor(x, self._op, dtypes=(quint8,))
        scale, zero_point = _utils.output_qparams(self.scale, self.zero_point, x.dtype,
                                                  self._op)
        return quantized_conv_transpose(
            x, self._packed_params.get_value(), self._bias.get_value(), self.stride,
            self.padding, self.output_padding, self.dilation, scale, zero_point, self._op)

    forward = __call__

    def weight(self) -> QTensor:
        """The qint8 weight in torch's layout ``(in, out / groups, *kernel_size)``."""
        return unpack_conv_transpose_weight(self._packed_params.get_value())

    def bias(self) -> jax.Array | None:
        return self._bias.get_value()

    def set_weight_bias(self, w: QTensor, b: Any) -> None:
        """Packs ``w`` (qint8 QTensor, torch's transposed layout) and stores ``b``."""
        expected = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        if not isinstance(w, QTensor):
            raise TypeError(f"weight must be a qint8 QTensor; got {type(w).__name__}")
        if tuple(w.shape) != expected:
            raise ValueError(f"weight must have shape {expected} (torch's layout (in, out "
                             f"/ groups, *kernel_size)); got {tuple(w.shape)}")
        if b is not None:
            b = jnp.asarray(b, jnp.float32)
            if b.shape != (self.out_channels,):
                raise ValueError(f"bias must have shape ({self.out_channels},); got "
                                 f"{b.shape}")
        self._packed_params.set_value(pack_conv_transpose_weight(w, self.groups))
        self._bias.set_value(b)

    def _get_name(self) -> str:
        return f"QuantizedConvTranspose{self._RANK}d"

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, scale={float(self.scale.get_value())}, "
                f"zero_point={int(self.zero_point.get_value())}, padding={self.padding}, "
                f"output_padding={self.output_padding}, dilation={self.dilation}, "
                f"groups={self.groups}")

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False
                   ) -> _ConvTransposeNd:
        """From an observed ``nnx.ConvTranspose`` of this rank (torch's protocol).

        The weight observer is ``mod.qconfig.weight()`` run on the weight in torch's
        layout; it must be per-tensor (torch's x86 engine has no per-channel transposed
        conv). The output qparams come from ``mod.activation_post_process``; without
        one (or with a float one) they stay 1.0 / 0, as in torch.

        Raises:
          TypeError: not an ``nnx.ConvTranspose`` of this rank.
          ValueError: no qconfig, a per-channel or non-qint8 weight observer, a padding
            with no torch equivalent.
        """
        owner = f"nnq.{cls.__name__}"
        if not isinstance(mod, cls._FLOAT_MODULE):
            raise TypeError(f"{owner}.from_float only works for "
                            f"{cls._FLOAT_MODULE.__name__} with {cls._RANK} spatial dims; "
                            f"got {type(mod).__name__}")
        if getattr(mod, "qconfig", None) is None:
            raise ValueError("Input float module must have qconfig defined.")
        config = conv_transpose_config_from_flax(mod, cls._RANK, owner)
        kernel = _torch_ordered_kernel(mod)
        post = _utils.weight_observer(mod, kernel, owner, use_precomputed_fake_quant)
        if getattr(post, "qscheme", None) not in (QScheme.per_tensor_affine,
                                                   QScheme.per_tensor_symmetric):
            raise ValueError(f"{owner}.from_float: the weight observer must be per-tensor "
                             f"(got qscheme {getattr(post, 'qscheme', None)!r}); Per "
                             "Channel Quantization is disabled for transposed conv on "
                             "torch's x86 engine")
        qweight, _ = _utils.quantize_kernel(kernel, post, owner)
        bias = _utils.float_bias(mod)
        qconv = cls(**config, bias=bias is not None)
        qconv.set_weight_bias(qweight, bias)
        act = getattr(mod, "activation_post_process", None)
        if act is not None and not _observes_float(act):
            scale, zero_point, _ = _utils.activation_qparams(mod, owner)
            qconv.scale.set_value(scale)
            qconv.zero_point.set_value(zero_point)
        return qconv

    @classmethod
    def from_reference(cls, ref_qconvt: Any, output_scale: Any, output_zero_point: Any
                       ) -> _ConvTransposeNd:
        """From a reference quantized transposed conv with torch's attributes
        (``in_channels``, ``out_channels``, ``kernel_size``, ``stride``, ``padding``,
        ``output_padding``, ``groups``, ``dilation``, ``bias``) and
        ``get_quantized_weight()`` in torch's ``(in, out / groups, *k)`` layout."""
        qweight = ref_qconvt.get_quantized_weight()
        bias = _utils.float_bias(ref_qconvt)
        qconv = cls(ref_qconvt.in_channels, ref_qconvt.out_channels, ref_qconvt.kernel_size,
                    ref_qconvt.stride, ref_qconvt.padding, ref_qconvt.output_padding,
                    ref_qconvt.groups, bias is not None, ref_qconvt.dilation)
        qconv.set_weight_bias(qweight, bias)
        scale, zero_point = _utils.output_qparams(output_scale, output_zero_point)
        qconv.scale.set_value(scale)
        qconv.zero_point.set_value(zero_point)
        return qconv


class ConvTranspose1d(_ConvTransposeNd):
    """Quantized 1-d transposed convolution: ``(N, L, C)`` quint8 -> ``(N, L', out)``."""

    _RANK = 1


class ConvTranspose2d(_ConvTransposeNd):
    """Quantized 2-d transposed convolution: ``(N, H, W, C)`` quint8 ->
    ``(N, H', W', out)``."""

    _RANK = 2


class ConvTranspose3d(_ConvTransposeNd):
    """Quantized 3-d transposed convolution: ``(N, D, H, W, C)`` quint8 ->
    ``(N, D', H', W', out)``."""

    _RANK = 3
