"""``torch.ao.nn.intrinsic.qat.LinearBn1d``: Linear + BatchNorm folded into the
fake-quantized kernel (same forward as ConvBn, see
:mod:`jaxq.nn.intrinsic.qat._batch_norm`), features on the last axis.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.qconfig import get_default_qat_qconfig
  >>> from jaxq.nn.intrinsic.qat import LinearBn1d
  >>> m = LinearBn1d(4, 3, qconfig=get_default_qat_qconfig("x86"))
  >>> m(jnp.ones((5, 4))).shape
  (5, 3)
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.nn.intrinsic import fused as nni
from jaxq.nn.intrinsic.qat._batch_norm import BnFoldMixin, torch_momentum
from jaxq.nn.layout import weight_fake_quant_for_kernel
from jaxq.nn.qat._apply import (
    LINEAR_CONFIG_ATTRIBUTES,
    check_from_float,
    check_qconfig,
    copy_param,
    default_rngs,
    fan_in_bound,
    linear_apply,
)

__all__ = ["LinearBn1d"]


class LinearBn1d(BnFoldMixin, nnx.Linear):
    """torch's ``qat.LinearBn1d(in_features, out_features, bias=True, eps=1e-05,
    momentum=0.1, freeze_bn=False, qconfig=None)``.

    Attributes: as :class:`jaxq.nn.intrinsic.qat.ConvBn2d` (``kernel`` is
    ``(in_features, out_features)``).
    """

    _FLOAT_MODULE: ClassVar[type] = nni.LinearBn1d

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 eps: float = 1e-05, momentum: float = 0.1, freeze_bn: bool = False,
                 qconfig: Any = None, *, dtype: Any = None, param_dtype: Any = jnp.float32,
                 precision: Any = None, rngs: nnx.Rngs | None = None):
        check_qconfig(qconfig)
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int")
        rngs = default_rngs(rngs)
        nnx.Linear.__init__(self, in_features, out_features, use_bias=bool(bias),
                            dtype=dtype, param_dtype=param_dtype, precision=precision,
                            rngs=rngs)
        self.qconfig = qconfig
        self._init_bn(out_features, eps, momentum, freeze_bn, param_dtype, rngs)
        self.weight_fake_quant = weight_fake_quant_for_kernel(qconfig.weight,
                                                              self.kernel.get_value())
        if self.bias is not None:  # torch's nn.Linear bias init
            bound = fan_in_bound(self.kernel.get_value().shape)
            self.bias.set_value(jax.random.uniform(
                rngs.params(), (out_features,), self.bias.get_value().dtype, -bound, bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._bn_folded_forward(x, lambda v, k: linear_apply(self, v, k, None))

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> LinearBn1d:
        """From an intrinsic ``LinearBn1d(linear, bn)`` carrying ``qconfig``.

        Raises:
          TypeError: ``mod`` is not exactly an intrinsic ``LinearBn1d``.
          ValueError: missing/empty qconfig or an unsupported batch norm.
        """
        del use_precomputed_fake_quant
        qconfig = check_from_float(cls, mod, cls._FLOAT_MODULE)
        linear, bn = mod[0], mod[1]
        cls._check_bn(cls, bn, f"qat.{cls.__name__}.from_float")
        qat = cls(linear.in_features, linear.out_features, linear.use_bias,
                  float(bn.epsilon), torch_momentum(bn.momentum), False, qconfig,
                  dtype=linear.dtype, param_dtype=linear.param_dtype,
                  precision=linear.precision)
        for name in LINEAR_CONFIG_ATTRIBUTES:
            setattr(qat, name, getattr(linear, name))
        copy_param(qat.kernel, linear.kernel)
        copy_param(qat.bias, linear.bias)
        qat._copy_bn_from(bn)
        return qat

    def to_float(self) -> nnx.Linear:
        """``nnx.Linear`` (with bias) with the batch norm folded in
        (``fuse_linear_bn_weights``)."""
        kernel, bias = self._folded_kernel_and_bias(linear=True)
        linear = nnx.Linear(self.in_features, self.out_features, use_bias=True,
                            rngs=nnx.Rngs(0))
        for name in LINEAR_CONFIG_ATTRIBUTES:
            setattr(linear, name, getattr(self, name))
        linear.kernel.set_value(kernel)
        linear.bias.set_value(bias)
        return linear
