"""Static quantized LSTM (``torch.ao.nn.quantized.LSTM``) on NNX.

As torch's, the quantized LSTM is the observed :class:`jaxq.nn.quantizable.LSTM` after
``jaxq.convert``: every gate Linear is a :class:`jaxq.nn.quantized.Linear` (int8 weight,
requantized to its observer's qparams), every FloatFunctional a
:class:`~jaxq.nn.quantized.QFunctional`, and the module code (shared with the quantizable
class) runs on :class:`jaxq.QTensor` inputs:

* gate activations: torch's quantized ``sigmoid`` / ``tanh`` with fixed output qparams
  (``1/256`` / ``2/256``);
* the initial state (when ``hidden`` is None): zeros quantized with scale 1.0, zero
  point 0 and the input's dtype;
* outputs of one direction are stacked as integers (one ``ogate_cy`` produced all of
  them); the forward / backward outputs and the per-layer / per-direction ``h_n`` /
  ``c_n`` are concatenated with torch's quantized ``cat``, which requantizes each part to
  the *first* part's qparams (torch warns "All inputs of this cat operator must share the
  same quantization parameters" and does the same).

Numerics: the Linears, adds, muls and requantizations are bit-exact with torch's x86
kernels; ``sigmoid`` / ``tanh`` use XLA's float functions where ATen uses Sleef's (a few
ulps apart), so a gate value on a rounding boundary can land one quantum away, and such a
difference can propagate through later steps.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from flax import nnx
  >>> from jaxq.nn import quantizable
  >>> class Model(nnx.Module):
  ...     def __init__(self):
  ...         self.quant = jaxq.eager.QuantStub()
  ...         self.lstm = quantizable.LSTM(3, 4)
  ...         self.dequant = jaxq.eager.DeQuantStub()
  ...     def __call__(self, x):
  ...         y, _ = self.lstm(self.quant(x))
  ...         return self.dequant(y)
  >>> model = Model()
  >>> model.qconfig = jaxq.qconfig.get_default_qconfig("x86")
  >>> prepared = jaxq.eager.prepare(model)
  >>> _ = prepared(jnp.ones((5, 2, 3)))
  >>> quantized = jaxq.eager.convert(prepared)
  >>> type(quantized.lstm).__name__, quantized(jnp.ones((5, 2, 3))).shape
  ('LSTM', (5, 2, 4))
"""

from __future__ import annotations

from typing import Any, ClassVar

from jaxq.nn import quantizable

__all__ = ["LSTM"]


class LSTM(quantizable.LSTM):
    """A quantized LSTM (torch's ``nnq.LSTM``): built by :meth:`from_observed` (or by
    ``jaxq.convert`` through the default custom config), called with QTensors:
    ``lstm(x, hidden=None) -> (output, (h_n, c_n))``, all QTensors."""

    _FLOAT_MODULE: ClassVar[tuple[type, ...]] = (quantizable.LSTM,)

    def _get_name(self) -> str:
        return "QuantizedLSTM"

    @classmethod
    def from_float(cls, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("It looks like you are trying to convert a non-observed "
                                  "LSTM module. Please, see the examples on quantizable "
                                  "LSTMs (jaxq.nn.quantizable.LSTM.from_float first).")

    @classmethod
    def from_observed(cls, other: quantizable.LSTM) -> LSTM:
        """``jaxq.convert(other)`` (a copy) with this class (torch's protocol).

        Raises:
          TypeError: ``other`` is not a quantizable LSTM.
        """
        if not isinstance(other, cls._FLOAT_MODULE):
            raise TypeError("nnq.LSTM.from_observed expects a jaxq.nn.quantizable.LSTM; got "
                            f"{type(other).__name__}")
        from jaxq.eager import convert
        converted = convert(other, inplace=False, remove_qconfig=True)
        converted.__class__ = cls
        return converted
