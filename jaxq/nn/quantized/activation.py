"""Quantized activation modules (``torch.ao.nn.quantized`` ReLU6, Hardswish, ELU,
LeakyReLU, Sigmoid, Softmax).

Each takes and returns a per-tensor QTensor; output qparams are state
(:class:`~jaxq.nn.quantized._utils.QuantizedBuffer`) set by ``from_float`` from the
observed float module's ``activation_post_process``, as torch. The maths is
:mod:`jaxq.nn.quantized.functional` / :mod:`jaxq.nn.quantized.ops`.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized import Hardswish
  >>> x = jaxq.quantize_per_tensor(jnp.array([-4.0, 0.5, 4.0]), 0.05, 128, jaxq.quint8)
  >>> Hardswish(0.05, 128)(x).dequantize().tolist()
  [0.0, 0.30000001192092896, 4.0]
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized import functional as qF
from jaxq.nn.quantized import ops
from jaxq.nn.quantized._utils import QuantizedBuffer

__all__ = ["ReLU6", "Hardswish", "ELU", "LeakyReLU", "Sigmoid", "Softmax"]


class _WithOutputQParams(nnx.Module):
    """Holds the output ``scale`` / ``zero_point`` as state."""

    def _set_qparams(self, scale: Any, zero_point: Any) -> None:
        scale, zero_point = _utils.output_qparams(scale, zero_point,
                                                  owner=type(self).__name__)
        self.scale = QuantizedBuffer(scale)
        self.zero_point = QuantizedBuffer(zero_point)

    def _qparams(self):
        return self.scale.get_value(), self.zero_point.get_value()

    @classmethod
    def _observed_qparams(cls, mod: Any):
        scale, zero_point, _ = _utils.activation_qparams(mod, f"nnq.{cls.__name__}")
        return scale, zero_point

    def extra_repr(self) -> str:
        return (f"scale={float(self.scale.get_value())}, "
                f"zero_point={int(self.zero_point.get_value())}")


class ReLU6(nnx.Module):
    """``min(max(x, 0), 6)`` on quantized values (input qparams kept); ``inplace`` ignored."""

    def __init__(self, inplace: bool = False):
        self.inplace = bool(inplace)

    def __call__(self, input: QTensor) -> QTensor:
        return qF.relu6(input)

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedReLU6"

    @staticmethod
    def from_float(mod: Any, use_precomputed_fake_quant: bool = False) -> ReLU6:
        return ReLU6(getattr(mod, "inplace", False))


class Hardswish(_WithOutputQParams):
    """Quantized hardswish with output qparams ``(scale, zero_point)``."""

    def __init__(self, scale: float, zero_point: int, device: Any = None, dtype: Any = None):
        del device, dtype
        self._set_qparams(scale, zero_point)

    def __call__(self, input: QTensor) -> QTensor:
        return qF.hardswish(input, *self._qparams())

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedHardswish"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Hardswish:
        return cls(*cls._observed_qparams(mod))

    @classmethod
    def from_reference(cls, mod: Any, scale: float, zero_point: int) -> Hardswish:
        return cls(scale, zero_point)


class ELU(_WithOutputQParams):
    """Quantized ELU with output qparams ``(scale, zero_point)`` and ``alpha``."""

    def __init__(self, scale: float, zero_point: int, alpha: float = 1.0):
        self._set_qparams(scale, zero_point)
        self.alpha = float(alpha)

    def __call__(self, input: QTensor) -> QTensor:
        return qF.elu(input, *self._qparams(), self.alpha)

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedELU"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> ELU:
        return cls(*cls._observed_qparams(mod), getattr(mod, "alpha", 1.0))

    @classmethod
    def from_reference(cls, mod: Any, scale: float, zero_point: int) -> ELU:
        return cls(scale, zero_point, getattr(mod, "alpha", 1.0))


class LeakyReLU(_WithOutputQParams):
    """Quantized leaky ReLU with output qparams ``(scale, zero_point)``."""

    def __init__(self, scale: float, zero_point: int, negative_slope: float = 1e-2,
                 inplace: bool = False, device: Any = None, dtype: Any = None):
        del device, dtype
        self._set_qparams(scale, zero_point)
        self.negative_slope = float(negative_slope)
        self.inplace = bool(inplace)

    def __call__(self, input: QTensor) -> QTensor:
        scale, zero_point = self._qparams()
        return qF.leaky_relu(input, self.negative_slope, scale=scale, zero_point=zero_point)

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedLeakyReLU"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> LeakyReLU:
        return cls(*cls._observed_qparams(mod), getattr(mod, "negative_slope", 1e-2),
                   getattr(mod, "inplace", False))

    @classmethod
    def from_reference(cls, mod: Any, scale: float, zero_point: int) -> LeakyReLU:
        return cls(scale, zero_point, getattr(mod, "negative_slope", 1e-2),
                   getattr(mod, "inplace", False))


class Sigmoid(_WithOutputQParams):
    """Quantized sigmoid with output qparams ``(output_scale, output_zero_point)``."""

    def __init__(self, output_scale: float, output_zero_point: int):
        self._set_qparams(output_scale, output_zero_point)

    def __call__(self, input: QTensor) -> QTensor:
        return qF.sigmoid(input, *self._qparams())

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedSigmoid"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Sigmoid:
        return cls(*cls._observed_qparams(mod))


class Softmax(_WithOutputQParams):
    """Quantized softmax along ``dim`` (default: the last axis, channels-last)."""

    def __init__(self, dim: int | None = None, scale: float = 1.0, zero_point: int = 0):
        self._set_qparams(scale, zero_point)
        self.dim = -1 if dim is None else int(dim)

    def __call__(self, input: QTensor) -> QTensor:
        return ops.softmax(input, self.dim, *self._qparams())

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedSoftmax"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Softmax:
        return cls(getattr(mod, "dim", None), *cls._observed_qparams(mod))

    @classmethod
    def from_reference(cls, mod: Any, scale: float, zero_point: int) -> Softmax:
        return cls(getattr(mod, "dim", None), scale, zero_point)
