"""Static quantized MultiheadAttention (``torch.ao.nn.quantized.MultiheadAttention``).

As torch's, the quantized MHA is the observed
:class:`jaxq.nn.quantizable.MultiheadAttention` after ``jaxq.convert``: ``linear_Q`` /
``linear_K`` / ``linear_V`` / ``out_proj`` become :class:`jaxq.nn.quantized.Linear`,
``q_scaling_product`` a :class:`~jaxq.nn.quantized.QFunctional` (its ``mul_scalar``
rescales the qparams, torch's rule), the QuantStubs :class:`~jaxq.nn.quantized.Quantize`
with the observed qparams and the DeQuantStubs :class:`~jaxq.nn.quantized.DeQuantize`.
The attention core (``q k^T``, masks, softmax, ``weights v``) stays float, as torch's.
Query, key and value are QTensors; the output is a QTensor, and so are the returned
attention weights (averaged over heads with torch's quantized ``mean``).

``bias_k`` / ``bias_v`` (``add_bias_kv=True``) are quantized at conversion as torch does:
quint8 with ``torch._choose_qparams_per_tensor(bias_k, reduce_range=False)``
(:func:`jaxq.core.aten_qparams.choose_quantization_params` on its min / max over
``[0, 255]``), and ``bias_v`` with qparams chosen from the *already quantized* ``bias_k``
(torch passes ``bias_k`` there, not ``bias_v``; reproduced, not fixed). At run time they
are concatenated to ``k`` / ``v`` with torch's quantized ``cat`` (requantized to ``k`` /
``v``'s qparams).

See :mod:`jaxq.nn.quantizable.activation` for the layout and the ``batch_first``
deviation from torch.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from flax import nnx
  >>> from jaxq.nn import quantizable
  >>> class Model(nnx.Module):
  ...     def __init__(self):
  ...         self.quant = jaxq.eager.QuantStub()
  ...         self.mha = quantizable.MultiheadAttention(8, 2)
  ...         self.dequant = jaxq.eager.DeQuantStub()
  ...     def __call__(self, x):
  ...         q = self.quant(x)
  ...         out, _ = self.mha(q, q, q)
  ...         return self.dequant(out)
  >>> model = Model()
  >>> model.qconfig = jaxq.qconfig.get_default_qconfig("x86")
  >>> prepared = jaxq.eager.prepare(model)
  >>> _ = prepared(jnp.ones((4, 2, 8)))
  >>> quantized = jaxq.eager.convert(prepared)
  >>> type(quantized.mha).__name__, quantized(jnp.ones((4, 2, 8))).shape
  ('MultiheadAttention', (4, 2, 8))
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp

from jaxq.core.aten_qparams import choose_quantization_params
from jaxq.core.dtypes import quint8
from jaxq.core.qtensor import quantize_per_tensor
from jaxq.nn import quantizable
from jaxq.nn.quantized import _utils
from jaxq.nn.quantized._utils import QuantizedBuffer

__all__ = ["MultiheadAttention"]


def _choose_qparams_per_tensor(values: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``torch._choose_qparams_per_tensor(x, reduce_range=False)``: quint8 ``[0, 255]``
    qparams from the min / max of ``x`` (C++ ``ChooseQuantizationParams``)."""
    return choose_quantization_params(jnp.min(values), jnp.max(values), 0, 255,
                                      preserve_sparsity=False)


class MultiheadAttention(quantizable.MultiheadAttention):
    """A quantized multi-head attention (torch's ``nnq.MultiheadAttention``): built by
    :meth:`from_observed` (or by ``jaxq.convert`` through the default custom config) and
    called with QTensor query / key / value (see the quantizable class for the call)."""

    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = (quantizable.MultiheadAttention,)

    def _get_name(self) -> str:
        return "QuantizedMultiheadAttention"

    @classmethod
    def from_float(cls, other: Any) -> Any:
        raise NotImplementedError("It looks like you are trying to convert a non-observed "
                                  "MHA module. Please, see the examples on quantizable MHAs "
                                  "(jaxq.nn.quantizable.MultiheadAttention.from_float "
                                  "first).")

    @classmethod
    def from_observed(cls, other: quantizable.MultiheadAttention) -> MultiheadAttention:
        """``jaxq.convert(other)`` (a copy) with this class, ``bias_k`` / ``bias_v``
        quantized as torch does (see the module docs).

        Raises:
          TypeError: ``other`` is not a quantizable MultiheadAttention.
        """
        if not isinstance(other, cls._FLOAT_MODULE):
            raise TypeError("nnq.MultiheadAttention.from_observed expects a "
                            "jaxq.nn.quantizable.MultiheadAttention; got "
                            f"{type(other).__name__}")
        from jaxq.eager import convert
        converted = convert(other, inplace=False, remove_qconfig=True)
        converted.__class__ = cls
        if converted.bias_k is not None:
            bias_k = jnp.asarray(_utils.variable_value(converted.bias_k), jnp.float32)
            bias_v = jnp.asarray(_utils.variable_value(converted.bias_v), jnp.float32)
            q_bias_k = quantize_per_tensor(bias_k, *_choose_qparams_per_tensor(bias_k),
                                           quint8)
            # torch chooses bias_v's qparams from the quantized bias_k.
            q_bias_v = quantize_per_tensor(
                bias_v, *_choose_qparams_per_tensor(q_bias_k.dequantize()), quint8)
            converted.bias_k = QuantizedBuffer(q_bias_k)
            converted.bias_v = QuantizedBuffer(q_bias_v)
        return converted
