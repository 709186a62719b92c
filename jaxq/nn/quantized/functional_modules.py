"""FloatFunctional, FXFloatFunctional and QFunctional (torch's functional wrappers).

``FloatFunctional`` runs float ops and passes the results through its
``activation_post_process`` (``Identity`` until ``prepare`` attaches an observer);
``QFunctional`` runs the quantized ops of :mod:`jaxq.nn.quantized.ops` with its own
output ``scale`` / ``zero_point`` (state), and ``QFunctional.from_float`` reads them
from the observed FloatFunctional, as torch.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized import QFunctional
  >>> f = QFunctional()
  >>> a = jaxq.quantize_per_tensor(jnp.array([1.0, 2.0]), 1.0, 0, jaxq.quint8)
  >>> f.add(a, a).int_repr().tolist()
  [2, 4]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.qtensor import QTensor
from jaxq.nn.modules import Identity
from jaxq.nn.quantized import _utils, ops
from jaxq.nn.quantized._utils import QuantizedBuffer

__all__ = ["FloatFunctional", "FXFloatFunctional", "QFunctional"]

_FORWARD_ERROR = ("{} is not intended to use the 'forward'. Please use the underlying "
                  "operation")


class FloatFunctional(nnx.Module):
    """State collector for float ops (``add``, ``cat``, ``mul``, ``add_relu``,
    ``add_scalar``, ``mul_scalar``, ``matmul``); results of the tensor-tensor ops go
    through ``activation_post_process``."""

    def __init__(self):
        self.activation_post_process = Identity()

    def __call__(self, x: Any) -> Any:
        raise RuntimeError(_FORWARD_ERROR.format("FloatFunctional"))

    forward = __call__

    def _post(self, r: jax.Array) -> jax.Array:
        return self.activation_post_process(r)

    def add(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self._post(jnp.add(x, y))

    def add_scalar(self, x: jax.Array, y: float) -> jax.Array:
        return jnp.add(x, y)

    def mul(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self._post(jnp.multiply(x, y))

    def mul_scalar(self, x: jax.Array, y: float) -> jax.Array:
        return jnp.multiply(x, y)

    def cat(self, x: list[jax.Array], dim: int = 0) -> jax.Array:
        return self._post(jnp.concatenate(x, axis=dim))

    def add_relu(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self._post(jax.nn.relu(jnp.add(x, y)))

    def matmul(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self._post(jnp.matmul(x, y))


class FXFloatFunctional(nnx.Module):
    """FloatFunctional without an ``activation_post_process`` (graph mode)."""

    def __call__(self, x: Any) -> Any:
        raise RuntimeError(_FORWARD_ERROR.format("FloatFunctional"))

    forward = __call__

    def add(self, x, y):
        return jnp.add(x, y)

    def add_scalar(self, x, y):
        return jnp.add(x, y)

    def mul(self, x, y):
        return jnp.multiply(x, y)

    def mul_scalar(self, x, y):
        return jnp.multiply(x, y)

    def cat(self, x, dim: int = 0):
        return jnp.concatenate(x, axis=dim)

    def add_relu(self, x, y):
        return jax.nn.relu(jnp.add(x, y))

    def matmul(self, x, y):
        return jnp.matmul(x, y)


class QFunctional(nnx.Module):
    """Quantized ops with output qparams ``scale`` / ``zero_point`` (default 1.0 / 0).

    ``add``, ``mul``, ``cat``, ``add_relu``, ``matmul`` requantize to the module's
    qparams; ``add_scalar`` / ``mul_scalar`` follow torch's qparams rules.
    """

    def __init__(self):
        self.scale = QuantizedBuffer(jnp.float32(1.0))
        self.zero_point = QuantizedBuffer(jnp.int32(0))
        self.activation_post_process = Identity()

    def __call__(self, x: Any) -> Any:
        raise RuntimeError(_FORWARD_ERROR.format("Functional"))

    forward = __call__

    def _get_name(self) -> str:
        return "QFunctional"

    def extra_repr(self) -> str:
        return (f"scale={float(self.scale.get_value())}, "
                f"zero_point={int(self.zero_point.get_value())}")

    def _qparams(self):
        return self.scale.get_value(), self.zero_point.get_value()

    def add(self, x: QTensor, y: QTensor) -> QTensor:
        return self.activation_post_process(ops.add(x, y, *self._qparams()))

    def add_scalar(self, x: QTensor, y: float) -> QTensor:
        return ops.add_scalar(x, y)

    def mul(self, x: QTensor, y: QTensor) -> QTensor:
        return self.activation_post_process(ops.mul(x, y, *self._qparams()))

    def mul_scalar(self, x: QTensor, y: float) -> QTensor:
        return ops.mul_scalar(x, y)

    def cat(self, x: list[QTensor], dim: int = 0) -> QTensor:
        return self.activation_post_process(ops.cat(x, *self._qparams(), dim=dim))

    def add_relu(self, x: QTensor, y: QTensor) -> QTensor:
        return self.activation_post_process(ops.add_relu(x, y, *self._qparams()))

    def matmul(self, x: QTensor, y: QTensor) -> QTensor:
        return ops.matmul(x, y, *self._qparams())

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> QFunctional:
        """From an observed :class:`FloatFunctional` (its observer's qparams).

        Raises:
          TypeError: ``mod`` is not a FloatFunctional.
        """
        if not isinstance(mod, FloatFunctional):
            raise TypeError(f"QFunctional.from_float expects an instance of "
                            f"FloatFunctional, got {type(mod).__name__}")
        scale, zero_point, _ = _utils.activation_qparams(mod, "QFunctional")
        new = cls()
        new.scale.set_value(scale)
        new.zero_point.set_value(zero_point)
        return new
