"""Reference quantized Conv1d/2d/3d (``torch.ao.nn.quantized.reference.Conv*d``) on NNX.

``nnx.Conv`` subclasses (channels-last: inputs ``(N, *spatial, C)``, Flax kernel
``(*k, in / groups, out)``) whose forward quantizes and dequantizes the kernel with the
weight qparams, then runs a float ``lax.conv_general_dilated`` with zero padding
(torch's reference convolutions call ``F.conv{1,2,3}d``, which pads with zeros whatever
``padding_mode`` says; jaxq accepts ``padding_mode="zeros"`` only).

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized.reference import Conv2d
  >>> m = Conv2d(2, 4, 3, padding=1)
  >>> m(jnp.ones((1, 5, 5, 2))).shape, m.get_weight().shape
  ((1, 5, 5, 4), (4, 2, 3, 3))
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxq.nn.quantized._conv import check_conv_channels, normalize_padding, normalize_tuple
from jaxq.nn.quantized._utils import variable_value
from jaxq.nn.quantized.conv import conv_config_from_flax
from jaxq.nn.quantized.reference.linear import _check_device
from jaxq.nn.quantized.reference.utils import ReferenceQuantizedModule, require_float_input

__all__ = ["Conv1d", "Conv2d", "Conv3d"]


def _dimension_numbers(rank: int) -> lax.ConvDimensionNumbers:
    """Channels-last input / output, Flax kernel ``(*k, in, out)``."""
    ndim = rank + 2
    lhs = (0, ndim - 1) + tuple(range(1, ndim - 1))
    rhs = (ndim - 1, ndim - 2) + tuple(range(ndim - 2))
    return lax.ConvDimensionNumbers(lhs, rhs, lhs)


class _ConvNd(nnx.Conv, ReferenceQuantizedModule):
    """Shared implementation of the reference ConvNd modules."""

    _RANK: ClassVar[int] = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                 bias: bool = True, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None, weight_qparams: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        _check_device(device)
        n = self._RANK
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode={padding_mode!r} is not supported: torch's "
                             "reference convolutions pad with zeros (F.conv ignores "
                             "padding_mode); use 'zeros'")
        check_conv_channels(in_channels, out_channels, groups)
        super().__init__(int(in_channels), int(out_channels),
                         normalize_tuple(kernel_size, n, "kernel_size"),
                         normalize_tuple(stride, n, "stride"),
                         padding=normalize_padding(padding, n),
                         kernel_dilation=normalize_tuple(dilation, n, "dilation"),
                         feature_group_count=int(groups), use_bias=bool(bias),
                         param_dtype=jnp.float32 if dtype is None else dtype,
                         rngs=rngs if rngs is not None else nnx.Rngs(0))
        self.padding_mode = padding_mode
        self._init_weight_qparams(weight_qparams)

    # torch's attribute names for the Flax configuration.
    @property
    def in_channels(self) -> int:
        return self.in_features

    @property
    def out_channels(self) -> int:
        return self.out_features

    @property
    def stride(self) -> tuple[int, ...]:
        return self.strides

    @property
    def dilation(self) -> tuple[int, ...]:
        return self.kernel_dilation

    @property
    def groups(self) -> int:
        return self.feature_group_count

    def __call__(self, x: Any) -> jax.Array:
        x = require_float_input(x, f"reference Conv{self._RANK}d")
        n = self._RANK
        if x.ndim not in (n + 1, n + 2):
            raise ValueError(f"reference Conv{n}d expects (N, *spatial, C) or "
                             f"(*spatial, C) with {n} spatial dims; got shape {x.shape}")
        unbatched = x.ndim == n + 1
        if unbatched:
            x = x[None]
        padding = self.padding if isinstance(self.padding, str) else tuple(self.padding)
        y = lax.conv_general_dilated(
            x, self._qdq_kernel(), window_strides=self.strides, padding=padding,
            rhs_dilation=self.kernel_dilation, dimension_numbers=_dimension_numbers(n),
            feature_group_count=self.feature_group_count)
        bias = variable_value(self.bias)
        if bias is not None:
            y = y + bias
        return y[0] if unbatched else y

    forward = __call__

    def _get_name(self) -> str:
        return f"QuantizedConv{self._RANK}d(Reference)"

    @classmethod
    def from_float(cls, float_conv: nnx.Conv, weight_qparams: dict[str, Any]) -> _ConvNd:
        """A reference conv with ``float_conv``'s configuration, kernel and bias (copies).

        Raises:
          TypeError: not an ``nnx.Conv`` of this rank.
          ValueError: circular / reflect / causal padding, input dilation or a mask.
        """
        owner = f"nnqr.{cls.__name__}"
        if not isinstance(float_conv, nnx.Conv):
            raise TypeError(f"{owner}.from_float: float_conv must be an nnx.Conv; got "
                            f"{type(float_conv).__name__}")
        config = conv_config_from_flax(float_conv, cls._RANK, owner)
        kernel = variable_value(float_conv.kernel)
        bias = variable_value(float_conv.bias)
        ref = cls(**config, bias=bias is not None, dtype=kernel.dtype,
                  weight_qparams=weight_qparams)
        ref.kernel.set_value(jnp.array(kernel))
        if bias is not None:
            ref.bias.set_value(jnp.array(bias))
        return ref


class Conv1d(_ConvNd):
    """Reference quantized 1-d convolution: ``(N, L, C)`` float -> ``(N, L', out)``."""

    _RANK = 1


class Conv2d(_ConvNd):
    """Reference quantized 2-d convolution: ``(N, H, W, C)`` -> ``(N, H', W', out)``."""

    _RANK = 2


class Conv3d(_ConvNd):
    """Reference quantized 3-d convolution: ``(N, D, H, W, C)`` -> ``(N, D', H', W',
    out)``."""

    _RANK = 3
