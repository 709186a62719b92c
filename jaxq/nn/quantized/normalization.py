"""Quantized normalization modules: BatchNorm2d/3d, LayerNorm, GroupNorm, InstanceNorm*.

Channels-last inputs ``(N, ..., C)``. ``BatchNorm*`` follow torch's fused integer kernel
bit for bit (:func:`jaxq.nn.quantized.ops.batch_norm`); the others dequantize, normalize
in float32 and requantize (torch does the same with its own summation order, so an
output may differ by 1).

``from_float`` takes an observed ``nnx.BatchNorm`` / ``nnx.LayerNorm`` /
``nnx.GroupNorm`` (Flax: ``scale``/``bias``/``mean``/``var``, ``epsilon``) and the
output qparams from its ``activation_post_process``.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized import BatchNorm2d
  >>> x = jaxq.quantize_per_tensor(jnp.ones((1, 2, 2, 3)), 0.1, 0, jaxq.quint8)
  >>> BatchNorm2d(3)(x).shape
  (1, 2, 2, 3)
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from flax import nnx

from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized import _utils, ops
from jaxq.nn.quantized._utils import QuantizedBuffer

__all__ = ["BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
           "InstanceNorm2d", "InstanceNorm3d"]


def _float_buffer(value: Any) -> QuantizedBuffer:
    """An optional float32 parameter (array, nnx.Variable or None) as module state."""
    return QuantizedBuffer(None if value is None
                           else jnp.asarray(_utils.variable_value(value), jnp.float32))


def _vector(value: Any, size: int, default: float) -> jnp.ndarray:
    value = _utils.variable_value(value)
    if value is None:
        return jnp.full((size,), default, jnp.float32)
    return jnp.asarray(value, jnp.float32)


class _Normalization(nnx.Module):
    def _init_qparams(self) -> None:
        self.scale = QuantizedBuffer(jnp.float32(1.0))
        self.zero_point = QuantizedBuffer(jnp.int32(0))

    def _qparams(self):
        return self.scale.get_value(), self.zero_point.get_value()

    def _set_output(self, scale, zero_point) -> None:
        self.scale.set_value(jnp.asarray(scale, jnp.float32).reshape(()))
        self.zero_point.set_value(jnp.asarray(zero_point, jnp.int32).reshape(()))


class _BatchNorm(_Normalization):
    _RANK: ClassVar[int] = 2
    _RELU: ClassVar[bool] = False

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 device: Any = None, dtype: Any = None):
        del device, dtype
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.weight = QuantizedBuffer(jnp.ones((num_features,), jnp.float32))
        self.bias = QuantizedBuffer(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = QuantizedBuffer(jnp.zeros((num_features,), jnp.float32))
        self.running_var = QuantizedBuffer(jnp.ones((num_features,), jnp.float32))
        self._init_qparams()

    def __call__(self, input: QTensor) -> QTensor:
        op = f"quantized::batch_norm{self._RANK}d{'_relu' if self._RELU else ''}"
        x = _utils.require_qtensor(input, op)
        if x.ndim != self._RANK + 2:
            raise ValueError(f"{op}: input must be {self._RANK + 2}-d (N, *spatial, C); got "
                             f"shape {x.shape}")
        return ops.batch_norm(x, self.weight.get_value(), self.bias.get_value(),
                              self.running_mean.get_value(), self.running_var.get_value(),
                              self.eps, *self._qparams(), relu=self._RELU)

    forward = __call__

    def _get_name(self) -> str:
        return f"QuantizedBatchNorm{self._RANK}d"

    @classmethod
    def _float_bn(cls, mod: Any) -> Any:
        if not isinstance(mod, nnx.BatchNorm):
            raise TypeError(f"nnq.{cls.__name__}.from_float only works for nnx.BatchNorm, "
                            f"but got: {type(mod).__name__}")
        return mod

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> _BatchNorm:
        """From an observed ``nnx.BatchNorm`` (eval statistics; Flax's ``scale`` is
        torch's ``weight``)."""
        scale, zero_point, _ = _utils.activation_qparams(mod, f"nnq.{cls.__name__}")
        bn = cls._float_bn(mod)
        new = cls(bn.num_features, bn.epsilon)
        new.weight.set_value(_vector(bn.scale, bn.num_features, 1.0))
        new.bias.set_value(_vector(bn.bias, bn.num_features, 0.0))
        new.running_mean.set_value(_vector(bn.mean, bn.num_features, 0.0))
        new.running_var.set_value(_vector(bn.var, bn.num_features, 1.0))
        new._set_output(scale, zero_point)
        return new

    @classmethod
    def from_reference(cls, bn: Any, output_scale: float, output_zero_point: int
                       ) -> _BatchNorm:
        new = cls(bn.num_features, bn.epsilon)
        new.weight.set_value(_vector(bn.scale, bn.num_features, 1.0))
        new.bias.set_value(_vector(bn.bias, bn.num_features, 0.0))
        new.running_mean.set_value(_vector(bn.mean, bn.num_features, 0.0))
        new.running_var.set_value(_vector(bn.var, bn.num_features, 1.0))
        new._set_output(*_utils.output_qparams(output_scale, output_zero_point))
        return new


class BatchNorm2d(_BatchNorm):
    """Quantized batch norm of ``(N, H, W, C)``."""

    _RANK = 2


class BatchNorm3d(_BatchNorm):
    """Quantized batch norm of ``(N, D, H, W, C)``."""

    _RANK = 3


class LayerNorm(_Normalization):
    """Quantized layer norm over the trailing ``normalized_shape`` (torch's arguments)."""

    def __init__(self, normalized_shape: Any, weight: Any, bias: Any, scale: float,
                 zero_point: int, eps: float = 1e-5, elementwise_affine: bool = True,
                 device: Any = None, dtype: Any = None):
        del device, dtype
        self.normalized_shape = ((int(normalized_shape),) if isinstance(normalized_shape, int)
                                 else tuple(int(s) for s in normalized_shape))
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = _float_buffer(weight)
        self.bias = _float_buffer(bias)
        self._init_qparams()
        self._set_output(*_utils.output_qparams(scale, zero_point))

    def __call__(self, input: QTensor) -> QTensor:
        return ops.layer_norm(input, self.normalized_shape, self.weight.get_value(),
                              self.bias.get_value(), self.eps, *self._qparams())

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedLayerNorm"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> LayerNorm:
        """From an observed ``nnx.LayerNorm`` (normalizing the last axis)."""
        if not isinstance(mod, nnx.LayerNorm):
            raise TypeError(f"nnq.LayerNorm.from_float only works for nnx.LayerNorm, but "
                            f"got: {type(mod).__name__}")
        scale, zero_point, _ = _utils.activation_qparams(mod, "nnq.LayerNorm")
        features = int(mod.num_features)
        return cls((features,), mod.scale, mod.bias, scale, zero_point, mod.epsilon)


class GroupNorm(_Normalization):
    """Quantized group norm of channels-last inputs."""

    def __init__(self, num_groups: int, num_channels: int, weight: Any, bias: Any,
                 scale: float, zero_point: int, eps: float = 1e-5, affine: bool = True,
                 device: Any = None, dtype: Any = None):
        del device, dtype
        self.num_groups = int(num_groups)
        self.num_channels = int(num_channels)
        self.eps = float(eps)
        self.affine = bool(affine)
        self.weight = _float_buffer(weight)
        self.bias = _float_buffer(bias)
        self._init_qparams()
        self._set_output(*_utils.output_qparams(scale, zero_point))

    def __call__(self, input: QTensor) -> QTensor:
        return ops.group_norm(input, self.num_groups, self.weight.get_value(),
                              self.bias.get_value(), self.eps, *self._qparams())

    forward = __call__

    def _get_name(self) -> str:
        return "QuantizedGroupNorm"

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> GroupNorm:
        """From an observed ``nnx.GroupNorm``."""
        if not isinstance(mod, nnx.GroupNorm):
            raise TypeError(f"nnq.GroupNorm.from_float only works for nnx.GroupNorm, but "
                            f"got: {type(mod).__name__}")
        scale, zero_point, _ = _utils.activation_qparams(mod, "nnq.GroupNorm")
        return cls(mod.num_groups, mod.num_features, mod.scale, mod.bias, scale, zero_point,
                   mod.epsilon)


class _InstanceNorm(_Normalization):
    _RANK: ClassVar[int] = 2

    def __init__(self, num_features: int, weight: Any, bias: Any, scale: float,
                 zero_point: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False,
                 device: Any = None, dtype: Any = None):
        del device, dtype
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.weight = _float_buffer(weight)
        self.bias = _float_buffer(bias)
        self._init_qparams()
        self._set_output(*_utils.output_qparams(scale, zero_point))

    def __call__(self, input: QTensor) -> QTensor:
        x = _utils.require_qtensor(input, "quantized::instance_norm")
        if x.ndim != self._RANK + 2:
            raise ValueError(f"quantized::instance_norm: input must be (N, *{self._RANK} "
                             f"spatial, C); got {x.shape}")
        return ops.instance_norm(x, self.weight.get_value(), self.bias.get_value(),
                                 self.eps, *self._qparams())

    forward = __call__

    def _get_name(self) -> str:
        return f"QuantizedInstanceNorm{self._RANK}d"


class InstanceNorm1d(_InstanceNorm):
    """Quantized instance norm of ``(N, L, C)``."""

    _RANK = 1


class InstanceNorm2d(_InstanceNorm):
    """Quantized instance norm of ``(N, H, W, C)``."""

    _RANK = 2


class InstanceNorm3d(_InstanceNorm):
    """Quantized instance norm of ``(N, D, H, W, C)``."""

    _RANK = 3
