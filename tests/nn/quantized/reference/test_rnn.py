"""jaxq.nn.quantized.reference RNNCell / LSTMCell / GRUCell vs torch's reference cells.

Weights are bit-exact; the cell outputs are compared with rtol/atol 1e-5 (XLA's
sigmoid / tanh and summation order differ from ATen's by a few ulp).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.nn.quantized import reference as tref_modules

from jaxq.nn.quantized.dynamic import LSTMCell as DynamicLSTMCell
from jaxq.nn.quantized.reference import GRUCell, LSTMCell, RNNCell
from tests.nn.quantized.reference._helpers import random_weight_qparams

_forward = nnx.jit(lambda m, x, h: m(x, h))


def _flax_cell(kind, tcell):
    """The Flax cell holding ``tcell``'s weights (torch gate order)."""
    w_ih, w_hh = tcell.weight_ih.detach().numpy(), tcell.weight_hh.detach().numpy()
    b_ih, b_hh = tcell.bias_ih.detach().numpy(), tcell.bias_hh.detach().numpy()
    hidden, inputs = w_hh.shape[1], w_ih.shape[1]
    rngs = nnx.Rngs(0)
    if kind == "lstm":
        cell = nnx.OptimizedLSTMCell(inputs, hidden, rngs=rngs)
        cell.dense_i.kernel.set_value(jnp.asarray(w_ih.T))
        cell.dense_h.kernel.set_value(jnp.asarray(w_hh.T))
        cell.dense_h.bias.set_value(jnp.asarray(b_ih + b_hh))
    elif kind == "gru":
        cell = nnx.GRUCell(inputs, hidden, rngs=rngs)
        cell.dense_i.kernel.set_value(jnp.asarray(w_ih.T))
        cell.dense_i.bias.set_value(jnp.asarray(b_ih))
        cell.dense_h.kernel.set_value(jnp.asarray(w_hh.T))
    else:
        cell = nnx.SimpleCell(inputs, hidden, rngs=rngs)
        cell.dense_i.kernel.set_value(jnp.asarray(w_ih.T))
        cell.dense_i.bias.set_value(jnp.asarray(b_ih + b_hh))
        cell.dense_h.kernel.set_value(jnp.asarray(w_hh.T))
    return cell


def _torch_cell(kind, rng):
    torch.manual_seed(int(rng.integers(0, 2**31)))
    tcell = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell,
             "gru": torch.nn.GRUCell}[kind](5, 4)
    if kind != "rnn":
        with torch.no_grad():  # Flax folds / drops some biases: keep what maps exactly.
            (tcell.bias_ih if kind == "lstm" else tcell.bias_hh).zero_()
    else:
        with torch.no_grad():
            tcell.bias_hh.zero_()
    return tcell


@pytest.mark.parametrize("kind,qscheme,dtype", [
    ("rnn", "per_tensor", "quint8"), ("rnn", "per_channel", "qint8"),
    ("lstm", "per_channel", "qint8"), ("gru", "per_tensor", "qint8")])
def test_matches_torch(rng, kind, qscheme, dtype):
    tcell = _torch_cell(kind, rng)
    qparams_dict = {
        "weight_ih": random_weight_qparams(rng, tcell.weight_ih.detach().numpy(), qscheme,
                                           dtype),
        "weight_hh": random_weight_qparams(rng, tcell.weight_hh.detach().numpy(), qscheme,
                                           dtype),
        "is_decomposed": False}
    tcls = {"rnn": tref_modules.RNNCell, "lstm": tref_modules.LSTMCell,
            "gru": tref_modules.GRUCell}[kind]
    jcls = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}[kind]
    tref = tcls.from_float(tcell, qparams_dict)
    ref = jcls.from_float(_flax_cell(kind, tcell), qparams_dict)
    for name in ("ih", "hh"):
        np.testing.assert_array_equal(np.asarray(getattr(ref, f"get_weight_{name}")()),
                                      getattr(tref, f"get_weight_{name}")().detach().numpy())
        np.testing.assert_array_equal(
            np.asarray(getattr(ref, f"get_quantized_weight_{name}")().int_repr()),
            getattr(tref, f"get_quantized_weight_{name}")().int_repr().numpy())
    x = rng.normal(size=(3, 5)).astype(np.float32)
    h = rng.normal(size=(3, 4)).astype(np.float32)
    hx_t = (torch.from_numpy(h), torch.from_numpy(h * 0.5)) if kind == "lstm" \
        else torch.from_numpy(h)
    hx_j = (jnp.asarray(h), jnp.asarray(h * 0.5)) if kind == "lstm" else jnp.asarray(h)
    expected = tref(torch.from_numpy(x), hx_t)
    got = _forward(ref, jnp.asarray(x), hx_j)
    for g, e in zip(got if kind == "lstm" else [got],
                    expected if kind == "lstm" else [expected]):
        np.testing.assert_allclose(np.asarray(g), e.detach().numpy(), rtol=1e-5, atol=1e-5)
    assert ref._get_name() == tref._get_name()
    # Unbatched input, no hidden state.
    expected = tref(torch.from_numpy(x[0]))
    got = ref(jnp.asarray(x[0]))
    first = (lambda v: v[0]) if kind == "lstm" else (lambda v: v)
    np.testing.assert_allclose(np.asarray(first(got)), first(expected).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_from_reference_dynamic_cell(rng):
    tcell = _torch_cell("lstm", rng)
    qparams = {"qscheme": torch.per_tensor_affine, "dtype": torch.qint8,
               "scale": torch.tensor(0.01), "zero_point": torch.tensor(0)}
    qparams_dict = {"weight_ih": qparams, "weight_hh": qparams, "is_decomposed": False}
    tref = tref_modules.LSTMCell.from_float(tcell, qparams_dict)
    ref = LSTMCell.from_float(_flax_cell("lstm", tcell), qparams_dict)
    tdyn = torch.ao.nn.quantized.dynamic.LSTMCell.from_reference(tref)
    dyn = DynamicLSTMCell.from_reference(ref)
    x = rng.normal(size=(2, 5)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(dyn(jnp.asarray(x))[0]),
                               tdyn(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-5,
                               atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="nonlinearity"):
        RNNCell(3, 2, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="weight_qparams_dict"):
        LSTMCell(3, 2, weight_qparams_dict={"weight_ih": None})
    qparams = {"qscheme": "per_channel_affine_float_qparams", "dtype": "quint8",
               "scale": jnp.ones(8), "zero_point": jnp.zeros(8), "axis": 0}
    with pytest.raises(ValueError, match="not supported"):
        LSTMCell(3, 2, weight_qparams_dict={"weight_ih": qparams, "weight_hh": qparams,
                                            "is_decomposed": False})
    with pytest.raises(ValueError, match="2-D"):
        GRUCell(3, 2)(jnp.ones((1, 1, 3)))
    with pytest.raises(TypeError, match="nnx.GRUCell"):
        GRUCell.from_float(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), None)
