"""``torch.ao.nn.intrinsic.qat`` convolutions: ConvBn*, ConvBnReLU*, ConvReLU*.

* ``ConvBn1d/2d/3d``, ``ConvBnReLU1d/2d/3d``: torch's ``_ConvBnNd`` - batch norm
  folded into the fake-quantized kernel (see :mod:`jaxq.nn.intrinsic.qat._batch_norm`
  for the exact forward, the momentum conversion and the ``freeze_bn`` state).
* ``ConvReLU1d/2d/3d``: :class:`jaxq.nn.qat.Conv2d` (etc.) followed by ReLU.

Constructors take torch's arguments (``ConvBn2d(in_channels, out_channels,
kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=None,
padding_mode="zeros", eps=1e-05, momentum=0.1, freeze_bn=False, qconfig=None)``)
plus Flax's keywords (``dtype``, ``param_dtype``, ``precision``, ``rngs``);
``from_float`` takes the :mod:`jaxq.nn.intrinsic` container (``ConvBn2d(conv, bn)``)
with ``qconfig`` set; ``to_float`` folds the batch norm into the kernel
(``fuse_conv_bn_weights``) and returns an ``nnx.Conv`` (with bias) or an intrinsic
``ConvReLU*d``.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.qconfig import get_default_qat_qconfig
  >>> from jaxq.nn.intrinsic.qat import ConvBnReLU2d, freeze_bn_stats
  >>> m = ConvBnReLU2d(3, 4, 3, padding=1, qconfig=get_default_qat_qconfig("x86"))
  >>> m(jnp.ones((2, 5, 5, 3))).shape
  (2, 5, 5, 4)
  >>> freeze_bn_stats(m)
  >>> int(m.freeze_bn[0])
  1
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.nn.intrinsic import fused as nni
from jaxq.nn.intrinsic.qat._batch_norm import BnFoldMixin, torch_momentum
from jaxq.nn.intrinsic.qat.linear_fused import LinearBn1d
from jaxq.nn.layout import weight_fake_quant_for_kernel
from jaxq.nn.modules import ReLU
from jaxq.nn.qat import conv as qat_conv
from jaxq.nn.qat._apply import (
    check_from_float,
    check_qconfig,
    conv_apply,
    copy_param,
    default_rngs,
    fan_in_bound,
)

__all__ = ["ConvBn1d", "ConvBn2d", "ConvBn3d", "ConvBnReLU1d", "ConvBnReLU2d",
           "ConvBnReLU3d", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "update_bn_stats",
           "freeze_bn_stats"]


class _ConvBnNd(BnFoldMixin, qat_conv.ConvConfigMixin):
    """torch's ``_ConvBnNd``: conv + batch norm folded into the fake-quantized kernel.

    Attributes:
      kernel, bias: the conv's parameters (``bias`` None unless ``bias=True``).
      bn: ``nnx.BatchNorm`` holding gamma (``scale``), beta (``bias``), running
        ``mean``/``var``, ``epsilon`` and Flax's momentum (``1 - momentum``).
      freeze_bn: :class:`~jaxq.nn.intrinsic.qat._batch_norm.BnFlag` uint8 ``[1]``.
      weight_fake_quant: ``qconfig.weight()`` for the kernel.
      qconfig: the QConfig.
    """

    _FLOAT_MODULE: ClassVar[type]
    _FLOAT_RELU_MODULE: ClassVar[type | None] = None
    _FUSED_FLOAT_MODULE: ClassVar[type | None] = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                 bias: Any = None, padding_mode: str = "zeros", eps: float = 1e-05,
                 momentum: float = 0.1, freeze_bn: bool = False, qconfig: Any = None, *,
                 dtype: Any = None, param_dtype: Any = jnp.float32, precision: Any = None,
                 rngs: nnx.Rngs | None = None):
        check_qconfig(qconfig)
        rngs = default_rngs(rngs)
        self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation,
                        groups, bool(bias), padding_mode, dtype, param_dtype, precision,
                        rngs)
        self.qconfig = qconfig
        self._init_bn(out_channels, eps, momentum, freeze_bn, param_dtype, rngs)
        self.weight_fake_quant = weight_fake_quant_for_kernel(qconfig.weight,
                                                              self.kernel.get_value())
        if self.bias is not None:  # torch: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            bound = fan_in_bound(self.kernel.get_value().shape)
            self.bias.set_value(jax.random.uniform(
                rngs.params(), self.bias.get_value().shape, self.bias.get_value().dtype,
                -bound, bound))

    def _forward(self, x: jax.Array) -> jax.Array:
        return self._bn_folded_forward(x, lambda v, k: conv_apply(self, v, k, None))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._forward(x)

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> _ConvBnNd:
        """The QAT module from an intrinsic ``ConvBn*d``/``ConvBnReLU*d`` container
        carrying ``qconfig``; parameters and running statistics are copied.

        Raises:
          TypeError: ``mod`` is not exactly ``cls._FLOAT_MODULE``.
          ValueError: missing/empty qconfig, a masked conv, or a batch norm that is
            not affine / not channels-last / cross-device.
        """
        del use_precomputed_fake_quant
        qconfig = check_from_float(cls, mod, cls._FLOAT_MODULE)
        conv, bn = mod[0], mod[1]
        if conv.mask is not None:
            raise ValueError(f"qat.{cls.__name__}.from_float does not support masked "
                             "convolutions (nnx.Conv mask=...)")
        cls._check_bn(cls, bn, f"qat.{cls.__name__}.from_float")
        qat = cls(conv.in_features, conv.out_features, conv.kernel_size,
                  groups=conv.feature_group_count, bias=conv.use_bias,
                  eps=float(bn.epsilon), momentum=torch_momentum(bn.momentum),
                  freeze_bn=False, qconfig=qconfig)
        qat._copy_conv_config(conv)
        copy_param(qat.kernel, conv.kernel)
        copy_param(qat.bias, conv.bias)
        qat._copy_bn_from(bn)
        return qat

    def to_float(self) -> nnx.Module:
        """``nnx.Conv`` with the batch norm folded in (``fuse_conv_bn_weights``; the
        result always has a bias), wrapped in ``ConvReLU*d`` for ConvBnReLU."""
        kernel, bias = self._folded_kernel_and_bias()
        conv = self._float_conv(kernel=kernel, bias=bias, use_bias=True)
        if self._FLOAT_RELU_MODULE is not None:
            return self._FUSED_FLOAT_MODULE(conv, self._FLOAT_RELU_MODULE())
        return conv


class ConvBn1d(_ConvBnNd):
    """Conv1d + BatchNorm (channels-last ``(N, L, C)``) for QAT."""
    _RANK = 1
    _FLOAT_MODULE = nni.ConvBn1d


class ConvBn2d(_ConvBnNd):
    """Conv2d + BatchNorm (``(N, H, W, C)``) for QAT."""
    _RANK = 2
    _FLOAT_MODULE = nni.ConvBn2d


class ConvBn3d(_ConvBnNd):
    """Conv3d + BatchNorm (``(N, D, H, W, C)``) for QAT."""
    _RANK = 3
    _FLOAT_MODULE = nni.ConvBn3d


class _ConvBnReLUMixin:
    _FLOAT_RELU_MODULE = ReLU

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self._forward(x))


class ConvBnReLU1d(_ConvBnReLUMixin, ConvBn1d):
    """Conv1d + BatchNorm + ReLU for QAT."""
    _FLOAT_MODULE = nni.ConvBnReLU1d
    _FUSED_FLOAT_MODULE = nni.ConvReLU1d


class ConvBnReLU2d(_ConvBnReLUMixin, ConvBn2d):
    """Conv2d + BatchNorm + ReLU for QAT."""
    _FLOAT_MODULE = nni.ConvBnReLU2d
    _FUSED_FLOAT_MODULE = nni.ConvReLU2d


class ConvBnReLU3d(_ConvBnReLUMixin, ConvBn3d):
    """Conv3d + BatchNorm + ReLU for QAT."""
    _FLOAT_MODULE = nni.ConvBnReLU3d
    _FUSED_FLOAT_MODULE = nni.ConvReLU3d


class _ConvReLUMixin:
    _FLOAT_RELU_MODULE = ReLU

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(super().__call__(x))


class ConvReLU1d(_ConvReLUMixin, qat_conv.Conv1d):
    """QAT Conv1d + ReLU (from an intrinsic ``ConvReLU1d``)."""
    _FLOAT_MODULE = nni.ConvReLU1d


class ConvReLU2d(_ConvReLUMixin, qat_conv.Conv2d):
    """QAT Conv2d + ReLU (from an intrinsic ``ConvReLU2d``)."""
    _FLOAT_MODULE = nni.ConvReLU2d


class ConvReLU3d(_ConvReLUMixin, qat_conv.Conv3d):
    """QAT Conv3d + ReLU (from an intrinsic ``ConvReLU3d``)."""
    _FLOAT_MODULE = nni.ConvReLU3d


_BN_MODULES = (_ConvBnNd, LinearBn1d)


def _bn_modules(mod: Any):
    if isinstance(mod, _BN_MODULES):
        yield mod
        return
    if isinstance(mod, nnx.Module):
        for _, module in nnx.iter_modules(mod):
            if isinstance(module, _BN_MODULES):
                yield module


def update_bn_stats(mod: Any) -> None:
    """``update_bn_stats()`` on ``mod`` or on every fused BN QAT module inside it.

    torch applies it to one module (``model.apply(update_bn_stats)``); jaxq walks the
    NNX tree itself. Also covers ``LinearBn1d`` (torch's set omits it). Works eagerly
    and inside ``nnx.jit`` (the flag is state: no recompilation).
    """
    for module in _bn_modules(mod):
        module.update_bn_stats()


def freeze_bn_stats(mod: Any) -> None:
    """``freeze_bn_stats()`` on ``mod`` or on every fused BN QAT module inside it."""
    for module in _bn_modules(mod):
        module.freeze_bn_stats()
