"""``torch.ao.nn.intrinsic.quantized.dynamic``: ``LinearReLU`` (dynamic Linear + ReLU).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.nn.intrinsic.quantized.dynamic import LinearReLU
  >>> LinearReLU(3, 2)(jnp.ones((1, 3))).tolist()
  [[0.0, 0.0]]
"""

from typing import Any

from jaxq.nn import intrinsic as nni
from jaxq.nn.quantized.dynamic.linear import Linear as _DynamicLinear

__all__ = ["LinearReLU"]


class LinearReLU(_DynamicLinear):
    """Dynamic quantized Linear + ReLU (``quantized::linear_relu_dynamic``; float16:
    ``linear_relu_dynamic_fp16``)."""

    _RELU = True
    _FLOAT_MODULE = (nni.LinearReLU,)

    def _get_name(self) -> str:
        return "DynamicQuantizedLinearReLU"

    @classmethod
    def _float_linear(cls, mod: Any) -> Any:
        if not isinstance(mod, nni.LinearReLU):
            raise TypeError(f"nniqd.LinearReLU.from_float only works for LinearReLU, but "
                            f"got: {type(mod).__name__}")
        return mod[0]
