"""``torch.ao.nn.qat.dynamic.Linear``: QAT Linear for dynamic quantization.

Same as :class:`jaxq.nn.qat.Linear`, but the qconfig's activation must be memoryless
(a moving-average observer with ``averaging_constant=1``), as torch requires.

Example:
  >>> from jaxq.qconfig import default_dynamic_qat_qconfig
  >>> from jaxq.nn.qat.dynamic import Linear
  >>> Linear(4, 3, qconfig=default_dynamic_qat_qconfig).kernel.shape
  (4, 3)
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxq.nn.qat import linear as qat_linear
from jaxq.qconfig import _activation_is_memoryless

__all__ = ["Linear"]


class Linear(qat_linear.Linear):
    """QAT Linear for dynamic quantization (torch's ``qat.dynamic.Linear``).

    Raises:
      ValueError: missing qconfig, or an activation observer that is not memoryless.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 qconfig: Any = None, *, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None,
                 rngs: nnx.Rngs | None = None):
        super().__init__(in_features, out_features, bias, qconfig, dtype=dtype,
                         param_dtype=param_dtype, precision=precision, rngs=rngs)
        if not _activation_is_memoryless(qconfig):
            raise ValueError("Dynamic QAT requires a memoryless observer."
                             "This means a MovingAverage observer with averaging "
                             "constant equal to 1")
