"""``torch.ao.quantization.stubs``: QuantStub, DeQuantStub, QuantWrapper as NNX modules.

Before ``convert`` both stubs return their input (``prepare`` makes ``QuantStub`` observe
it); ``convert`` swaps ``QuantStub`` for :class:`jaxq.nn.quantized.Quantize` and
``DeQuantStub`` for :class:`jaxq.nn.quantized.DeQuantize`.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.eager.stubs import QuantWrapper
  >>> wrapped = QuantWrapper(nnx.Linear(4, 2, rngs=nnx.Rngs(0)))
  >>> wrapped(jnp.ones((3, 4))).shape
  (3, 2)
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

__all__ = ["QuantStub", "DeQuantStub", "QuantWrapper"]


class QuantStub(nnx.Module):
    """Quantize stub: identity (an observer after ``prepare``); becomes ``Quantize``.

    Args:
      qconfig: the tensor's QConfig; when None (or empty) it is inherited from the
        parent modules by ``propagate_qconfig_``.
    """

    def __init__(self, qconfig: Any = None):
        if qconfig:
            self.qconfig = qconfig

    def __call__(self, x: jax.Array) -> jax.Array:
        return x

    forward = property(lambda self: self.__call__)


class DeQuantStub(nnx.Module):
    """Dequantize stub: identity before ``convert``; becomes ``DeQuantize``.

    Args:
      qconfig: as :class:`QuantStub` (DeQuantStub is never observed).
    """

    def __init__(self, qconfig: Any = None):
        if qconfig:
            self.qconfig = qconfig

    def __call__(self, x: Any) -> Any:
        return x

    forward = property(lambda self: self.__call__)


class QuantWrapper(nnx.Module):
    """``dequant(module(quant(x)))``: wraps a module with QuantStub / DeQuantStub.

    The stubs take the wrapped module's ``qconfig`` (if any), as in torch.

    Args:
      module: the ``nnx.Module`` to wrap.

    Raises:
      TypeError: ``module`` is not an ``nnx.Module``.
    """

    def __init__(self, module: nnx.Module):
        if not isinstance(module, nnx.Module):
            raise TypeError(f"module must be an nnx.Module; got {type(module).__name__}")
        qconfig = getattr(module, "qconfig", None)
        self.quant = QuantStub(qconfig)
        self.dequant = DeQuantStub(qconfig)
        self.module = module

    def __call__(self, x: jax.Array) -> Any:
        return self.dequant(self.module(self.quant(x)))

    forward = property(lambda self: self.__call__)
