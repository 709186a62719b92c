"""Quantized Linear (``torch.ao.nn.quantized.Linear``) on NNX.

The int8 weight is packed once (torch's ``(out, in)`` layout, a
:class:`jaxq.kernels.PackedWeight`) and every call goes through
:func:`jaxq.kernels.quantized_matmul`: ``int8 x int8 -> int32`` and fbgemm's requantize
epilogue, bit-exact with torch's x86 ``quantized::linear``.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized import Linear
  >>> m = Linear(3, 2)
  >>> m.set_weight_bias(jaxq.quantize_per_tensor(jnp.ones((2, 3)), 0.1, 0, jaxq.qint8),
  ...                   jnp.zeros(2))
  >>> x = jaxq.quantize_per_tensor(jnp.ones((4, 3)), 0.1, 0, jaxq.quint8)
  >>> m(x).shape
  (4, 2)
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.dtypes import as_quant_dtype, qint8
from jaxq.core.qtensor import QTensor
from jaxq.kernels import PackedWeight, weight_values
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized._utils import QuantizedBuffer, QuantizedWeight
from jaxq.nn.quantized.functional import _linear, pack_linear_weight

__all__ = ["Linear", "LinearPackedParams", "packed_weight_to_qtensor"]


def packed_weight_to_qtensor(packed: PackedWeight) -> QTensor:
    """A packed 8-bit weight back as torch stores it: a qint8 QTensor ``(out, in)``."""
    values = weight_values(packed)
    if packed.spec.granularity == "per_channel":
        return QTensor(values, packed.scale, packed.zero_point, qint8, "per_channel_affine", 0)
    return QTensor(values, packed.scale, packed.zero_point, qint8)


class LinearPackedParams(nnx.Module):
    """torch's ``LinearPackedParams``: the packed weight and the float bias.

    Attributes:
      _packed_params: :class:`QuantizedWeight` holding the :class:`PackedWeight`.
      bias: :class:`QuantizedBuffer` float32 ``(out,)`` or None.
      dtype: qint8 (static) or float16 (dynamic fp16 Linear).
    """

    def __init__(self, dtype: Any = qint8):
        self.dtype = as_quant_dtype(dtype, "dtype")
        self._packed_params = QuantizedWeight(None)
        self.bias = QuantizedBuffer(None)

    def set_weight_bias(self, weight: Any, bias: Any) -> None:
        self._packed_params.set_value(pack_linear_weight(weight))
        self.bias.set_value(None if bias is None else jnp.asarray(bias, jnp.float32))

    def _weight_bias(self) -> tuple[QTensor, jax.Array | None]:
        return packed_weight_to_qtensor(self._packed_params.get_value()), \
            self.bias.get_value()


class Linear(nnx.Module):
    """Quantized ``y = x W^T + b`` taking and returning QTensors (torch's ``nnq.Linear``).

    Args:
      in_features, out_features: sizes.
      bias_: keep a float bias (initialised to zeros, as torch).
      dtype: weight dtype, qint8.

    Attributes (state, :class:`~jaxq.nn.quantized._utils.QuantizedState`):
      _packed_params: packed qint8 weight + bias (:class:`LinearPackedParams`);
      scale, zero_point: output qparams (float32 / int32 scalars).

    The weight starts as zeros with scale 1.0 and zero point 0, as torch's.
    """

    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = (nnx.Linear,)
    _RELU: ClassVar[bool] = False
    _OP: ClassVar[str] = "quantized::linear"

    def __init__(self, in_features: int, out_features: int, bias_: bool = True,
                 dtype: Any = qint8):
        if as_quant_dtype(dtype, "dtype") is not qint8:
            raise ValueError(f"Unsupported dtype specified for quantized Linear: {dtype!r} "
                             "(qint8 only; float16 is jaxq.nn.quantized.dynamic.Linear)")
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int")
        self.in_features = in_features
        self.out_features = out_features
        self._packed_params = LinearPackedParams(qint8)
        weight = QTensor(jnp.zeros((out_features, in_features), jnp.int8), 1.0, 0, qint8)
        self._packed_params.set_weight_bias(
            weight, jnp.zeros((out_features,), jnp.float32) if bias_ else None)
        self.scale = QuantizedBuffer(jnp.float32(1.0))
        self.zero_point = QuantizedBuffer(jnp.int32(0))

    def __call__(self, x: QTensor) -> QTensor:
        x = _utils.require_per_tensor(x, self._OP)
        scale, zero_point = _utils.output_qparams(self.scale, self.zero_point, x.dtype,
                                                  self._OP)
        params = self._packed_params
        return _linear(x, params._packed_params.get_value(), params.bias.get_value(), scale,
                       zero_point, self._RELU, self._OP)

    forward = __call__

    def weight(self) -> QTensor:
        """The qint8 weight ``(out, in)`` (torch's layout)."""
        return self._packed_params._weight_bias()[0]

    def bias(self) -> jax.Array | None:
        return self._packed_params.bias.get_value()

    def set_weight_bias(self, w: QTensor, b: Any) -> None:
        """Packs ``w`` (qint8 QTensor ``(out, in)``) and stores ``b`` (float or None)."""
        if tuple(w.shape) != (self.out_features, self.in_features):
            raise ValueError(f"weight must have shape ({self.out_features}, "
                             f"{self.in_features}); got {tuple(w.shape)}")
        self._packed_params.set_weight_bias(w, b)

    def _get_name(self) -> str:
        return "QuantizedLinear"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"scale={float(self.scale.get_value())}, "
                f"zero_point={int(self.zero_point.get_value())}")

    @classmethod
    def _float_linear(cls, mod: Any) -> Any:
        """The nnx.Linear holding the kernel (after torch's type checks)."""
        if hasattr(mod, "weight_fake_quant"):
            return mod
        if not isinstance(mod, cls._FLOAT_MODULE):
            names = ", ".join(t.__name__ for t in cls._FLOAT_MODULE)
            raise TypeError(f"nnq.{cls.__name__}.from_float only works for {names}, but "
                            f"got: {type(mod).__name__}")
        if not hasattr(mod, "qconfig") or mod.qconfig is None:
            raise ValueError("Input float module must have qconfig defined")
        return mod

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Linear:
        """A quantized Linear from an observed ``nnx.Linear`` or a QAT Linear.

        torch's protocol: output qparams from ``mod.activation_post_process``; weight
        qparams from ``mod.weight_fake_quant`` (QAT, BN folded first for LinearBn1d) or
        ``mod.qconfig.weight()`` run on the Flax kernel; the kernel ``(in, out)`` is
        transposed to torch's ``(out, in)`` and packed once.

        Raises:
          TypeError: an unsupported module type.
          ValueError: no qconfig / activation_post_process, non-qint8 weight observer.
        """
        owner = f"nnq.{cls.__name__}"
        linear = cls._float_linear(mod)
        act_scale, act_zp, _ = _utils.activation_qparams(mod, owner)
        kernel, bias = _kernel_and_bias(linear, is_linear=True)
        if getattr(linear, "qconfig", None) is None and getattr(mod, "qconfig", None):
            linear.qconfig = mod.qconfig
        post = _utils.weight_observer(linear, kernel, owner, use_precomputed_fake_quant)
        qweight, _ = _utils.quantize_kernel(kernel, post, owner)
        out_features, in_features = qweight.shape
        qlinear = cls(in_features, out_features, bias_=bias is not None)
        qlinear.set_weight_bias(qweight, bias)
        qlinear.scale.set_value(act_scale)
        qlinear.zero_point.set_value(act_zp)
        return qlinear

    @classmethod
    def from_reference(cls, ref_qlinear: Any, output_scale: Any, output_zero_point: Any
                       ) -> Linear:
        """From a reference quantized linear: ``ref_qlinear.get_quantized_weight()`` (a
        qint8 QTensor ``(out, in)``) and ``ref_qlinear.bias``."""
        qweight = ref_qlinear.get_quantized_weight()
        bias = _utils.float_bias(ref_qlinear)
        qlinear = cls(qweight.shape[1], qweight.shape[0], bias_=bias is not None)
        qlinear.set_weight_bias(qweight, bias)
        scale, zero_point = _utils.output_qparams(output_scale, output_zero_point)
        qlinear.scale.set_value(scale)
        qlinear.zero_point.set_value(zero_point)
        return qlinear


def _kernel_and_bias(mod: Any, is_linear: bool) -> tuple[jax.Array, jax.Array | None]:
    """The float kernel and bias to quantize; BN-folded for the fused QAT modules."""
    if hasattr(mod, "bn") and hasattr(mod, "_folded_kernel_and_bias"):
        kernel, bias = mod._folded_kernel_and_bias(linear=is_linear)
        return jnp.asarray(kernel, jnp.float32), jnp.asarray(bias, jnp.float32)
    kernel = _utils.variable_value(mod.kernel)
    return jnp.asarray(kernel, jnp.float32), _utils.float_bias(mod)
