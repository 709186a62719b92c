"""The int8 convolution (N-d, channels-last): packed weights, int32 accumulators, epilogue.

2-D convolutions go through :func:`jaxq.kernels.quantized_conv2d` (the kernels' entry
point, with its native CPU backend); ``jaxq.kernels`` has no 1-D / 3-D entry point, so
those ranks run here: an
``int8 x int8 -> int32`` ``lax.conv_general_dilated`` followed by the requantize epilogue
of :mod:`jaxq.kernels.xla` (the same function the quantized matmul uses, torch fbgemm's
``ReQuantizeOutput`` with a float bias), so the formula is written once.

Accumulators, with ``x`` quint8/qint8 and ``w`` qint8 (zero points ``zx``, ``zw[o]``):

    acc[n, p, o] = sum over the window of (x - zx) (w[o] - zw[o])

Padding contributes 0, as in torch (the padded input holds the input zero point).
uint8 inputs are shifted to int8 by ``x - 128`` (with ``zx - 128``) and padded with the
shifted zero point, so one int8 convolution plus per-channel corrections is exact:

    acc = conv(x', w) - zx' * sum_window(w[o]) - zw[o] * conv(x', 1) + zx' zw[o] |window|

where the last two terms only exist for weights with non-zero zero points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.dtypes import qint8, quint8
from jaxq.core.qtensor import QTensor
from jaxq import kernels
from jaxq.kernels.xla import requantize_epilogue

__all__ = ["ConvSpec", "PackedConvWeight", "pack_conv_weight", "conv_accumulators",
           "quantized_conv", "normalize_tuple", "normalize_padding", "pack_weight_for_rank",
           "quantized_conv_any", "torch_weight_of"]

_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"),
                      3: ("NDHWC", "DHWIO", "NDHWC")}


def normalize_tuple(value: Any, n: int, argument: str, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (int or length-``n`` sequence of ints >= ``minimum``) as an n-tuple."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * n
    elif isinstance(value, Sequence) and len(value) == n and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        values = tuple(int(v) for v in value)
    elif isinstance(value, Sequence) and len(value) == 1 and isinstance(
            value[0], (int, np.integer)):
        values = (int(value[0]),) * n
    else:
        raise ValueError(f"{argument}={value!r} must be an int or a sequence of {n} ints")
    if any(v < minimum for v in values):
        raise ValueError(f"{argument}={value!r} must be >= {minimum}")
    return values


def check_conv_channels(in_channels: Any, out_channels: Any, groups: Any) -> None:
    """Raises ValueError unless all three are positive ints and groups divides both."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    if in_channels % groups:
        raise ValueError("in_channels must be divisible by groups")
    if out_channels % groups:
        raise ValueError("out_channels must be divisible by groups")


