"""Reference quantized ConvTranspose1d/2d/3d
(``torch.ao.nn.quantized.reference.ConvTranspose*d``) on NNX, channels-last.

The float weight keeps torch's transposed layout ``(in, out / groups, *k)`` as a Flax-
ordered ``kernel`` ``(*k, out / groups, in)`` (``kernel_to_torch(kernel)`` is torch's
weight; for ``groups=1`` this is ``nnx.ConvTranspose(transpose_kernel=True)``'s kernel).
The forward quantizes and dequantizes it and runs torch's ``F.conv_transpose{n}d`` in
float32 as a forward convolution: the input dilated by ``stride``, padded by
``dilation * (k - 1) - padding`` (plus ``output_padding`` at the high end), the kernel
flipped in space with its channel axes swapped per group. Output size per spatial dim:
``(L - 1) * stride - pad_lo - pad_hi + dilation * (k - 1) + output_padding + 1``.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.nn.quantized.reference import ConvTranspose2d
  >>> m = ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1)
  >>> m(jnp.ones((1, 5, 5, 2))).shape, m.get_weight().shape
  ((1, 10, 10, 4), (2, 4, 3, 3))
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxq.nn.layout import kernel_to_torch
from jaxq.nn.quantized._conv import check_conv_channels, normalize_tuple
from jaxq.nn.quantized._utils import variable_value
from jaxq.nn.quantized.conv_transpose import (
    _check_output_padding, _torch_ordered_kernel, conv_transpose_config_from_flax,
    normalize_transpose_padding)
from jaxq.nn.quantized.reference.conv import _dimension_numbers
from jaxq.nn.quantized.reference.linear import _check_device
from jaxq.nn.quantized.reference.utils import ReferenceQuantizedModule, require_float_input

__all__ = ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "conv_transpose_float"]


def conv_transpose_float(x: jax.Array, weight: jax.Array, bias: jax.Array | None,
                         stride: tuple[int, ...], padding: tuple[tuple[int, int], ...],
                         output_padding: tuple[int, ...], groups: int,
                         dilation: tuple[int, ...]) -> jax.Array:
    """torch's ``F.conv_transpose{n}d`` on channels-last float inputs.

    Args:
      x: ``(N, *spatial, in)`` float32.
      weight: torch's layout ``(in, out / groups, *k)``.
      bias: ``(out,)`` or None.
      stride, output_padding, dilation: n ints.
      padding: n ``(low, high)`` amounts cropped from the full output.
      groups: feature groups.

    Returns:
      ``(N, *spatial_out, out)`` float32.
    """
    n = weight.ndim - 2
    in_channels, out_per_group = weight.shape[:2]
    kernel_size = weight.shape[2:]
    grouped = weight.reshape((groups, in_channels // groups, out_per_group) + kernel_size)
    # (g, in/g, out/g, *k) -> (*k, in/g, g, out/g) -> (*k, in/g, out), flipped in space.
    kernel = grouped.transpose(tuple(range(3, 3 + n)) + (1, 0, 2)).reshape(
        kernel_size + (in_channels // groups, groups * out_per_group))
    kernel = jnp.flip(kernel, axis=tuple(range(n)))
    pads = tuple((d * (k - 1) - lo, d * (k - 1) - hi + op)
                 for k, d, (lo, hi), op in zip(kernel_size, dilation, padding,
                                               output_padding))
    y = lax.conv_general_dilated(x, kernel, window_strides=(1,) * n, padding=pads,
                                 lhs_dilation=stride, rhs_dilation=dilation,
                                 dimension_numbers=_dimension_numbers(n),
                                 feature_group_count=groups)
    return y if bias is None else y + bias


class _ConvTransposeNd(ReferenceQuantizedModule):
    """Shared implementation of the reference ConvTransposeNd modules."""

    _RANK: ClassVar[int] = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any,
                 stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
                 groups: int = 1, bias: bool = True, dilation: Any = 1,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None,
                 weight_qparams: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        _check_device(device)
        n = self._RANK
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode={padding_mode!r} is not supported: torch's "
                             "transposed convolutions pad with zeros only")
        check_conv_channels(in_channels, out_channels, groups)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = normalize_tuple(kernel_size, n, "kernel_size")
        self.stride = normalize_tuple(stride, n, "stride")
        self.dilation = normalize_tuple(dilation, n, "dilation")
        pads = normalize_transpose_padding(padding, n)
        self.padding = (tuple(lo for lo, _ in pads) if all(lo == hi for lo, hi in pads)
                        else pads)
        self.output_padding = normalize_tuple(output_padding, n, "output_padding",
                                              minimum=0)
        _check_output_padding(self.output_padding, self.stride, self.dilation)
        self.groups = int(groups)
        self.padding_mode = padding_mode
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        param_dtype = jnp.float32 if dtype is None else dtype
        # torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in from weight.size(1).
        fan_in = (out_channels // groups) * int(jnp.prod(jnp.asarray(self.kernel_size)))
        bound = 1.0 / fan_in ** 0.5
        shape = self.kernel_size + (out_channels // groups, in_channels)
        self.kernel = nnx.Param(jax.random.uniform(rngs.params(), shape, param_dtype,
                                                   -bound, bound))
        self.bias = (nnx.Param(jax.random.uniform(rngs.params(), (out_channels,),
                                                  param_dtype, -bound, bound))
                     if bias else None)
        self._init_weight_qparams(weight_qparams)

    def _pairs(self) -> tuple[tuple[int, int], ...]:
        return normalize_transpose_padding(self.padding, self._RANK)

    def __call__(self, x: Any, output_size: Any = None) -> jax.Array:
        if output_size is not None:
            raise ValueError("output_size is not supported by reference transposed "
                             "convolutions (torch's reference module fails on it too); "
                             "set output_padding instead")
        x = require_float_input(x, f"reference ConvTranspose{self._RANK}d")
        n = self._RANK
        if x.ndim not in (n + 1, n + 2):
            raise ValueError(f"reference ConvTranspose{n}d expects (N, *spatial, C) or "
                             f"(*spatial, C) with {n} spatial dims; got shape {x.shape}")
        unbatched = x.ndim == n + 1
        if unbatched:
            x = x[None]
        weight = kernel_to_torch(self._qdq_kernel())
        y = conv_transpose_float(x, weight, variable_value(self.bias), self.stride,
                                 self._pairs(), self.output_padding, self.groups,
                                 self.dilation)
        return y[0] if unbatched else y

    forward = __call__

    def _get_name(self) -> str:
        return f"QuantizedConvTranspose{self._RANK}d(Reference)"

    @classmethod
    def from_float(cls, float_conv: nnx.ConvTranspose, weight_qparams: dict[str, Any]
                   ) -> _ConvTransposeNd:
        """From an ``nnx.ConvTranspose`` of this rank: torch's configuration
        (:func:`jaxq.nn.quantized.conv_transpose.conv_transpose_config_from_flax`) and
        the kernel in torch's order (flipped unless ``transpose_kernel``).

        Raises:
          TypeError: not an ``nnx.ConvTranspose`` of this rank.
          ValueError: a padding with no torch equivalent, a mask.
        """
        owner = f"nnqr.{cls.__name__}"
        if not isinstance(float_conv, nnx.ConvTranspose):
            raise TypeError(f"{owner}.from_float: float_conv must be an nnx.ConvTranspose;"
                            f" got {type(float_conv).__name__}")
        config = conv_transpose_config_from_flax(float_conv, cls._RANK, owner)
        kernel = cls._observed_kernel(float_conv)
        bias = variable_value(float_conv.bias)
        ref = cls(**config, bias=bias is not None, dtype=kernel.dtype,
                  weight_qparams=weight_qparams)
        ref.kernel.set_value(jnp.array(kernel))
        if bias is not None:
            ref.bias.set_value(jnp.array(bias))
        return ref

    @staticmethod
    def _observed_kernel(float_conv: Any) -> jax.Array:
        """The kernel the weight observer sees: ``kernel_to_torch`` of it is torch's
        transposed weight ``(in, out, *k)`` (used by ``convert(is_reference=True)``)."""
        return _torch_ordered_kernel(float_conv)


class ConvTranspose1d(_ConvTransposeNd):
    """Reference quantized 1-d transposed convolution: ``(N, L, C)`` -> ``(N, L', out)``."""

    _RANK = 1


class ConvTranspose2d(_ConvTransposeNd):
    """Reference quantized 2-d transposed convolution: ``(N, H, W, C)`` ->
    ``(N, H', W', out)``."""

    _RANK = 2


class ConvTranspose3d(_ConvTransposeNd):
    """Reference quantized 3-d transposed convolution: ``(N, D, H, W, C)`` ->
    ``(N, D', H', W', out)``."""

    _RANK = 3
