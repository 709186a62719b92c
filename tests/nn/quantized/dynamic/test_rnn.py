"""jaxq.nn.quantized.dynamic RNN cells vs torch.ao.nn.quantized.dynamic (the multi-layer
LSTM / GRU are in test_rnn_multilayer.py, which shares this file's helpers).

Tolerances: the gate GEMMs are compared bit for bit (``dynamic_gate_linear`` vs
``quantized::linear_dynamic``, and the relu ``RNNCell``, which has no transcendental).
Outputs through sigmoid/tanh are compared with ``rtol = atol = 1e-6`` (a few float32
ulps): XLA's sigmoid/tanh and ATen's vectorized (Sleef) ones differ by up to ~2 ulp.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.qconfig as jqconfig
import torch.ao.quantization as tq
from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized.dynamic import rnn as nnqd
from jaxq.nn.quantized.dynamic import Linear as DynamicLinear
from jaxq.nn.quantized.functional import pack_linear_weight
from torch.ao.nn.quantized import dynamic as tnnqd
from tests.nn.quantized.torch_helpers import jaxq_weight, random_weight

TIGHT = dict(rtol=1e-6, atol=1e-6)
TORCH_CELLS = {"RNNCell": torch.nn.RNNCell, "LSTMCell": torch.nn.LSTMCell,
               "GRUCell": torch.nn.GRUCell}
CELL_KINDS = [("RNNCell", "tanh"), ("RNNCell", "relu"), ("LSTMCell", None),
              ("GRUCell", None)]


def _kwargs(nonlinearity):
    return {} if nonlinearity is None else {"nonlinearity": nonlinearity}


def _torch_quantized_cell(kind, nonlinearity, input_size, hidden_size, seed,
                          qconfig=tq.default_dynamic_qconfig):
    torch.manual_seed(seed)
    cell = TORCH_CELLS[kind](input_size, hidden_size, **_kwargs(nonlinearity))
    cell.qconfig = qconfig
    return getattr(tnnqd, kind).from_float(cell), cell


def _load_from_torch(kind, nonlinearity, qcell, input_size, hidden_size):
    wb = qcell._weight_bias()
    mod = getattr(nnqd, kind)(input_size, hidden_size, **_kwargs(nonlinearity))
    mod.set_weight_bias(jaxq_weight(wb["weight"]["weight_ih"]),
                        jaxq_weight(wb["weight"]["weight_hh"]),
                        wb["bias"]["bias_ih"].detach().numpy(),
                        wb["bias"]["bias_hh"].detach().numpy())
    return mod


def _torch_call(qcell, kind, x, hx):
    with torch.no_grad():
        if kind == "LSTMCell":
            hx = None if hx is None else tuple(torch.tensor(v) for v in hx)
            return [t.numpy() for t in qcell(torch.tensor(x), hx)]
        return [qcell(torch.tensor(x), None if hx is None else torch.tensor(hx)).numpy()]


def _as_list(out):
    return [np.asarray(t) for t in (out if isinstance(out, tuple) else (out,))]


def _random_hx(rng, kind, shape):
    if kind == "LSTMCell":
        return (rng.normal(size=shape).astype(np.float32),
                rng.normal(size=shape).astype(np.float32) * 2)
    return rng.normal(size=shape).astype(np.float32)


def _assert_close(got, expected, exact):
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == np.float32
        if exact:
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, **TIGHT)


CALL = nnx.jit(lambda m, x, hx: m(x, hx))
CALL_NO_HX = nnx.jit(lambda m, x: m(x))
FLOAT_CALL = nnx.jit(lambda cell, carry, x: cell(carry, x))


# ---------------------------------------------------------------------------------------
# Gate GEMM: bit-exact vs quantized::linear_dynamic
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(4, 6), (3, 2, 6), (1, 6)])
def test_gate_linear_bit_exact(rng, per_channel, shape):
    wq = random_weight(rng, (8, 6), per_channel)
    bias = rng.normal(size=8).astype(np.float32)
    packed = torch.ops.quantized.linear_prepack(wq, torch.tensor(bias))
    x = rng.normal(size=shape).astype(np.float32) * 3
    expected = torch.ops.quantized.linear_dynamic(torch.tensor(x), packed, True).numpy()
    got = jax.jit(nnqd.dynamic_gate_linear)(jnp.asarray(x),
                                           pack_linear_weight(jaxq_weight(wq)), bias)
    np.testing.assert_array_equal(np.asarray(got), expected)


# ---------------------------------------------------------------------------------------
# Cells vs torch with torch's exact int8 weights
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,nonlinearity", CELL_KINDS)
@pytest.mark.parametrize("batch", [1, 5])
def test_cell_vs_torch(rng, kind, nonlinearity, batch):
    qcell, _ = _torch_quantized_cell(kind, nonlinearity, 7, 6, seed=batch)
    mod = _load_from_torch(kind, nonlinearity, qcell, 7, 6)
    exact = nonlinearity == "relu"
    for _ in range(3):
        x = (rng.normal(size=(batch, 7)) * 3).astype(np.float32)
        hx = _random_hx(rng, kind, (batch, 6))
        _assert_close(_as_list(CALL(mod, x, hx)), _torch_call(qcell, kind, x, hx), exact)
    # hx=None means zeros
    x = rng.normal(size=(batch, 7)).astype(np.float32)
    _assert_close(_as_list(CALL_NO_HX(mod, x)), _torch_call(qcell, kind, x, None), exact)


@pytest.mark.parametrize("kind,nonlinearity", CELL_KINDS)
def test_cell_edge_cases(rng, kind, nonlinearity):
    qcell, _ = _torch_quantized_cell(kind, nonlinearity, 4, 3, seed=1)
    mod = _load_from_torch(kind, nonlinearity, qcell, 4, 3)
    exact = nonlinearity == "relu"
    # all-zero input and state (min == max == 0)
    zeros = np.zeros((2, 4), np.float32)
    _assert_close(_as_list(CALL_NO_HX(mod, zeros)), _torch_call(qcell, kind, zeros, None),
                  exact)
    # constant input (min == max != 0)
    const = np.full((2, 4), 1.5, np.float32)
    hx = _random_hx(rng, kind, (2, 3))
    _assert_close(_as_list(CALL(mod, const, hx)), _torch_call(qcell, kind, const, hx),
                  exact)
    # unbatched (I,) input: torch's dynamic cells take only (N, I); compare with N=1
    x = rng.normal(size=4).astype(np.float32)
    hx = _random_hx(rng, kind, (3,))
    hx_batched = tuple(v[None] for v in hx) if kind == "LSTMCell" else hx[None]
    expected = [e[0] for e in _torch_call(qcell, kind, x[None], hx_batched)]
    got = _as_list(CALL(mod, x, hx))
    assert all(g.shape == (3,) for g in got)
    _assert_close(got, expected, exact)
    got_none = _as_list(CALL_NO_HX(mod, x))
    _assert_close(got_none, [e[0] for e in _torch_call(qcell, kind, x[None], None)], exact)


def test_cell_no_recompilation(rng):
    qcell, _ = _torch_quantized_cell("LSTMCell", None, 5, 4, seed=2)
    mod = _load_from_torch("LSTMCell", None, qcell, 5, 4)
    traces = []

    @nnx.jit
    def step(m, x, hx):
        traces.append(1)
        return m(x, hx)

    for _ in range(3):
        x = rng.normal(size=(3, 5)).astype(np.float32)
        hx = _random_hx(rng, "LSTMCell", (3, 4))
        _assert_close(_as_list(step(mod, x, hx)), _torch_call(qcell, "LSTMCell", x, hx),
                      False)
    assert len(traces) == 1


def test_cell_weights_round_trip(rng):
    qcell, _ = _torch_quantized_cell("GRUCell", None, 5, 4, seed=3,
                                     qconfig=tq.per_channel_dynamic_qconfig)
    mod = _load_from_torch("GRUCell", None, qcell, 5, 4)
    wb = qcell._weight_bias()
    for name, getter in (("weight_ih", mod.weight_ih), ("weight_hh", mod.weight_hh)):
        got = getter()
        assert isinstance(got, QTensor)
        np.testing.assert_array_equal(np.asarray(got.int_repr()),
                                      wb["weight"][name].int_repr().numpy())
        np.testing.assert_array_equal(np.asarray(got.scale, np.float32),
                                      wb["weight"][name].q_per_channel_scales().numpy()
                                      .astype(np.float32))
    np.testing.assert_array_equal(np.asarray(mod.get_bias()["bias_hh"]),
                                  wb["bias"]["bias_hh"].detach().numpy())
    # torch's dict form of set_weight_bias
    other = nnqd.GRUCell(5, 4)
    other.set_weight_bias({"weight": mod.get_weight(), "bias": mod.get_bias()})
    x = rng.normal(size=(2, 5)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(other(x)), np.asarray(mod(x)))


@pytest.mark.parametrize("kind,nonlinearity", [("RNNCell", "tanh"), ("LSTMCell", None)])
def test_cell_without_bias(rng, kind, nonlinearity):
    w_ih = random_weight(rng, ((4 if kind == "LSTMCell" else 1) * 3, 5), False)
    w_hh = random_weight(rng, ((4 if kind == "LSTMCell" else 1) * 3, 3), False)
    ref = getattr(tnnqd, kind)(5, 3, bias=False, **_kwargs(nonlinearity))
    ref.set_weight_bias({"weight": {"weight_ih": w_ih, "weight_hh": w_hh},
                         "bias": {"bias_ih": None, "bias_hh": None}})
    mod = getattr(nnqd, kind)(5, 3, bias=False, **_kwargs(nonlinearity))
    mod.set_weight_bias(jaxq_weight(w_ih), jaxq_weight(w_hh), None, None)
    x = rng.normal(size=(2, 5)).astype(np.float32)
    hx = _random_hx(rng, kind, (2, 3))
    _assert_close(_as_list(CALL(mod, x, hx)), _torch_call(ref, kind, x, hx), False)


# ---------------------------------------------------------------------------------------
# from_float: Flax cells -> torch's gate layout
# ---------------------------------------------------------------------------------------

def _flax_cell_and_torch_twin(kind, nonlinearity, input_size, hidden_size, qconfig_name):
    """A Flax cell and a torch float cell with the same float math."""
    # lecun_normal instead of the default orthogonal recurrent init: no QR to compile
    init = dict(recurrent_kernel_init=nnx.initializers.lecun_normal(), rngs=nnx.Rngs(0))
    H = hidden_size
    if kind == "RNNCell":
        act = nnx.relu if nonlinearity == "relu" else nnx.tanh
        cell = nnx.SimpleCell(input_size, H, activation_fn=act, **init)
        cell.dense_i.bias.set_value(jnp.linspace(-0.5, 0.5, H))
        w_ih, w_hh = cell.dense_i.kernel.get_value().T, cell.dense_h.kernel.get_value().T
        b_ih, b_hh = cell.dense_i.bias.get_value(), np.zeros(H, np.float32)
    elif kind == "GRUCell":
        cell = nnx.GRUCell(input_size, H, **init)
        cell.dense_i.bias.set_value(jnp.linspace(-0.5, 0.5, 3 * H))
        w_ih, w_hh = cell.dense_i.kernel.get_value().T, cell.dense_h.kernel.get_value().T
        b_ih, b_hh = cell.dense_i.bias.get_value(), np.zeros(3 * H, np.float32)
    elif kind == "OptimizedLSTMCell":
        cell = nnx.OptimizedLSTMCell(input_size, H, **init)
        cell.dense_h.bias.set_value(jnp.linspace(-0.5, 0.5, 4 * H))
        w_ih, w_hh = cell.dense_i.kernel.get_value().T, cell.dense_h.kernel.get_value().T
        b_ih, b_hh = np.zeros(4 * H, np.float32), cell.dense_h.bias.get_value()
    else:
        cell = nnx.LSTMCell(input_size, H, **init)
        hiddens = (cell.hi, cell.hf, cell.hg, cell.ho)
        for k, m in enumerate(hiddens):
            m.bias.set_value(jnp.full((H,), 0.25 * k - 0.3))
        inputs = (cell.ii, cell.if_, cell.ig, cell.io)
        w_ih = np.concatenate([m.kernel.get_value().T for m in inputs])
        w_hh = np.concatenate([m.kernel.get_value().T for m in hiddens])
        b_ih = np.zeros(4 * H, np.float32)
        b_hh = np.concatenate([m.bias.get_value() for m in hiddens])
    torch_kind = "LSTMCell" if "LSTM" in kind else kind
    tcell = TORCH_CELLS[torch_kind](input_size, H, **_kwargs(nonlinearity))
    with torch.no_grad():
        for name, value in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih),
                            ("bias_hh", b_hh)):
            getattr(tcell, name).copy_(torch.tensor(np.asarray(value)))
    cell.qconfig = getattr(jqconfig, qconfig_name)
    tcell.qconfig = getattr(tq, qconfig_name)
    return cell, tcell, torch_kind


# hidden sizes with equal gate widths (G*H = 12) so the eager observer ops share shapes
HIDDEN = {"RNNCell": 12, "GRUCell": 4, "LSTMCell": 3, "OptimizedLSTMCell": 3}


@pytest.mark.parametrize("kind,nonlinearity,qconfig_name", [
    ("RNNCell", "tanh", "default_dynamic_qconfig"),
    ("RNNCell", "relu", "default_dynamic_qconfig"),
    ("LSTMCell", None, "default_dynamic_qconfig"),
    ("OptimizedLSTMCell", None, "default_dynamic_qconfig"),
    ("GRUCell", None, "default_dynamic_qconfig"),
    ("LSTMCell", None, "per_channel_dynamic_qconfig"),
    ("GRUCell", None, "per_channel_dynamic_qconfig"),
    ("RNNCell", "tanh", "float16_dynamic_qconfig"),
    ("LSTMCell", None, "float16_dynamic_qconfig"),
])
def test_from_float_vs_torch(rng, kind, nonlinearity, qconfig_name):
    hidden = HIDDEN[kind]
    cell, tcell, torch_kind = _flax_cell_and_torch_twin(kind, nonlinearity, 6, hidden,
                                                        qconfig_name)
    mod = getattr(nnqd, torch_kind).from_float(cell)
    ref = getattr(tnnqd, torch_kind).from_float(tcell)
    fp16 = qconfig_name.startswith("float16")
    assert mod.weight_dtype == ("float16" if fp16 else "qint8")
    if nonlinearity is not None:
        assert mod.nonlinearity == nonlinearity
    if not fp16:
        wb = ref._weight_bias()
        np.testing.assert_array_equal(np.asarray(mod.weight_ih().int_repr()),
                                      wb["weight"]["weight_ih"].int_repr().numpy())
        np.testing.assert_array_equal(np.asarray(mod.weight_hh().int_repr()),
                                      wb["weight"]["weight_hh"].int_repr().numpy())
    x = (rng.normal(size=(3, 6)) * 2).astype(np.float32)
    hx = _random_hx(rng, torch_kind, (3, hidden))
    got = _as_list(CALL(mod, x, hx))
    expected = _torch_call(ref, torch_kind, x, hx)
    if fp16:  # fbgemm's fp16 GEMM sums in another order
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    else:
        _assert_close(got, expected, nonlinearity == "relu")
    # and close to the float Flax cell (the carry conventions differ: Flax (c, h))
    if torch_kind == "LSTMCell":
        (c_f, h_f), _ = FLOAT_CALL(cell, (hx[1], hx[0]), x)
        np.testing.assert_allclose(got[0], np.asarray(h_f), atol=0.1)
        np.testing.assert_allclose(got[1], np.asarray(c_f), atol=0.1)
    else:
        h_f, _ = FLOAT_CALL(cell, hx, x)
        np.testing.assert_allclose(got[0], np.asarray(h_f), atol=0.1)


def test_cell_base_from_float_picks_the_cell():
    cell = nnx.GRUCell(6, HIDDEN["GRUCell"],
                       recurrent_kernel_init=nnx.initializers.lecun_normal(),
                       rngs=nnx.Rngs(0))
    cell.qconfig = None  # torch: a None qconfig falls back to default_dynamic_qconfig
    mod = nnqd.RNNCellBase.from_float(cell)
    assert type(mod) is nnqd.GRUCell and mod.weight_dtype == "qint8"


def test_quantize_dynamic_converts_flax_cells():
    from jaxq.eager.quantize import quantize_dynamic

    class Model(nnx.Module):
        def __init__(self):
            init = dict(recurrent_kernel_init=nnx.initializers.lecun_normal())
            self.lstm = nnx.LSTMCell(6, HIDDEN["LSTMCell"], **init, rngs=nnx.Rngs(0))
            self.gru = nnx.GRUCell(6, HIDDEN["GRUCell"], **init, rngs=nnx.Rngs(1))
            self.simple = nnx.SimpleCell(6, HIDDEN["RNNCell"], **init, rngs=nnx.Rngs(2))

    model = Model()
    mapping = {nnx.LSTMCell: nnqd.LSTMCell, nnx.GRUCell: nnqd.GRUCell,
               nnx.SimpleCell: nnqd.RNNCell}
    qmodel = quantize_dynamic(model, {nnx.LSTMCell, nnx.GRUCell, nnx.SimpleCell},
                              mapping=mapping)
    for name, cls in (("lstm", nnqd.LSTMCell), ("gru", nnqd.GRUCell),
                      ("simple", nnqd.RNNCell)):
        converted = getattr(qmodel, name)
        assert type(converted) is cls
        float_cell = getattr(model, name)
        float_cell.qconfig = jqconfig.default_dynamic_qconfig
        direct = cls.from_float(float_cell)
        for getter in ("weight_ih", "weight_hh"):
            np.testing.assert_array_equal(np.asarray(getattr(converted, getter)().int_repr()),
                                          np.asarray(getattr(direct, getter)().int_repr()))


def test_quantize_dynamic_defaults_convert_cells_as_a_whole():
    """With the default qconfig_spec (which names nnx.Linear) and mapping, a Flax cell is
    converted as one unit: its gate Linears are not converted first on their own."""
    from jaxq.eager.quantize import quantize_dynamic

    class Model(nnx.Module):
        def __init__(self):
            self.lstm = nnx.LSTMCell(6, 4, rngs=nnx.Rngs(0))
            self.fused = nnx.OptimizedLSTMCell(6, 4, rngs=nnx.Rngs(1))
            self.gru = nnx.GRUCell(6, 4, rngs=nnx.Rngs(2))
            self.simple = nnx.SimpleCell(6, 4, rngs=nnx.Rngs(3))
            self.head = nnx.Linear(4, 2, rngs=nnx.Rngs(4))

    model = Model()
    qmodel = quantize_dynamic(model)
    expected = {"lstm": nnqd.LSTMCell, "fused": nnqd.LSTMCell, "gru": nnqd.GRUCell,
                "simple": nnqd.RNNCell, "head": DynamicLinear}
    for name, cls in expected.items():
        assert type(getattr(qmodel, name)) is cls, name
    for name in ("lstm", "fused", "gru", "simple"):
        float_cell = getattr(model, name)
        float_cell.qconfig = jqconfig.default_dynamic_qconfig
        direct = expected[name].from_float(float_cell)
        for getter in ("weight_ih", "weight_hh"):
            np.testing.assert_array_equal(
                np.asarray(getattr(getattr(qmodel, name), getter)().int_repr()),
                np.asarray(getattr(direct, getter)().int_repr()))


def test_from_reference_protocol(rng):
    """torch's from_reference protocol, fed by a stand-in reference module."""
    w_ih, w_hh = random_weight(rng, (12, 5), True), random_weight(rng, (12, 3), False)
    b_ih, b_hh = rng.normal(size=12).astype(np.float32), rng.normal(size=12).astype(np.float32)
    ref_cell = SimpleNamespace(
        input_size=5, hidden_size=3, bias=True, weight_ih_dtype=torch.qint8,
        bias_ih=b_ih, bias_hh=b_hh, get_quantized_weight_ih=lambda: jaxq_weight(w_ih),
        get_quantized_weight_hh=lambda: jaxq_weight(w_hh))
    mod = nnqd.LSTMCell.from_reference(ref_cell)
    expected = tnnqd.LSTMCell(5, 3)
    expected.set_weight_bias({"weight": {"weight_ih": w_ih, "weight_hh": w_hh},
                              "bias": {"bias_ih": torch.tensor(b_ih),
                                       "bias_hh": torch.tensor(b_hh)}})
    x = rng.normal(size=(2, 5)).astype(np.float32)
    hx = _random_hx(rng, "LSTMCell", (2, 3))
    _assert_close(_as_list(CALL(mod, x, hx)), _torch_call(expected, "LSTMCell", x, hx),
                  False)
    weights = {"weight_ih_l0": jaxq_weight(w_ih), "weight_hh_l0": jaxq_weight(w_hh),
               "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
    ref_rnn = SimpleNamespace(input_size=5, hidden_size=3, num_layers=1, bias=True,
                              batch_first=False, dropout=0.0, bidirectional=False,
                              weight_ih_l0_dtype=torch.qint8,
                              get_quantized_weight_bias_dict=lambda: weights)
    lstm = nnqd.LSTM.from_reference(ref_rnn)
    out, (h, c) = lstm(x[None], tuple(v[None] for v in hx))
    _assert_close([np.asarray(out[0]), np.asarray(h[0]), np.asarray(c[0])],
                  _as_list(CALL(mod, x, hx))[:1] + _as_list(CALL(mod, x, hx)), True)


def test_float16_weights_saturate_like_torch(rng):
    w_ih = rng.normal(size=(3, 4)).astype(np.float32)
    w_ih[0, 0], w_ih[1, 1] = 1e6, -1e6
    w_hh = rng.normal(size=(3, 3)).astype(np.float32)
    zeros = np.zeros(3, np.float32)
    ref = tnnqd.RNNCell(4, 3, dtype=torch.float16)
    ref.set_weight_bias({"weight": {"weight_ih": torch.tensor(w_ih),
                                    "weight_hh": torch.tensor(w_hh)},
                         "bias": {"bias_ih": torch.tensor(zeros),
                                  "bias_hh": torch.tensor(zeros)}})
    mod = nnqd.RNNCell(4, 3, dtype=torch.float16)
    mod.set_weight_bias(w_ih, w_hh, zeros, zeros)
    assert mod.weight_ih().dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(mod.weight_ih(), np.float32),
                                  ref._weight_bias()["weight"]["weight_ih"].numpy())


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------

