"""Quantized Conv1d/2d/3d (``torch.ao.nn.quantized.Conv*d``) on NNX, channels-last.

Inputs are quint8 QTensors ``(N, L, C)``, ``(N, H, W, C)`` or ``(N, D, H, W, C)``
(torch: ``(N, C, ...)``); the int8 weight is packed once (Conv2d:
``jaxq.kernels.pack_conv_weight``, run by ``jaxq.kernels.quantized_conv2d``; Conv1d/3d:
:mod:`jaxq.nn.quantized._conv`); ``weight()`` returns it in torch's
``(out, in / groups, *k)`` layout. Results are bit-exact with torch's x86 / fbgemm
``quantized::conv{1,2,3}d`` (stride, padding, dilation, groups, per-tensor and
per-channel weights).

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized import Conv2d
  >>> m = Conv2d(2, 4, 3, padding=1)
  >>> x = jaxq.quantize_per_tensor(jnp.ones((1, 5, 5, 2)), 0.1, 0, jaxq.quint8)
  >>> m(x).shape
  (1, 5, 5, 4)
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core.dtypes import qint8, quint8
from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized._conv import (
    check_conv_channels, normalize_padding, normalize_tuple, pack_weight_for_rank, quantized_conv_any,
    torch_weight_of)
from jaxq.nn.quantized._utils import QuantizedBuffer, QuantizedWeight
from jaxq.nn.quantized.linear import _kernel_and_bias

__all__ = ["Conv1d", "Conv2d", "Conv3d", "conv_config_from_flax"]


def conv_config_from_flax(conv: Any, rank: int, owner: str) -> dict[str, Any]:
    """torch-style constructor arguments of an ``nnx.Conv`` (or a QAT subclass).

    Raises:
      TypeError: the kernel rank differs from ``rank``.
      ValueError: circular padding, input dilation or a mask (no quantized equivalent).
    """
    kernel_size = tuple(int(k) for k in np.atleast_1d(conv.kernel_size))
    if len(kernel_size) != rank:
        raise TypeError(f"{owner}.from_float expects a {rank}-d convolution (nnx.Conv "
                        f"with {rank} spatial dims); got kernel_size={kernel_size}")
    strides = 1 if conv.strides is None else conv.strides
    dilation = 1 if conv.kernel_dilation is None else conv.kernel_dilation
    input_dilation = 1 if conv.input_dilation is None else conv.input_dilation
    if any(d != 1 for d in np.atleast_1d(input_dilation)):
        raise ValueError(f"{owner}.from_float: input_dilation is not supported")
    if getattr(conv, "mask", None) is not None:
        raise ValueError(f"{owner}.from_float: masked convolutions are not supported")
    padding = conv.padding
    if isinstance(padding, str) and padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"{owner}.from_float: padding={padding!r} is not supported "
                         "(quantized convolutions pad with zeros only)")
    return dict(in_channels=int(conv.in_features), out_channels=int(conv.out_features),
                kernel_size=kernel_size, stride=strides, padding=padding,
                dilation=dilation, groups=int(conv.feature_group_count))


class _ConvNd(nnx.Module):
    """Shared implementation of the quantized ConvNd modules."""

    _RANK: ClassVar[int] = 2
    _RELU: ClassVar[bool] = False
    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = (nnx.Conv,)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                 bias: bool = True, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None):
        del device, dtype
        n = self._RANK
        if padding_mode != "zeros":
            raise ValueError(f"Only 'zeros' is supported as padding_mode for quantized "
                             f"convolutions; got {padding_mode!r}")
        check_conv_channels(in_channels, out_channels, groups)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = normalize_tuple(kernel_size, n, "kernel_size")
        self.stride = normalize_tuple(stride, n, "stride")
        self.padding = normalize_padding(padding, n)
        self.dilation = normalize_tuple(dilation, n, "dilation")
        self.groups = int(groups)
        self.padding_mode = padding_mode
        weight = QTensor(jnp.zeros((out_channels, in_channels // groups) + self.kernel_size,
                                   jnp.int8), 1.0, 0, qint8)
        self._packed_params = QuantizedWeight(pack_weight_for_rank(weight, self.groups))
        self._bias = QuantizedBuffer(jnp.zeros((out_channels,), jnp.float32) if bias
                                     else None)
        self.scale = QuantizedBuffer(jnp.float32(1.0))
        self.zero_point = QuantizedBuffer(jnp.int32(0))

    @property
    def _op(self) -> str:
        return f"quantized::conv{self._RANK}d{'_relu' if self._RELU else ''}"

    def __call__(self, x: QTensor) -> QTensor:
        x = _utils.require_per_tensor(x, self._op, dtypes=(quint8,))
        scale, zero_point = _utils.output_qparams(self.scale, self.zero_point, x.dtype,
                                                  self._op)
        return quantized_conv_any(x, self._packed_params.get_value(),
                                  self._bias.get_value(), self.stride, self.padding,
                                  self.dilation, scale, zero_point, self._RELU, self._op)

    forward = __call__

    def weight(self) -> QTensor:
        """The qint8 weight in torch's layout ``(out, in / groups, *kernel_size)``."""
        return torch_weight_of(self._packed_params.get_value())

    def bias(self) -> jax.Array | None:
        return self._bias.get_value()

    def set_weight_bias(self, w: QTensor, b: Any) -> None:
        """Packs ``w`` (qint8 QTensor, torch layout) and stores ``b`` (float or None)."""
        expected = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        if tuple(w.shape) != expected:
            raise ValueError(f"weight must have shape {expected} (torch layout); got "
                             f"{tuple(w.shape)}")
        self._packed_params.set_value(pack_weight_for_rank(w, self.groups))
        self._bias.set_value(None if b is None else jnp.asarray(b, jnp.float32))

    def _get_name(self) -> str:
        return f"QuantizedConv{self._RANK}d"

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, scale={float(self.scale.get_value())}, "
                f"zero_point={int(self.zero_point.get_value())}, padding={self.padding}, "
                f"dilation={self.dilation}, groups={self.groups}")

    @classmethod
    def _float_conv(cls, mod: Any) -> Any:
        if hasattr(mod, "weight_fake_quant"):
            return mod
        if not isinstance(mod, cls._FLOAT_MODULE):
            names = ", ".join(t.__name__ for t in cls._FLOAT_MODULE)
            raise TypeError(f"nnq.{cls.__name__}.from_float only works for {names} with "
                            f"{cls._RANK} spatial dims, but got: {type(mod).__name__}")
        if getattr(mod, "qconfig", None) is None:
            raise ValueError("Input float module must have qconfig defined.")
        return mod

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> _ConvNd:
        """From an observed ``nnx.Conv`` of this rank or a QAT Conv / ConvBn module.

        torch's protocol (``_ConvNd.from_float`` / ``get_qconv``): BN is folded first for
        ConvBn QAT modules; weight qparams from ``mod.weight_fake_quant`` or
        ``mod.qconfig.weight()`` (run on the Flax kernel); output qparams from
        ``mod.activation_post_process``.
        """
        owner = f"nnq.{cls.__name__}"
        conv = cls._float_conv(mod)
        act_scale, act_zp, _ = _utils.activation_qparams(mod, owner)
        config = conv_config_from_flax(conv, cls._RANK, owner)
        kernel, bias = _kernel_and_bias(conv, is_linear=False)
        if getattr(conv, "qconfig", None) is None and getattr(mod, "qconfig", None):
            conv.qconfig = mod.qconfig
        post = _utils.weight_observer(conv, kernel, owner, use_precomputed_fake_quant)
        qweight, _ = _utils.quantize_kernel(kernel, post, owner)
        qconv = cls(**config, bias=bias is not None)
        qconv.set_weight_bias(qweight, bias)
        qconv.scale.set_value(act_scale)
        qconv.zero_point.set_value(act_zp)
        return qconv

    @classmethod
    def from_reference(cls, ref_qconv: Any, output_scale: Any, output_zero_point: Any
                       ) -> _ConvNd:
        """From a reference quantized conv (``get_quantized_weight()`` in torch layout)."""
        config = conv_config_from_flax(ref_qconv, cls._RANK, f"nnq.{cls.__name__}")
        qweight = ref_qconv.get_quantized_weight()
        bias = _utils.float_bias(ref_qconv)
        qconv = cls(**config, bias=bias is not None)
        qconv.set_weight_bias(qweight, bias)
        scale, zero_point = _utils.output_qparams(output_scale, output_zero_point)
        qconv.scale.set_value(scale)
        qconv.zero_point.set_value(zero_point)
        return qconv


class Conv1d(_ConvNd):
    """Quantized 1-d convolution: ``(N, L, C)`` quint8 -> ``(N, L', out)``."""

    _RANK = 1


class Conv2d(_ConvNd):
    """Quantized 2-d convolution: ``(N, H, W, C)`` quint8 -> ``(N, H', W', out)``."""

    _RANK = 2


class Conv3d(_ConvNd):
    """Quantized 3-d convolution: ``(N, D, H, W, C)`` quint8 -> ``(N, D', H', W', out)``."""

    _RANK = 3
