"""``torch.ao.nn.qat.Linear``: an ``nnx.Linear`` whose kernel is fake-quantized.

``y = x @ weight_fake_quant(kernel) + bias`` with the Flax kernel ``(in, out)``.
``weight_fake_quant`` is ``qconfig.weight()`` built by
:func:`jaxq.nn.layout.weight_fake_quant_for_kernel` (torch's per-channel
``ch_axis=0`` becomes the kernel's last axis; state pre-sized to ``out_features``).

Deviations from torch: parameters initialize like ``nnx.Linear`` (``rngs`` defaults
to ``nnx.Rngs(0)``); bad input raises ``TypeError``/``ValueError`` where torch raises
``AssertionError``; torch's parametrizations have no Flax counterpart.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.qconfig import get_default_qat_qconfig
  >>> from jaxq.nn.qat import Linear
  >>> float_linear = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
  >>> float_linear.qconfig = get_default_qat_qconfig("x86")
  >>> qat_linear = Linear.from_float(float_linear)
  >>> qat_linear(jnp.ones((2, 4))).shape
  (2, 3)
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.nn.intrinsic import fused as nni
from jaxq.nn.layout import weight_fake_quant_for_kernel
from jaxq.nn.qat._apply import (
    LINEAR_CONFIG_ATTRIBUTES,
    check_from_float,
    check_qconfig,
    copy_param,
    default_rngs,
    linear_apply,
)

__all__ = ["Linear"]


def _check_features(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument}={value!r} must be a positive int")
    return value


class Linear(nnx.Linear):
    """A Linear layer with a fake-quantized weight (torch's ``qat.Linear``).

    Args:
      in_features, out_features: sizes (ints).
      bias: add a bias (default True).
      qconfig: the QConfig; ``qconfig.weight`` builds ``weight_fake_quant``.
      dtype, param_dtype, precision: as ``nnx.Linear``.
      rngs: initialization keys (default ``nnx.Rngs(0)``).

    Attributes:
      kernel: ``nnx.Param`` ``(in_features, out_features)``; bias ``(out_features,)``.
      qconfig, weight_fake_quant: as torch.

    Raises:
      ValueError: missing qconfig or bad sizes.
    """

    _FLOAT_MODULE: ClassVar[type] = nnx.Linear

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 qconfig: Any = None, *, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None,
                 rngs: nnx.Rngs | None = None):
        check_qconfig(qconfig)
        super().__init__(_check_features(in_features, "in_features"),
                         _check_features(out_features, "out_features"),
                         use_bias=bool(bias), dtype=dtype, param_dtype=param_dtype,
                         precision=precision, rngs=default_rngs(rngs))
        self.qconfig = qconfig
        self.weight_fake_quant = weight_fake_quant_for_kernel(qconfig.weight,
                                                              self.kernel.get_value())

    def _fake_quant_kernel(self) -> jax.Array:
        return self.weight_fake_quant(self.kernel[...])

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = self.bias[...] if self.bias is not None else None
        return linear_apply(self, x, self._fake_quant_kernel(), bias)

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Linear:
        """A QAT module from a float ``nnx.Linear`` (or, for ``LinearReLU``, from an
        intrinsic ``LinearReLU``) carrying ``qconfig``.

        Raises:
          TypeError: ``mod`` is not exactly the float class.
          ValueError: ``mod`` has no (or an empty) ``qconfig``.
        """
        del use_precomputed_fake_quant  # torch ignores it for QAT modules too
        qconfig = check_from_float(cls, mod, cls._FLOAT_MODULE)
        if isinstance(mod, nni._FusedModule):
            mod = mod[0]
        qconfig = getattr(mod, "qconfig", None) or qconfig
        qat = cls(mod.in_features, mod.out_features, bias=mod.use_bias, qconfig=qconfig,
                  dtype=mod.dtype, param_dtype=mod.param_dtype, precision=mod.precision)
        for name in LINEAR_CONFIG_ATTRIBUTES:
            setattr(qat, name, getattr(mod, name))
        copy_param(qat.kernel, mod.kernel)
        copy_param(qat.bias, mod.bias)
        return qat

    def _float_linear(self) -> nnx.Linear:
        linear = nnx.Linear(self.in_features, self.out_features, use_bias=self.use_bias,
                            dtype=self.dtype, param_dtype=self.param_dtype,
                            precision=self.precision, rngs=nnx.Rngs(0))
        for name in LINEAR_CONFIG_ATTRIBUTES:
            setattr(linear, name, getattr(self, name))
        copy_param(linear.kernel, self.kernel)
        copy_param(linear.bias, self.bias)
        return linear

    def to_float(self) -> nnx.Module:
        """The float ``nnx.Linear`` with this module's (not fake-quantized) kernel."""
        return self._float_linear()
