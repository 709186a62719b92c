"""Reference quantized Linear (``torch.ao.nn.quantized.reference.Linear``) on NNX.

An ``nnx.Linear`` (float ``kernel (in, out)``, float ``bias``) whose forward quantizes
and dequantizes the kernel with its weight qparams and then computes ``x @ kernel + b``
in float32.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized.reference import Linear
  >>> m = Linear(3, 2, weight_qparams={"qscheme": jaxq.per_tensor_affine,
  ...                                  "dtype": jaxq.qint8, "scale": 0.01, "zero_point": 0})
  >>> m(jnp.ones((4, 3))).shape, m.get_quantized_weight().shape
  ((4, 2), (2, 3))
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.nn.quantized._utils import variable_value
from jaxq.nn.quantized.reference.utils import ReferenceQuantizedModule, require_float_input

__all__ = ["Linear"]


class Linear(nnx.Linear, ReferenceQuantizedModule):
    """A float Linear computing with its quantize-dequantized weight (torch's
    ``QuantizedLinear(Reference)``).

    Args:
      in_features, out_features: sizes.
      bias_: keep a bias.
      device: accepted for torch's signature; must be None or "cpu".
      dtype: parameter dtype (None: float32).
      weight_qparams: torch's dict (``qscheme``, ``dtype``, ``scale``, ``zero_point``,
        ``axis`` for per-channel, optional ``quant_min`` / ``quant_max`` /
        ``is_decomposed``); None: per-tensor quint8, scale 1, zero point 0 (torch's).
      rngs: initialisation of the float parameters (default ``nnx.Rngs(0)``).

    Input ``(..., in)`` float32 -> output ``(..., out)`` float32.
    """

    def __init__(self, in_features: int, out_features: int, bias_: bool = True,
                 device: Any = None, dtype: Any = None,
                 weight_qparams: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        _check_device(device)
        super().__init__(in_features, out_features, use_bias=bool(bias_),
                         param_dtype=jnp.float32 if dtype is None else dtype,
                         rngs=rngs if rngs is not None else nnx.Rngs(0))
        self._init_weight_qparams(weight_qparams)

    def __call__(self, x: Any) -> jax.Array:
        x = require_float_input(x, "reference Linear")
        y = jnp.matmul(x, self._qdq_kernel())
        bias = variable_value(self.bias)
        return y if bias is None else y + bias

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedLinear(Reference)"

    @classmethod
    def from_float(cls, float_linear: nnx.Linear, weight_qparams: dict[str, Any]) -> Linear:
        """A reference Linear holding ``float_linear``'s kernel and bias (copies).

        Raises:
          TypeError: ``float_linear`` is not an ``nnx.Linear``.
        """
        if not isinstance(float_linear, nnx.Linear):
            raise TypeError(f"float_linear must be an nnx.Linear; got "
                            f"{type(float_linear).__name__}")
        kernel = variable_value(float_linear.kernel)
        bias = variable_value(float_linear.bias)
        ref = cls(int(float_linear.in_features), int(float_linear.out_features),
                  bias is not None, dtype=kernel.dtype, weight_qparams=weight_qparams)
        ref.kernel.set_value(jnp.array(kernel))
        if bias is not None:
            ref.bias.set_value(jnp.array(bias))
        return ref


def _check_device(device: Any) -> None:
    if device is not None and str(device) != "cpu":
        raise ValueError(f"device={device!r} is not supported (jaxq places arrays with "
                         "jax; pass None)")
