"""Dynamic quantized Linear (``torch.ao.nn.quantized.dynamic.Linear``) on NNX.

Float in, float out. ``dtype=qint8``: the weight is int8 (packed once); each call
quantizes the activation to quint8 ``[0, 127]`` (``reduce_range``) from the batch
min/max with ATen's ``ChooseQuantizationParams`` and runs
:func:`jaxq.kernels.quantized_matmul` in dynamic mode - torch's x86
``quantized::linear_dynamic``, bit for bit. ``dtype=float16``: ``x @ fp16(W).T + b``
accumulated in float32 (torch's fbgemm fp16 GEMM; the summation order differs, so
results agree to float32 rounding, not bitwise).

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.nn.quantized.dynamic import Linear
  >>> m = Linear(3, 2)
  >>> m.set_weight_bias(jaxq.quantize_per_tensor(jnp.ones((2, 3)), 0.1, 0, jaxq.qint8),
  ...                   jnp.zeros(2))
  >>> m(jnp.ones((4, 3))).shape
  (4, 2)
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.dtypes import as_quant_dtype, qint8
from jaxq.core.qtensor import QTensor
from jaxq.kernels import DynamicQuantization, quantized_matmul
from jaxq.nn import layout
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized._utils import QuantizedBuffer, QuantizedWeight
from jaxq.nn.quantized.functional import pack_linear_weight
from jaxq.nn.quantized.linear import packed_weight_to_qtensor

__all__ = ["Linear"]

_DYNAMIC = DynamicQuantization(granularity="per_tensor", reduce_range=True)
_FP16_MAX = float(jnp.finfo(jnp.float16).max)


def _weight_dtype(dtype: Any) -> str:
    if isinstance(dtype, str) and dtype in ("float16", "fp16"):
        return "float16"
    try:
        if jnp.dtype(dtype) == jnp.float16:
            return "float16"
    except TypeError:
        pass
    qdtype = as_quant_dtype(dtype, "dtype")
    if qdtype is qint8:
        return "qint8"
    if qdtype.name == "float16":
        return "float16"
    raise ValueError(f"Unsupported dtype specified for dynamic quantized Linear: {dtype!r} "
                     "(qint8 or float16)")


class Linear(nnx.Module):
    """Dynamic quantized ``y = x W^T + b`` (float activations).

    Args:
      in_features, out_features: sizes.
      bias_: keep a float bias (zeros initially).
      dtype: qint8 (int8 weight, dynamic int8 activations) or float16 (fp16 weight).

    State: the packed int8 weight (or float16 ``(out, in)`` weight) and the float bias
    (:class:`~jaxq.nn.quantized._utils.QuantizedState`).
    """

    _RELU: ClassVar[bool] = False
    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = (nnx.Linear,)

    def __init__(self, in_features: int, out_features: int, bias_: bool = True,
                 dtype: Any = qint8):
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.dtype = _weight_dtype(dtype)
        self.version = 4
        if self.dtype == "qint8":
            weight: Any = QTensor(jnp.zeros((out_features, in_features), jnp.int8), 1.0, 0,
                                  qint8)
        else:
            weight = jnp.zeros((out_features, in_features), jnp.float32)
        self._packed_params = QuantizedWeight(None)
        self._bias = QuantizedBuffer(None)
        self.set_weight_bias(weight, jnp.zeros((out_features,), jnp.float32) if bias_
                             else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        if isinstance(x, QTensor):
            raise TypeError("dynamic quantized Linear takes a float array (it quantizes "
                            "the activation itself); got a QTensor")
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"dynamic quantized Linear expects a float input; got {x.dtype}")
        weight, bias = self._packed_params.get_value(), self._bias.get_value()
        if self.dtype == "qint8":
            y = quantized_matmul(x.astype(jnp.float32), weight, dynamic=_DYNAMIC, bias=bias,
                                 relu=self._RELU)
        else:
            if x.shape[-1] != self.in_features:
                raise ValueError(f"input must have shape (..., {self.in_features}); got "
                                 f"{x.shape}")
            y = jnp.matmul(x.astype(jnp.float32), weight.astype(jnp.float32).T,
                           precision=jax.lax.Precision.HIGHEST)
            if bias is not None:
                y = y + bias
            if self._RELU:
                y = jnp.maximum(y, 0.0)
        return y.astype(x.dtype)

    forward = __call__

    def _get_name(self) -> str:
        return "DynamicQuantizedLinear"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"dtype={self.dtype}")

    def weight(self) -> Any:
        """qint8 QTensor ``(out, in)`` or the float16 ``(out, in)`` array."""
        value = self._packed_params.get_value()
        return packed_weight_to_qtensor(value) if self.dtype == "qint8" else value

    def bias(self) -> jax.Array | None:
        return self._bias.get_value()

    def set_weight_bias(self, w: Any, b: Any) -> None:
        """qint8: ``w`` a qint8 QTensor ``(out, in)``; float16: a float ``(out, in)``
        array (saturated to the float16 range, as torch)."""
        if tuple(w.shape) != (self.out_features, self.in_features):
            raise ValueError(f"weight must have shape ({self.out_features}, "
                             f"{self.in_features}); got {tuple(w.shape)}")
        if self.dtype == "qint8":
            self._packed_params.set_value(pack_linear_weight(w))
        else:
            if isinstance(w, QTensor):
                raise TypeError("a float16 dynamic Linear takes a float weight")
            w = jnp.clip(jnp.asarray(w, jnp.float32), -_FP16_MAX, _FP16_MAX)
            self._packed_params.set_value(w.astype(jnp.float16))
        self._bias.set_value(None if b is None else jnp.asarray(b, jnp.float32))

    @classmethod
    def _float_linear(cls, mod: Any) -> Any:
        from jaxq.nn.intrinsic import LinearReLU as FusedLinearReLU
        if isinstance(mod, FusedLinearReLU):
            return mod[0]
        if not isinstance(mod, cls._FLOAT_MODULE):
            names = ", ".join(t.__name__ for t in cls._FLOAT_MODULE)
            raise TypeError(f"nn.quantized.dynamic.{cls.__name__}.from_float only works "
                            f"for one of {names}, got {type(mod).__name__}")
        return mod

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> Linear:
        """From an ``nnx.Linear`` (or QAT dynamic Linear) with a ``qconfig``.

        As torch: a fresh ``qconfig.weight()`` observer (``default_dynamic_qconfig``'s when
        the qconfig has none) is run on the weight; qint8 quantizes it, float16 keeps it.
        """
        owner = f"nnqd.{cls.__name__}"
        if not hasattr(mod, "qconfig"):
            raise ValueError("Input float module must have qconfig defined")
        qconfig = mod.qconfig
        linear = cls._float_linear(mod)
        kernel = jnp.asarray(_utils.variable_value(linear.kernel), jnp.float32)
        factory = getattr(qconfig, "weight", None) if qconfig is not None else None
        if factory is None:
            from jaxq.qconfig import default_dynamic_qconfig
            factory = default_dynamic_qconfig.weight
        observer = layout.weight_observer_for_kernel(factory, kernel)
        dtype = _weight_dtype(observer.dtype)
        observer(kernel)
        bias = _utils.float_bias(linear)
        qlinear = cls(kernel.shape[0], kernel.shape[1], bias_=bias is not None, dtype=dtype)
        if dtype == "qint8":
            qweight, _ = _utils.quantize_kernel(kernel, observer, owner)
        else:
            qweight = layout.kernel_to_torch(kernel)
        qlinear.set_weight_bias(qweight, bias)
        return qlinear

    @classmethod
    def from_reference(cls, ref_qlinear: Any) -> Linear:
        """From a reference quantized linear (``get_quantized_weight()``)."""
        qweight = ref_qlinear.get_quantized_weight()
        bias = _utils.float_bias(ref_qlinear)
        dtype = "qint8" if isinstance(qweight, QTensor) else "float16"
        qlinear = cls(qweight.shape[1], qweight.shape[0], bias_=bias is not None,
                      dtype=dtype)
        qlinear.set_weight_bias(qweight, bias)
        return qlinear
