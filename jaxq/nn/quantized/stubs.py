"""Quantize / DeQuantize modules and the quantized Dropout (identity).

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized import DeQuantize, Quantize
  >>> q = Quantize(0.5, 0, jaxq.quint8)(jnp.array([1.0, 2.2]))
  >>> q.int_repr().tolist(), DeQuantize()(q).tolist()
  ([2, 4], [1.0, 2.0])
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.dtypes import QuantDType, as_quant_dtype
from jaxq.core.qtensor import QTensor, quantize_per_tensor
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized._utils import QuantizedBuffer

__all__ = ["Quantize", "DeQuantize", "Dropout"]


class Quantize(nnx.Module):
    """``torch.quantize_per_tensor(x, scale, zero_point, dtype)`` as a module.

    Args:
      scale, zero_point: the qparams (state: change them without retracing).
      dtype: quint8, qint8 or qint32.
    """

    def __init__(self, scale: float, zero_point: int, dtype: Any, factory_kwargs: Any = None):
        del factory_kwargs
        self.dtype: QuantDType = as_quant_dtype(dtype, "dtype")
        if self.dtype.name not in ("quint8", "qint8", "qint32"):
            raise ValueError(f"dtype={dtype!r} must be quint8, qint8 or qint32")
        scale, zero_point = _utils.output_qparams(scale, zero_point, self.dtype, "Quantize")
        self.scale = QuantizedBuffer(scale)
        self.zero_point = QuantizedBuffer(zero_point)

    def __call__(self, X: jax.Array) -> QTensor:
        if isinstance(X, QTensor):
            raise TypeError("Quantize expects a float array; the input is already a QTensor")
        return quantize_per_tensor(X, self.scale.get_value(), self.zero_point.get_value(),
                                   self.dtype)

    forward = __call__

    def extra_repr(self) -> str:
        return (f"scale={float(self.scale.get_value())}, "
                f"zero_point={int(self.zero_point.get_value())}, dtype={self.dtype!r}")

    @staticmethod
    def from_float(mod: Any, use_precomputed_fake_quant: bool = False) -> Quantize:
        """From a module with an ``activation_post_process`` (a prepared QuantStub)."""
        scale, zero_point, dtype = _utils.activation_qparams(mod, "nnq.Quantize")
        return Quantize(scale, zero_point, dtype)


class DeQuantize(nnx.Module):
    """``x.dequantize()`` as a module (float arrays pass through, as torch.dequantize)."""

    def __call__(self, Xq: Any) -> jax.Array:
        if isinstance(Xq, QTensor):
            return Xq.dequantize()
        if isinstance(Xq, (list, tuple)):
            return [self(x) for x in Xq]
        return jnp.asarray(Xq)

    forward = __call__

    @staticmethod
    def from_float(mod: Any, use_precomputed_fake_quant: bool = False) -> DeQuantize:
        return DeQuantize()


class Dropout(nnx.Module):
    """Quantized dropout: the identity (torch's quantized Dropout runs in eval mode)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self.inplace = bool(inplace)

    def __call__(self, input: QTensor) -> QTensor:
        return input

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedDropout"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Dropout:
        """From ``nnx.Dropout`` (``rate``) or a torch-like module with ``p``."""
        rate = getattr(mod, "rate", getattr(mod, "p", 0.5))
        return cls(rate, getattr(mod, "inplace", False))

    @classmethod
    def from_reference(cls, mod: Any, scale: float, zero_point: int) -> Dropout:
        return cls.from_float(mod)