def test_bad_input():
    with pytest.raises(ValueError, match="nonlinearity"):
        nnqd.RNNCell(3, 2, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dtype"):
        nnqd.LSTMCell(3, 2, dtype="quint8")
    with pytest.raises(ValueError, match="hidden_size"):
        nnqd.GRUCell(3, 0)
    cell = nnqd.LSTMCell(3, 2)
    with pytest.raises(ValueError, match="input_size"):
        cell(jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="input"):
        cell(jnp.ones((2, 4, 3)))
    with pytest.raises(TypeError, match="input must be a float"):
        cell(jnp.ones((4, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"hidden\[0\] batch size"):
        cell(jnp.ones((4, 3)), (jnp.ones((3, 2)), jnp.ones((4, 2))))
    with pytest.raises(ValueError, match=r"hidden\[1\] has inconsistent hidden_size"):
        cell(jnp.ones((4, 3)), (jnp.ones((4, 2)), jnp.ones((4, 5))))
    with pytest.raises(TypeError, match="hx must be a tuple"):
        cell(jnp.ones((4, 3)), jnp.ones((4, 2)))
    gru = nnqd.GRUCell(3, 2)
    with pytest.raises(ValueError, match="hidden has inconsistent hidden_size"):
        gru(jnp.ones((4, 3)), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="hx must be 1-D"):
        gru(jnp.ones((3,)), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="weight_ih must have shape"):
        gru.set_weight_bias(QTensor(jnp.zeros((6, 4), jnp.int8), 1.0, 0, "qint8"),
                            QTensor(jnp.zeros((6, 2), jnp.int8), 1.0, 0, "qint8"), None,
                            None)
    with pytest.raises(TypeError, match="weight_hh must be a qint8 QTensor"):
        gru.set_weight_bias(QTensor(jnp.zeros((6, 3), jnp.int8), 1.0, 0, "qint8"),
                            jnp.zeros((6, 2)), None, None)
    with pytest.raises(ValueError, match="bias_hh must have shape"):
        gru.set_weight_bias(QTensor(jnp.zeros((6, 3), jnp.int8), 1.0, 0, "qint8"),
                            QTensor(jnp.zeros((6, 2), jnp.int8), 1.0, 0, "qint8"),
                            None, jnp.zeros(5))
    with pytest.raises(ValueError, match="qconfig"):
        nnqd.GRUCell.from_float(nnx.GRUCell(3, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="from_float only works"):
        lin = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
        lin.qconfig = jqconfig.default_dynamic_qconfig
        nnqd.LSTMCell.from_float(lin)
    simple = nnx.SimpleCell(3, 2, activation_fn=nnx.sigmoid, rngs=nnx.Rngs(0))
    simple.qconfig = jqconfig.default_dynamic_qconfig
    with pytest.raises(ValueError, match="activation_fn"):
        nnqd.RNNCell.from_float(simple)
    residual = nnx.SimpleCell(3, 2, residual=True, rngs=nnx.Rngs(0))
    residual.qconfig = jqconfig.default_dynamic_qconfig
    with pytest.raises(ValueError, match="residual"):
        nnqd.RNNCell.from_float(residual)
