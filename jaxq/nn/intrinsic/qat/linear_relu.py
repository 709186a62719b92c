"""``torch.ao.nn.intrinsic.qat.LinearReLU``: QAT Linear followed by ReLU.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.qconfig import get_default_qat_qconfig
  >>> from jaxq.nn.intrinsic.qat import LinearReLU
  >>> m = LinearReLU(4, 3, qconfig=get_default_qat_qconfig("x86"))
  >>> bool((m(jnp.ones((2, 4))) >= 0).all())
  True
"""

from __future__ import annotations

import jax

from jaxq.nn.intrinsic import fused as nni
from jaxq.nn.modules import ReLU
from jaxq.nn.qat import linear as qat_linear

__all__ = ["LinearReLU"]


class LinearReLU(qat_linear.Linear):
    """``relu(x @ weight_fake_quant(kernel) + bias)``; ``from_float`` takes an
    intrinsic ``LinearReLU``; ``to_float`` returns one."""

    _FLOAT_MODULE = nni.LinearReLU
    _FLOAT_RELU_MODULE = ReLU

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(super().__call__(x))

    def to_float(self) -> nni.LinearReLU:
        return nni.LinearReLU(self._float_linear(), ReLU())
