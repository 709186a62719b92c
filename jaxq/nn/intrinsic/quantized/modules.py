"""Fused quantized modules (``torch.ao.nn.intrinsic.quantized``): the ReLU is fused into
the requantize epilogue (clamp at the output zero point), as torch's ``*_relu`` ops.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.intrinsic.quantized import LinearReLU
  >>> m = LinearReLU(2, 2)
  >>> m.set_weight_bias(jaxq.quantize_per_tensor(-jnp.ones((2, 2)), 0.1, 0, jaxq.qint8),
  ...                   jnp.zeros(2))
  >>> x = jaxq.quantize_per_tensor(jnp.ones((1, 2)), 0.1, 0, jaxq.quint8)
  >>> m(x).int_repr().tolist()
  [[0, 0]]
"""

from __future__ import annotations

from typing import Any

from jaxq.nn import intrinsic as nni
from jaxq.nn.quantized import conv as nnq_conv
from jaxq.nn.quantized import linear as nnq_linear
from jaxq.nn.quantized import normalization as nnq_norm

__all__ = ["LinearReLU", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "BNReLU2d", "BNReLU3d"]


def _first(mod: Any, container: type) -> Any:
    return mod[0] if isinstance(mod, container) else mod


class LinearReLU(nnq_linear.Linear):
    """Quantized Linear + ReLU (``quantized::linear_relu``)."""

    _RELU = True
    _OP = "quantized::linear_relu"
    _FLOAT_MODULE = (nni.LinearReLU,)

    def _get_name(self) -> str:
        return "QuantizedLinearReLU"

    @classmethod
    def _float_linear(cls, mod: Any) -> Any:
        if hasattr(mod, "weight_fake_quant"):
            return mod
        if not isinstance(mod, nni.LinearReLU):
            raise TypeError(f"nniq.LinearReLU.from_float only works for LinearReLU, but "
                            f"got: {type(mod).__name__}")
        if getattr(mod, "qconfig", None) is None and getattr(mod[0], "qconfig", None) is None:
            raise ValueError("Input float module must have qconfig defined")
        return mod[0]


class _ConvReLUMixin:
    _RELU = True

    @classmethod
    def _float_conv(cls, mod: Any) -> Any:
        if hasattr(mod, "weight_fake_quant"):
            return mod
        if not isinstance(mod, cls._FUSED):
            raise TypeError(f"nniq.{cls.__name__}.from_float only works for "
                            f"{cls._FUSED.__name__}, but got: {type(mod).__name__}")
        if getattr(mod, "qconfig", None) is None and getattr(mod[0], "qconfig", None) is None:
            raise ValueError("Input float module must have qconfig defined.")
        return mod[0]


class ConvReLU1d(_ConvReLUMixin, nnq_conv.Conv1d):
    """Quantized Conv1d + ReLU on ``(N, L, C)``."""

    _FUSED = nni.ConvReLU1d

    def _get_name(self) -> str:
        return "QuantizedConvReLU1d"


class ConvReLU2d(_ConvReLUMixin, nnq_conv.Conv2d):
    """Quantized Conv2d + ReLU on ``(N, H, W, C)``."""

    _FUSED = nni.ConvReLU2d

    def _get_name(self) -> str:
        return "QuantizedConvReLU2d"


class ConvReLU3d(_ConvReLUMixin, nnq_conv.Conv3d):
    """Quantized Conv3d + ReLU on ``(N, D, H, W, C)``."""

    _FUSED = nni.ConvReLU3d

    def _get_name(self) -> str:
        return "QuantizedConvReLU3d"


class _BNReLUMixin:
    _RELU = True

    @classmethod
    def _float_bn(cls, mod: Any) -> Any:
        if not isinstance(mod, cls._FUSED):
            raise TypeError(f"nniq.{cls.__name__}.from_float only works for "
                            f"{cls._FUSED.__name__}, but got: {type(mod).__name__}")
        return mod[0]


class BNReLU2d(_BNReLUMixin, nnq_norm.BatchNorm2d):
    """Quantized BatchNorm2d + ReLU on ``(N, H, W, C)``."""

    _FUSED = nni.BNReLU2d

    def _get_name(self) -> str:
        return "QuantizedBNReLU2d"


class BNReLU3d(_BNReLUMixin, nnq_norm.BatchNorm3d):
    """Quantized BatchNorm3d + ReLU on ``(N, D, H, W, C)``."""

    _FUSED = nni.BNReLU3d

    def _get_name(self) -> str:
        return "QuantizedBNReLU3d"
