"""jaxq.nn.quantized.dynamic multi-layer LSTM / GRU (lax.scan) vs torch's
(``torch.ao.nn.quantized.dynamic``).

The cells, the gate GEMM and from_float are in test_rnn.py, whose helpers (and tolerances:
outputs through sigmoid/tanh within ``rtol = atol = 1e-6``) this file shares.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx
from torch.ao.nn.quantized import dynamic as tnnqd

from jaxq.nn.quantized.dynamic import rnn as nnqd
from tests.nn.quantized.dynamic.test_rnn import CALL, TIGHT, _assert_close
from tests.nn.quantized.torch_helpers import jaxq_weight

# ---------------------------------------------------------------------------------------
# Multi-layer LSTM / GRU (lax.scan) vs torch.quantized_lstm / quantized_gru
# ---------------------------------------------------------------------------------------

def _torch_quantized_rnn(mode, input_size, hidden_size, num_layers, bidirectional,
                         batch_first, qconfig=tq.default_dynamic_qconfig):
    torch.manual_seed(num_layers + 2 * bidirectional)
    float_rnn = getattr(torch.nn, mode)(input_size, hidden_size, num_layers,
                                        batch_first=batch_first, bidirectional=bidirectional)
    float_rnn.qconfig = qconfig
    return getattr(tnnqd, mode).from_float(float_rnn), float_rnn


def _rnn_outputs(mode, result):
    output, hidden = result
    hidden = list(hidden) if mode == "LSTM" else [hidden]
    return [np.asarray(t) for t in [output] + hidden]


RNN_CALL = nnx.jit(lambda m, x, hx: m(x, hx))
RNN_CALL_NO_HX = nnx.jit(lambda m, x: m(x))


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first",
                         [(1, False, False), (2, True, True)])
def test_rnn_vs_torch(rng, mode, num_layers, bidirectional, batch_first):
    ref, _ = _torch_quantized_rnn(mode, 5, 4, num_layers, bidirectional, batch_first)
    wb = ref._weight_bias()
    weights = {k: jaxq_weight(v) for k, v in wb["weight"].items()}
    weights.update({k: v.detach().numpy() for k, v in wb["bias"].items()})
    mod = getattr(nnqd, mode)(5, 4, num_layers, batch_first=batch_first,
                              bidirectional=bidirectional)
    mod.set_weight_bias(weights)
    for k, v in mod.get_weight().items():
        np.testing.assert_array_equal(np.asarray(v.int_repr()),
                                      wb["weight"][k].int_repr().numpy())
    layers = num_layers * (2 if bidirectional else 1)
    x = (rng.normal(size=(3, 6, 5) if batch_first else (6, 3, 5)) * 2).astype(np.float32)
    with torch.no_grad():
        expected = _rnn_outputs(mode, ref(torch.tensor(x)))
    got = _rnn_outputs(mode, RNN_CALL_NO_HX(mod, x))
    assert got[0].shape == (x.shape[0], x.shape[1], 4 * (1 + bidirectional))
    _assert_close(got, expected, False)
    h0 = rng.normal(size=(layers, 3, 4)).astype(np.float32)
    hx = (h0, rng.normal(size=(layers, 3, 4)).astype(np.float32)) if mode == "LSTM" else h0
    torch_hx = tuple(map(torch.tensor, hx)) if mode == "LSTM" else torch.tensor(hx)
    with torch.no_grad():
        expected = _rnn_outputs(mode, ref(torch.tensor(x), torch_hx))
    _assert_close(_rnn_outputs(mode, RNN_CALL(mod, x, hx)), expected, False)


def test_rnn_sequence_quantization_is_whole_sequence(rng):
    """The input GEMM takes its activation qparams from the whole (T, N, I) sequence (as
    torch's CPU FullLayer); per-step qparams (the cell) would give other results."""
    ref, _ = _torch_quantized_rnn("GRU", 5, 4, 1, False, False)
    wb = ref._weight_bias()
    mod = nnqd.GRU(5, 4)
    mod.set_weight_bias({**{k: jaxq_weight(v) for k, v in wb["weight"].items()},
                         **{k: v.detach().numpy() for k, v in wb["bias"].items()}})
    x = rng.normal(size=(4, 2, 5)).astype(np.float32)
    x[0] *= 10  # the first step sets the sequence's range
    with torch.no_grad():
        expected = ref(torch.tensor(x))[0].numpy()
    got = np.asarray(RNN_CALL_NO_HX(mod, x)[0])
    np.testing.assert_allclose(got, expected, **TIGHT)
    cell = nnqd.GRUCell(5, 4)
    cell.set_weight_bias(mod.get_weight()["weight_ih_l0"],
                         mod.get_weight()["weight_hh_l0"], mod.get_bias()["bias_ih_l0"],
                         mod.get_bias()["bias_hh_l0"])
    h = np.zeros((2, 4), np.float32)
    steps = []
    for t in range(4):
        h = np.asarray(CALL(cell, x[t], h))
        steps.append(h)
    assert not np.allclose(np.stack(steps)[1:], expected[1:], rtol=1e-4, atol=1e-4)


def test_rnn_float16_vs_torch(rng):
    ref, float_rnn = _torch_quantized_rnn("LSTM", 5, 4, 2, False, False,
                                          qconfig=tq.float16_dynamic_qconfig)
    mod = nnqd.LSTM(5, 4, 2, dtype=torch.float16)
    mod.set_weight_bias({k: v.detach().numpy() for k, v in float_rnn.state_dict().items()})
    x = rng.normal(size=(5, 3, 5)).astype(np.float32)
    with torch.no_grad():
        expected = _rnn_outputs("LSTM", ref(torch.tensor(x)))
    for g, e in zip(_rnn_outputs("LSTM", RNN_CALL_NO_HX(mod, x)), expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_rnn_no_recompilation(rng):
    mod = nnqd.LSTM(3, 2, num_layers=2, bidirectional=True)
    traces = []

    @nnx.jit
    def run(m, x):
        traces.append(1)
        return m(x)

    for _ in range(3):
        out, (h, c) = run(mod, rng.normal(size=(4, 2, 3)).astype(np.float32))
    assert out.shape == (4, 2, 4) and h.shape == c.shape == (4, 2, 2)
    assert len(traces) == 1
    # one scan per layer and direction, not a Python loop over time
    jaxpr = str(jax.make_jaxpr(lambda x: mod(x))(jnp.ones((4, 2, 3))))
    assert jaxpr.count("scan[") == 4


def test_rnn_bad_input():
    with pytest.raises(ValueError, match="dropout"):
        nnqd.LSTM(3, 2, dropout=1.5)
    with pytest.warns(UserWarning, match="dropout"):
        nnqd.GRU(3, 2, dropout=0.5)
    with pytest.raises(ValueError, match="dtype"):
        nnqd.GRU(3, 2, dtype="quint8")
    lstm = nnqd.LSTM(3, 2, num_layers=2)
    with pytest.raises(ValueError, match="3 dimensions"):
        lstm(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="input_size"):
        lstm(jnp.ones((4, 2, 5)))
    with pytest.raises(ValueError, match=r"Expected hidden\[0\] size \(2, 2, 2\)"):
        lstm(jnp.ones((4, 2, 3)), (jnp.ones((1, 2, 2)), jnp.ones((2, 2, 2))))
    with pytest.raises(ValueError, match=r"Expected hidden\[1\] size"):
        lstm(jnp.ones((4, 2, 3)), (jnp.ones((2, 2, 2)), jnp.ones((2, 3, 2))))
    with pytest.raises(TypeError, match="hx must be a tuple"):
        lstm(jnp.ones((4, 2, 3)), jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="sequence length"):
        lstm(jnp.ones((0, 2, 3)))
    with pytest.raises(ValueError, match="missing 'weight_ih_l1'"):
        lstm.set_weight_bias({k: v for k, v in lstm.get_weight().items()
                              if k != "weight_ih_l1"})
    gru = nnqd.GRU(3, 2, batch_first=True)
    with pytest.raises(ValueError, match=r"Expected hidden size \(1, 4, 2\)"):
        gru(jnp.ones((4, 5, 3)), jnp.ones((1, 5, 2)))
