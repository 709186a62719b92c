"""Reference quantized RNNCell / LSTMCell / GRUCell
(``torch.ao.nn.quantized.reference``) on NNX.

Float cells whose gate GEMMs use their quantize-dequantized weights. Each of the two
weights has its own qparams (torch's ``weight_qparams_dict = {"weight_ih": {...},
"weight_hh": {...}, "is_decomposed": False}``; qschemes None, per_tensor_affine or
per_channel_affine) stored as ``weight_ih_qscheme``, ``weight_ih_dtype``,
``weight_ih_scale``, ``weight_ih_zero_point``, ``weight_ih_axis_int`` (and ``weight_hh_*``),
as torch names them. The kernels keep the Flax Linear layout: ``kernel_ih``
``(I, G * H)`` and ``kernel_hh`` ``(H, G * H)`` (torch's ``weight_ih`` / ``weight_hh``
``(G * H, I)`` / ``(G * H, H)`` are their transposes), gates in torch's order (LSTM i,
f, g, o; GRU r, z, n). The element-wise math is ATen's:

* RNN:  ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``
* LSTM: ``i, f, g, o`` chunks of the summed gates; ``c' = f c + i g``; ``h' = o tanh(c')``
* GRU:  ``r, z`` from the summed gates, ``n = tanh(ih_n + r * hh_n)``,
  ``h' = (h - n) z + n``

Outputs match torch's reference cells to float32 tolerance (XLA's sigmoid / tanh and
summation order differ from ATen's by a few ulp); the weights are bit-exact.

torch 2.13's reference cells have no ``_IS_REFERENCE``, so torch's eager
``convert(is_reference=True)`` fails on ``nn.RNNCell`` / ``LSTMCell`` / ``GRUCell``
(``from_float() missing ... 'weight_qparams_dict'``); jaxq's convert builds the dict from
``qconfig.weight()`` run on each weight (:meth:`RNNCellBase._reference_weight_qparams`).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.nn.quantized.reference import LSTMCell
  >>> h, c = LSTMCell(3, 2)(jnp.ones((4, 3)))
  >>> h.shape, c.shape
  ((4, 2), (4, 2))
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.qscheme import QScheme
from jaxq.nn.quantized._utils import QuantizedBuffer, variable_value
from jaxq.nn.quantized.reference.linear import _check_device
from jaxq.nn.quantized.reference.utils import (
    _INTEGER_DTYPES, _array, _as_weight_dtype, _as_weight_qscheme,
    quantize_and_dequantize_weight, quantize_and_dequantize_weight_decomposed,
    quantize_weight, quantize_weight_decomposed, require_float_input)

__all__ = ["RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_WEIGHTS = ("weight_ih", "weight_hh")
_CELL_QSCHEMES = (None, QScheme.per_tensor_affine, QScheme.per_channel_affine)


def _default_qparams_dict() -> dict[str, Any]:
    qparams = {"qscheme": QScheme.per_tensor_affine, "dtype": "quint8", "scale": 1.0,
               "zero_point": 0}
    return {"weight_ih": qparams, "weight_hh": qparams, "is_decomposed": False}


class RNNCellBase(nnx.Module):
    """Shared state of the reference cells (torch's reference ``RNNCellBase``).

    Args:
      input_size, hidden_size: sizes.
      bias: keep ``bias_ih`` / ``bias_hh`` (``nnx.Param`` ``(G * H,)``).
      num_chunks: gates (1 RNN, 4 LSTM, 3 GRU).
      device: None or "cpu"; dtype: parameter dtype (default float32).
      weight_qparams_dict: see the module docstring; None: per-tensor quint8, scale 1,
        zero point 0 for both weights (torch's).
      rngs: initialisation, torch's ``U(-1/sqrt(H), 1/sqrt(H))``.
    """

    _IS_REFERENCE = True
    _NUM_CHUNKS: ClassVar[int] = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device: Any = None, dtype: Any = None,
                 weight_qparams_dict: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        _check_device(device)
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.bias = bool(bias)
        self.num_chunks = int(num_chunks)
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        param_dtype = jnp.float32 if dtype is None else dtype
        bound = 1.0 / hidden_size ** 0.5
        gates = self.num_chunks * self.hidden_size

        def uniform(shape):
            return nnx.Param(jax.random.uniform(rngs.params(), shape, param_dtype, -bound,
                                                bound))

        self.kernel_ih = uniform((self.input_size, gates))
        self.kernel_hh = uniform((self.hidden_size, gates))
        self.bias_ih = uniform((gates,)) if self.bias else None
        self.bias_hh = uniform((gates,)) if self.bias else None
        self._init_weight_qparams_dict(
            _default_qparams_dict() if weight_qparams_dict is None else weight_qparams_dict)

    def _init_weight_qparams_dict(self, weight_qparams_dict: dict[str, Any]) -> None:
        if not isinstance(weight_qparams_dict, dict) or set(weight_qparams_dict) != {
                "weight_ih", "weight_hh", "is_decomposed"}:
            raise ValueError("weight_qparams_dict must be a dict with exactly the keys "
                             "'weight_ih', 'weight_hh' and 'is_decomposed'; got "
                             f"{weight_qparams_dict!r}")
        self.is_decomposed = bool(weight_qparams_dict["is_decomposed"])
        for key in _WEIGHTS:
            qparams = weight_qparams_dict[key]
            qscheme = _as_weight_qscheme(qparams["qscheme"])
            if qscheme not in _CELL_QSCHEMES:
                raise ValueError(f"qscheme: {qscheme.value} is not supported in "
                                 f"{self._get_name()} (accepted: None, per_tensor_affine, "
                                 "per_channel_affine)")
            dtype = _as_weight_dtype(qparams["dtype"])
            setattr(self, key + "_qscheme", qscheme)
            setattr(self, key + "_dtype", dtype)
            axis = 0
            if qscheme is not None and dtype in _INTEGER_DTYPES:
                scale = jnp.asarray(_array(qparams["scale"]), jnp.float32)
                zero_point = jnp.asarray(_array(qparams["zero_point"])).astype(jnp.int32)
                if qscheme is QScheme.per_channel_affine:
                    axis = int(_array(qparams["axis"]))
            else:
                scale, zero_point = jnp.float32(1.0), jnp.int32(0)
            setattr(self, key + "_scale", QuantizedBuffer(scale))
            setattr(self, key + "_zero_point", QuantizedBuffer(zero_point))
            setattr(self, key + "_axis_int", axis)
            quant_min, quant_max = qparams.get("quant_min"), qparams.get("quant_max")
            setattr(self, key + "_quant_min", None if quant_min is None else int(quant_min))
            setattr(self, key + "_quant_max", None if quant_max is None else int(quant_max))

    def _get_name(self) -> str:
        return "QuantizedRNNCellBase(Reference)"

    @property
    def weight_ih(self) -> jax.Array:
        """torch's ``weight_ih`` ``(G * H, I)`` (the transposed ``kernel_ih``)."""
        return variable_value(self.kernel_ih).T

    @property
    def weight_hh(self) -> jax.Array:
        """torch's ``weight_hh`` ``(G * H, H)``."""
        return variable_value(self.kernel_hh).T

    def _params(self, key: str) -> tuple:
        return (getattr(self, key + "_qscheme"), getattr(self, key + "_dtype"),
                getattr(self, key + "_scale").get_value(),
                getattr(self, key + "_zero_point").get_value(),
                getattr(self, key + "_axis_int"))

    def _weight(self, key: str, quantized: bool) -> Any:
        weight = jnp.asarray(getattr(self, key), jnp.float32)
        params = self._params(key)
        if self.is_decomposed:
            bounds = (getattr(self, key + "_quant_min"), getattr(self, key + "_quant_max"))
            fn = quantize_weight_decomposed if quantized else \
                quantize_and_dequantize_weight_decomposed
            return fn(weight, *params, *bounds)
        if quantized:
            return quantize_weight(weight, *params)
        return quantize_and_dequantize_weight(weight, *params)

    def get_weight_ih(self) -> jax.Array:
        """``weight_ih`` quantized then dequantized, float32 ``(G * H, I)``."""
        return self._weight("weight_ih", quantized=False)

    def get_weight_hh(self) -> jax.Array:
        """``weight_hh`` quantized then dequantized, float32 ``(G * H, H)``."""
        return self._weight("weight_hh", quantized=False)

    def get_quantized_weight_ih(self) -> Any:
        """``weight_ih`` quantized (a QTensor; torch's ``get_quantized_weight_ih``)."""
        return self._weight("weight_ih", quantized=True)

    def get_quantized_weight_hh(self) -> Any:
        return self._weight("weight_hh", quantized=True)

    def _gates(self, x: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        gates_ih = x @ self.get_weight_ih().T
        gates_hh = h @ self.get_weight_hh().T
        if self.bias:
            gates_ih = gates_ih + variable_value(self.bias_ih)
            gates_hh = gates_hh + variable_value(self.bias_hh)
        return gates_ih, gates_hh

    def _prepare(self, input: Any, hx: Any) -> tuple[jax.Array, Any, bool]:
        x = require_float_input(input, self._get_name())
        if x.ndim not in (1, 2):
            raise ValueError(f"{self._get_name()}: Expected input to be 1-D or 2-D but "
                             f"received {x.ndim}-D tensor")
        batched = x.ndim == 2
        if not batched:
            x = x[None]
            if hx is not None:
                hx = jax.tree.map(lambda a: jnp.asarray(a)[None], hx)
        return x.astype(jnp.float32), hx, batched

    def _zeros(self, x: jax.Array) -> jax.Array:
        return jnp.zeros((x.shape[0], self.hidden_size), jnp.float32)

    # -- conversion ------------------------------------------------------------------------

    @classmethod
    def _flax_cell_weights(cls, mod: Any) -> tuple[jax.Array, ...]:
        """``(kernel_ih, kernel_hh, b_ih, b_hh)`` of a Flax cell in torch's gate order."""
        from jaxq.nn.quantized.dynamic import rnn as dynamic_rnn
        return getattr(dynamic_rnn, cls.__name__)._flax_weights(mod)

    @classmethod
    def _reference_weight_qparams(cls, mod: Any,
                                  qparams_of: Callable[[jax.Array], dict[str, Any]]
                                  ) -> dict[str, Any]:
        """torch's ``weight_qparams_dict`` for a Flax cell: ``qparams_of(kernel)`` (the
        qconfig's weight observer run on a Flax-layout kernel) for each weight."""
        kernel_ih, kernel_hh, _, _ = cls._flax_cell_weights(mod)
        return {"weight_ih": qparams_of(kernel_ih), "weight_hh": qparams_of(kernel_hh),
                "is_decomposed": False}

    @classmethod
    def _from_flax(cls, mod: Any, weight_qparams_dict: dict[str, Any],
                   **kwargs: Any) -> RNNCellBase:
        kernel_ih, kernel_hh, b_ih, b_hh = cls._flax_cell_weights(mod)
        ref = cls(int(kernel_ih.shape[0]), int(kernel_hh.shape[0]), True,
                  weight_qparams_dict=weight_qparams_dict, **kwargs)
        ref.kernel_ih.set_value(jnp.array(kernel_ih))
        ref.kernel_hh.set_value(jnp.array(kernel_hh))
        ref.bias_ih.set_value(jnp.array(b_ih))
        ref.bias_hh.set_value(jnp.array(b_hh))
        return ref


class RNNCell(RNNCellBase):
    """Reference Elman cell: ``cell(input (N, I) | (I,), hx=None) -> h'``.

    ``nonlinearity``: "tanh" or "relu". ``from_float`` takes an ``nnx.SimpleCell``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None,
                 weight_qparams_dict: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity!r} (expected 'tanh' or "
                             "'relu')")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype,
                         weight_qparams_dict, rngs=rngs)
        self.nonlinearity = nonlinearity

    def _get_name(self) -> str:
        return "QuantizedRNNCell(Reference)"

    def __call__(self, input: Any, hx: Any = None) -> jax.Array:
        x, hx, batched = self._prepare(input, hx)
        h = self._zeros(x) if hx is None else jnp.asarray(hx, jnp.float32)
        gates_ih, gates_hh = self._gates(x, h)
        act = jnp.tanh if self.nonlinearity == "tanh" else jax.nn.relu
        out = act(gates_ih + gates_hh)
        return out if batched else out[0]

    forward = __call__

    @classmethod
    def from_float(cls, mod: Any, weight_qparams_dict: dict[str, Any]) -> RNNCell:
        """From an ``nnx.SimpleCell`` (tanh or relu, not residual)."""
        from jaxq.nn.quantized.dynamic.rnn import RNNCell as DynamicRNNCell
        if not isinstance(mod, nnx.SimpleCell):
            raise TypeError(f"nnqr.RNNCell.from_float: mod must be an nnx.SimpleCell; got "
                            f"{type(mod).__name__}")
        kwargs = DynamicRNNCell._from_float_kwargs(mod)
        return cls._from_flax(mod, weight_qparams_dict, **kwargs)


class LSTMCell(RNNCellBase):
    """Reference LSTM cell: ``cell(input, hx=(h, c) | None) -> (h', c')``.

    ``from_float`` takes an ``nnx.LSTMCell`` / ``nnx.OptimizedLSTMCell`` (Flax's carry is
    ``(c, h)``, torch's and this cell's ``(h, c)``).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None,
                 weight_qparams_dict: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype,
                         weight_qparams_dict, rngs=rngs)

    def _get_name(self) -> str:
        return "QuantizedLSTMCell(Reference)"

    def __call__(self, input: Any, hx: Any = None) -> tuple[jax.Array, jax.Array]:
        x, hx, batched = self._prepare(input, hx)
        if hx is None:
            h = c = self._zeros(x)
        else:
            h, c = (jnp.asarray(a, jnp.float32) for a in hx)
        gates_ih, gates_hh = self._gates(x, h)
        i, f, g, o = jnp.split(gates_ih + gates_hh, 4, axis=-1)
        c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        return (h_new, c_new) if batched else (h_new[0], c_new[0])

    forward = __call__

    @classmethod
    def from_float(cls, mod: Any, weight_qparams_dict: dict[str, Any],
                   use_precomputed_fake_quant: bool = False) -> LSTMCell:
        """From an ``nnx.LSTMCell`` / ``nnx.OptimizedLSTMCell`` (sigmoid / tanh)."""
        del use_precomputed_fake_quant  # torch's signature; unused there too
        if not isinstance(mod, (nnx.LSTMCell, nnx.OptimizedLSTMCell)):
            raise TypeError(f"nnqr.LSTMCell.from_float: mod must be an nnx.LSTMCell; got "
                            f"{type(mod).__name__}")
        return cls._from_flax(mod, weight_qparams_dict)


class GRUCell(RNNCellBase):
    """Reference GRU cell: ``cell(input, hx=None) -> h'``. ``from_float`` takes an
    ``nnx.GRUCell`` (no recurrent bias in Flax: ``b_hh = 0``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None,
                 weight_qparams_dict: dict[str, Any] | None = None, *,
                 rngs: nnx.Rngs | None = None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype,
                         weight_qparams_dict, rngs=rngs)

    def _get_name(self) -> str:
        return "QuantizedGRUCell(Reference)"

    def __call__(self, input: Any, hx: Any = None) -> jax.Array:
        x, hx, batched = self._prepare(input, hx)
        h = self._zeros(x) if hx is None else jnp.asarray(hx, jnp.float32)
        gates_ih, gates_hh = self._gates(x, h)
        ih_r, ih_z, ih_n = jnp.split(gates_ih, 3, axis=-1)
        hh_r, hh_z, hh_n = jnp.split(gates_hh, 3, axis=-1)
        r = jax.nn.sigmoid(ih_r + hh_r)
        z = jax.nn.sigmoid(ih_z + hh_z)
        n = jnp.tanh(ih_n + r * hh_n)
        out = (h - n) * z + n
        return out if batched else out[0]

    forward = __call__

    @classmethod
    def from_float(cls, mod: Any, weight_qparams_dict: dict[str, Any]) -> GRUCell:
        """From an ``nnx.GRUCell`` (sigmoid gates, tanh)."""
        if not isinstance(mod, nnx.GRUCell):
            raise TypeError(f"nnqr.GRUCell.from_float: mod must be an nnx.GRUCell; got "
                            f"{type(mod).__name__}")
        return cls._from_flax(mod, weight_qparams_dict)