def normalize_padding(padding: Any, n: int) -> str | tuple[tuple[int, int], ...]:
    """torch / Flax padding as ``((lo, hi), ...)`` or ``"SAME"`` / ``"VALID"``.

    Accepts an int, ``n`` ints (symmetric, torch), ``n`` ``(lo, hi)`` pairs (Flax),
    ``"same"`` / ``"valid"`` (either case). Zero padding only (torch's quantized
    convolutions support ``padding_mode="zeros"`` only).
    """
    if isinstance(padding, str):
        upper = padding.upper()
        if upper not in ("SAME", "VALID"):
            raise ValueError(f"padding={padding!r} must be an int, a tuple, 'same' or "
                             "'valid' (quantized convolutions pad with zeros only)")
        return upper
    if isinstance(padding, Sequence) and len(padding) == n and all(
            isinstance(p, Sequence) and len(p) == 2 for p in padding):
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            raise ValueError(f"padding={padding!r} must be non-negative")
        return pairs
    values = normalize_tuple(padding, n, "padding", minimum=0)
    return tuple((p, p) for p in values)


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Static description of a packed convolution weight (part of the jit cache key).

    Attributes:
      kernel_size: spatial extent ``(k1, ..., kN)``.
      in_channels: input channels (all groups).
      out_channels: output channels.
      groups: feature groups.
      symmetric: every weight zero point is 0 (corrections skipped statically).
      granularity: ``"per_tensor"`` or ``"per_channel"`` weight qparams.
    """

    kernel_size: tuple[int, ...]
    in_channels: int
    out_channels: int
    groups: int
    symmetric: bool
    granularity: str

    @property
    def spatial_dims(self) -> int:
        return len(self.kernel_size)


@jax.tree_util.register_pytree_node_class
class PackedConvWeight:
    """A quantized convolution weight in Flax's kernel layout, packed once.

    Attributes:
      data: int8 ``(*kernel_size, in_channels / groups, out_channels)``.
      scale: float32 ``()`` or ``(out_channels,)``.
      zero_point: int32 like ``scale``.
      weight_sums: int32 ``(out_channels,)``: sum of each output channel's int8 values.
      spec: the static :class:`ConvSpec`.
    """

    def __init__(self, data, scale, zero_point, weight_sums, spec: ConvSpec):
        self.data = data
        self.scale = scale
        self.zero_point = zero_point
        self.weight_sums = weight_sums
        self.spec = spec

    def tree_flatten(self):
        return (self.data, self.scale, self.zero_point, self.weight_sums), self.spec

    @classmethod
    def tree_unflatten(cls, spec, children):
        return cls(*children, spec=spec)

    def __repr__(self) -> str:
        s = self.spec
        return (f"PackedConvWeight(out={s.out_channels}, in={s.in_channels}, "
                f"kernel_size={s.kernel_size}, groups={s.groups}, {s.granularity}, "
                f"symmetric={s.symmetric})")

    def torch_weight(self) -> QTensor:
        """The weight as torch stores it: a qint8 QTensor ``(out, in / groups, *k)``."""
        n = self.spec.spatial_dims
        values = jnp.transpose(self.data, (n + 1, n, *range(n)))
        if self.spec.granularity == "per_channel":
            return QTensor(values, self.scale, self.zero_point, qint8,
                           "per_channel_affine", 0)
        return QTensor(values, self.scale, self.zero_point, qint8)


def pack_conv_weight(weight: QTensor, groups: int = 1) -> PackedConvWeight:
    """Packs a qint8 QTensor weight in torch's layout ``(out, in / groups, *k)``.

    Args:
      weight: per-tensor or per-channel (axis 0) qint8 QTensor.
      groups: feature groups (``out`` and the input channels must be divisible).

    Returns:
      A :class:`PackedConvWeight` (Flax kernel layout).

    Raises:
      TypeError / ValueError: not a qint8 QTensor, per-channel on another axis, bad shapes.

    Example:
      >>> import jax.numpy as jnp, jaxq
      >>> w = jaxq.quantize_per_tensor(jnp.ones((4, 2, 3, 3)), 0.1, 0, jaxq.qint8)
      >>> pack_conv_weight(w).data.shape
      (3, 3, 2, 4)
    """
    if not isinstance(weight, QTensor) or weight.dtype is not qint8:
        raise TypeError(f"weight must be a qint8 QTensor; got {type(weight).__name__}"
                        f"{'' if not isinstance(weight, QTensor) else ' ' + weight.dtype.name}")
    if weight.ndim < 3:
        raise ValueError(f"weight must have shape (out, in / groups, *kernel_size); got "
                         f"{weight.shape}")
    groups = int(groups)
    out_channels, in_per_group = weight.shape[:2]
    if groups < 1 or out_channels % groups:
        raise ValueError(f"groups={groups} must be >= 1 and divide out_channels="
                         f"{out_channels}")
    qscheme = weight.qscheme()
    if qscheme.is_per_channel:
        if weight.q_per_channel_axis() != 0:
            raise ValueError("per-channel conv weights must be quantized along axis 0 "
                             f"(output channels); got axis {weight.q_per_channel_axis()}")
        granularity = "per_channel"
    else:
        granularity = "per_tensor"
    n = weight.ndim - 2
    values = weight.int_values()
    data = jnp.transpose(values, (*range(2, n + 2), 1, 0)).astype(jnp.int8)
    zero_point = weight.zero_point.astype(jnp.int32)
    symmetric = not isinstance(zero_point, jax.core.Tracer) and not np.any(
        np.asarray(zero_point))
    sums = jnp.sum(values.astype(jnp.int32).reshape(out_channels, -1), axis=1)
    spec = ConvSpec(kernel_size=tuple(weight.shape[2:]), in_channels=in_per_group * groups,
                    out_channels=out_channels, groups=groups, symmetric=bool(symmetric),
                    granularity=granularity)
    return PackedConvWeight(data, weight.scale.astype(jnp.float32), zero_point, sums, spec)


def _resolve_padding(padding, spatial_shape, kernel_size, stride, dilation):
    if padding == "VALID":
        return tuple((0, 0) for _ in kernel_size)
    if padding == "SAME":
        window = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation)]
        return tuple(jax.lax.padtype_to_pads(spatial_shape, window, stride, "SAME"))
    return padding


def conv_accumulators(x: jax.Array, x_zero_point: jax.Array, weight: PackedConvWeight,
                      stride: tuple[int, ...], padding, dilation: tuple[int, ...]
                      ) -> jax.Array:
    """Exact int32 ``sum (x - zx)(w - zw)`` over each window: ``(N, *out_spatial, out)``.

    Args:
      x: uint8/int8 ``(N, *spatial, in_channels)``.
      x_zero_point: int32 scalar.
      weight: the :class:`PackedConvWeight`.
      stride, dilation: n-tuples.
      padding: ``((lo, hi), ...)`` or ``"SAME"`` / ``"VALID"``.
    """
    spec = weight.spec
    n = spec.spatial_dims
    zx = jnp.asarray(x_zero_point, jnp.int32)
    if x.dtype == jnp.uint8:
        x = (x.astype(jnp.int32) - 128).astype(jnp.int8)
        zx = zx - 128
    pads = _resolve_padding(padding, x.shape[1:-1], spec.kernel_size, stride, dilation)
    config = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
    x = jax.lax.pad(x, zx.astype(jnp.int8), config)
    numbers = _DIMENSION_NUMBERS[n]

    def conv(lhs, rhs, groups):
        return jax.lax.conv_general_dilated(
            lhs, rhs, stride, "VALID", rhs_dilation=dilation, dimension_numbers=numbers,
            feature_group_count=groups, preferred_element_type=jnp.int32)

    acc = conv(x, weight.data, spec.groups)
    acc = acc - zx * weight.weight_sums
    if not spec.symmetric:
        zw = weight.zero_point
        in_per_group = spec.in_channels // spec.groups
        ones = jnp.ones(spec.kernel_size + (in_per_group, spec.groups), jnp.int8)
        window_sums = conv(x, ones, spec.groups)  # (N, *S', groups)
        window_sums = jnp.repeat(window_sums, spec.out_channels // spec.groups, axis=-1)
        size = int(np.prod(spec.kernel_size)) * in_per_group
        acc = acc - window_sums * zw + (zx * zw) * jnp.int32(size)
    return acc


def quantized_conv(x: QTensor, weight: PackedConvWeight, bias: Any, stride, padding,
                   dilation, out_scale: jax.Array, out_zero_point: jax.Array,
                   relu: bool = False, op: str = "quantized::conv") -> QTensor:
    """Quantized N-d convolution of a channels-last QTensor (torch fbgemm's numerics).

    Args:
      x: per-tensor quint8/qint8 QTensor ``(N, *spatial, in_channels)``.
      weight: a :class:`PackedConvWeight`.
      bias: float ``(out_channels,)`` or None.
      stride, dilation: n-tuples; padding: see :func:`conv_accumulators`.
      out_scale, out_zero_point: output qparams (float32 / int32 scalars).
      relu: fuse a ReLU (clamp at the output zero point).
      op: name for error messages.

    Returns:
      A QTensor ``(N, *out_spatial, out_channels)`` of ``x``'s dtype with the output
      qparams.
    """
    spec = weight.spec
    n = spec.spatial_dims
    if x.ndim != n + 2 or x.shape[-1] != spec.in_channels:
        raise ValueError(f"{op}: input must have shape (N, *{n} spatial dims, "
                         f"{spec.in_channels}) (channels last); got {x.shape}")
    acc = conv_accumulators(x.data, x.zero_point, weight, stride, padding, dilation)
    out_shape = acc.shape
    lo, hi = int(x.dtype.quant_min), int(x.dtype.quant_max)
    if bias is not None:
        bias = jnp.asarray(bias, jnp.float32)
        if bias.shape != (spec.out_channels,):
            raise ValueError(f"{op}: bias must have shape ({spec.out_channels},); got "
                             f"{bias.shape}")
    data = requantize_epilogue(acc.reshape(-1, spec.out_channels), x.scale, weight.scale,
                               out_scale, out_zero_point, lo, hi, bias, relu,
                               x.dtype.storage_dtype)
    return QTensor(data.reshape(out_shape), out_scale, out_zero_point, x.dtype)


ACTIVATION_DTYPES = (quint8, qint8)


def pack_weight_for_rank(weight: QTensor, groups: int = 1) -> Any:
    """The packed form :func:`quantized_conv_any` runs: ``jaxq.kernels``'
    ``PackedConvWeight`` for 2-D kernels, :class:`PackedConvWeight` (this module's) else."""
    if isinstance(weight, QTensor) and weight.ndim == 4 and weight.dtype is qint8:
        if weight.qscheme().is_per_channel and weight.q_per_channel_axis() != 0:
            raise ValueError("per-channel conv weights must be quantized along axis 0 "
                             "(output channels)")
        return kernels.pack_conv_weight(weight.int_values(), weight.scale,
                                        weight.zero_point, weight_layout="OIHW",
                                        groups=int(groups))
    return pack_conv_weight(weight, groups)


def packed_spatial_dims(weight: Any) -> int:
    if isinstance(weight, kernels.PackedConvWeight):
        return 2
    return weight.spec.spatial_dims


def packed_groups(weight: Any) -> int:
    if isinstance(weight, kernels.PackedConvWeight):
        return weight.groups
    return weight.spec.groups


def torch_weight_of(weight: Any) -> QTensor:
    """Either packed form back as torch's qint8 ``(out, in / groups, *k)`` QTensor."""
    if not isinstance(weight, kernels.PackedConvWeight):
        return weight.torch_weight()
    packed = weight.matmul
    kh, kw = weight.kernel_size
    rows = kernels.weight_values(packed).reshape(
        weight.out_channels, kh, kw, weight.in_channels // weight.groups)
    values = jnp.transpose(rows, (0, 3, 1, 2))
    if packed.spec.granularity == "per_channel":
        return QTensor(values, packed.scale, packed.zero_point, qint8, "per_channel_affine", 0)
    return QTensor(values, packed.scale, packed.zero_point, qint8)


def quantized_conv_any(x: QTensor, weight: Any, bias: Any, stride, padding, dilation,
                       out_scale: jax.Array, out_zero_point: jax.Array, relu: bool = False,
                       op: str = "quantized::conv") -> QTensor:
    """:func:`quantized_conv`, or ``jaxq.kernels.quantized_conv2d`` for a 2-D packed
    weight (identical results; the kernels' entry point may run a native backend)."""
    if not isinstance(weight, kernels.PackedConvWeight):
        return quantized_conv(x, weight, bias, stride, padding, dilation, out_scale,
                              out_zero_point, relu, op)
    if x.ndim != 4 or x.shape[-1] != weight.in_channels:
        raise ValueError(f"{op}: input must have shape (N, H, W, {weight.in_channels}) "
                         f"(channels last); got {x.shape}")
    pads = _resolve_padding(padding, x.shape[1:-1], weight.kernel_size, stride, dilation)
    data = kernels.quantized_conv2d(
        x.data, weight, x.scale, x.zero_point, stride=stride, padding=tuple(pads),
        dilation=dilation, bias=bias, relu=relu, out_dtype=x.dtype.storage_dtype,
        out_scale=out_scale, out_zero_point=out_zero_point)
    return QTensor(data, out_scale, out_zero_point, x.dtype)
