"""jaxq.nn.quantizable.LSTM / LSTMCell against torch 2.13's nn.LSTM, nnqa.LSTM and the
eager prepare -> calibrate -> convert flow (torch's nnq.LSTM), engine x86.

Quantized outputs: the Linears, adds, muls and requantizations are bit-exact; the gate
sigmoid / tanh use XLA's float functions where ATen uses Sleef's (a few ulps apart) and
the observed ranges come from float Linears whose summation order differs, so an integer
may sit one quantum away (checked: within one quantum, nearly all equal).
"""

import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx

import jax.numpy as jnp

import jaxq
from jaxq.nn import quantizable as nnqa
from jaxq.nn import quantized as nnq
from jaxq.eager._common import get_default_custom_config_dict
from jaxq.eager._tree import named_modules
from jaxq.quantization_mappings import no_observer_set
from tests.nn.quantizable._helpers import (
    assert_float_close, assert_observers_match, assert_quantized_close,
    copy_torch_minmax_ranges, qconfigs)


class TorchModel(torch.nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.quant = tq.QuantStub()
        self.lstm = lstm

    def forward(self, x, hidden=None):
        y, (h, c) = self.lstm(self.quant(x), hidden)
        return y, h, c


class JaxqModel(nnx.Module):
    def __init__(self, lstm):
        self.quant = jaxq.eager.QuantStub()
        self.lstm = lstm

    def __call__(self, x, hidden=None):
        y, (h, c) = self.lstm(self.quant(x), hidden)
        return y, h, c


def _pair(input_size, hidden_size, seed=0, **kwargs):
    torch.manual_seed(seed)
    t_lstm = torch.nn.LSTM(input_size, hidden_size, **kwargs).eval()
    j_lstm = nnqa.LSTM(input_size, hidden_size, **kwargs)
    j_lstm.set_weight_bias(dict(t_lstm.named_parameters()))
    return t_lstm, j_lstm


def _input(rng, t, n, i, batch_first=False, scale=1.0):
    shape = (n, t, i) if batch_first else (t, n, i)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


CONFIGS = {
    "one_layer": (3, 4, dict()),
    "bidirectional": (3, 4, dict(bidirectional=True)),
    "two_layers": (3, 4, dict(num_layers=2)),
    "batch_first_no_bias_odd": (5, 3, dict(batch_first=True, bias=False)),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_float_forward_matches_torch_lstm(config, rng):
    i, h, kwargs = CONFIGS[config]
    t_lstm, j_lstm = _pair(i, h, **kwargs)
    x = _input(rng, 5, 2, i, kwargs.get("batch_first", False))
    with torch.no_grad():
        expected = t_lstm(torch.from_numpy(x))
    assert_float_close(j_lstm(jnp.asarray(x)), expected)


def test_float_forward_with_hidden_matches_torch(rng):
    t_lstm, j_lstm = _pair(3, 4, num_layers=2, bidirectional=True)
    x = _input(rng, 4, 2, 3)
    h0 = rng.standard_normal((4, 2, 4)).astype(np.float32)
    c0 = rng.standard_normal((4, 2, 4)).astype(np.float32)
    with torch.no_grad():
        expected = t_lstm(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    assert_float_close(j_lstm(x, (h0, c0)), expected)


@pytest.mark.parametrize("split_gates", [False, True])
def test_cell_matches_torch_quantizable_cell(split_gates, rng):
    torch.manual_seed(1)
    t_cell = torch.nn.LSTMCell(3, 5)
    t_q = torch.ao.nn.quantizable.LSTMCell.from_params(
        t_cell.weight_ih, t_cell.weight_hh, t_cell.bias_ih, t_cell.bias_hh,
        split_gates=split_gates)
    j_cell = nnqa.LSTMCell.from_params(t_cell.weight_ih, t_cell.weight_hh, t_cell.bias_ih,
                                       t_cell.bias_hh, split_gates=split_gates)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    hx = (rng.standard_normal((2, 5)).astype(np.float32),
          rng.standard_normal((2, 5)).astype(np.float32))
    with torch.no_grad():
        expected = t_q(torch.from_numpy(x), tuple(map(torch.from_numpy, hx)))
        reference = t_cell(torch.from_numpy(x), tuple(map(torch.from_numpy, hx)))
    assert_float_close(j_cell(x, hx), expected)
    assert_float_close(j_cell(x, hx), reference)
    assert_float_close(j_cell(x), t_q(torch.from_numpy(x)))


@pytest.mark.parametrize("cell_type", [nnx.LSTMCell, nnx.OptimizedLSTMCell])
def test_from_float_flax_rnn_and_bidirectional(cell_type, rng):
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)  # Flax: batch-major
    rnn = nnx.RNN(cell_type(3, 4, rngs=nnx.Rngs(0)))
    rnn.qconfig = qconfigs("minmax")[1]
    observed = nnqa.LSTM.from_float(rnn)
    assert observed.batch_first and not observed.bidirectional
    out, (h, c) = observed(x)
    np.testing.assert_allclose(out, rnn(x), atol=2e-6)
    backward = nnx.RNN(cell_type(3, 4, rngs=nnx.Rngs(1)), reverse=True, keep_order=True)
    bi = nnx.Bidirectional(rnn, backward)
    bi.qconfig = rnn.qconfig
    observed = nnqa.LSTM.from_float(bi)
    out, (h, c) = observed(x)
    np.testing.assert_allclose(out, bi(x), atol=2e-6)
    assert h.shape == (2, 2, 4)
    # The observers were attached by from_float's prepare.
    assert hasattr(observed.layers[0].layer_bw.cell.igates, "activation_post_process")


def test_from_float_torch_like_and_errors():
    torch.manual_seed(0)
    t_lstm = torch.nn.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match="qconfig"):
        nnqa.LSTM.from_float(t_lstm)
    observed = nnqa.LSTM.from_float(t_lstm, qconfig=qconfigs("minmax")[1])
    x = np.ones((2, 1, 3), np.float32)
    with torch.no_grad():
        assert_float_close(observed(x), t_lstm(torch.from_numpy(x)))
    with pytest.raises(TypeError, match="nnx.LSTMCell"):
        gru = nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
        gru.qconfig = qconfigs("minmax")[1]
        nnqa.LSTM.from_float(gru)
    with pytest.raises(TypeError, match="quantizable.LSTM"):
        linear = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        linear.qconfig = qconfigs("minmax")[1]
        nnqa.LSTM.from_float(linear)
    with pytest.raises(NotImplementedError):
        nnqa.LSTM.from_observed(observed)
    with pytest.raises(NotImplementedError):
        nnq.LSTM.from_float(observed)
    with pytest.raises(TypeError, match="quantizable"):
        nnq.LSTM.from_observed(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="dropout"):
        nnqa.LSTM(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size"):
        nnqa.LSTM(3, 0)
    with pytest.raises(ValueError, match="input_size"):
        nnqa.LSTM(3, 4)(jnp.ones((2, 1, 5)))
    with pytest.warns(UserWarning, match="ignored"):
        nnqa.LSTM(3, 4, num_layers=2, dropout=0.5)


def _flows(config, qconfig_kind, rng, calibrations=2, hidden=False):
    i, h, kwargs = CONFIGS[config]
    t_lstm, j_lstm = _pair(i, h, **kwargs)
    t_model, j_model = TorchModel(t_lstm).eval(), JaxqModel(j_lstm)
    t_model.qconfig, j_model.qconfig = qconfigs(qconfig_kind)
    t_prepared, j_prepared = tq.prepare(t_model), jaxq.eager.prepare(j_model)
    batch_first = kwargs.get("batch_first", False)
    for _ in range(calibrations):
        x = _input(rng, 4, 3, i, batch_first)
        with torch.no_grad():
            t_out = t_prepared(torch.from_numpy(x))
        assert_float_close(j_prepared(jnp.asarray(x)), t_out)
    assert_observers_match(j_prepared, t_prepared)
    if qconfig_kind == "minmax":
        # Identical qparams from here on: the quantized arithmetic is compared bit for bit.
        copy_torch_minmax_ranges(j_prepared, t_prepared)
    t_quant, j_quant = tq.convert(t_prepared), jaxq.eager.convert(j_prepared)
    return t_quant, j_quant, _input(rng, 4, 3, i, batch_first)


@pytest.mark.parametrize("config,qconfig_kind", [
    pytest.param("one_layer", "x86", marks=pytest.mark.slow), ("one_layer", "minmax"),
    ("bidirectional", "minmax"), ("two_layers", "minmax"),
    pytest.param("batch_first_no_bias_odd", "minmax", marks=pytest.mark.slow)])
def test_eager_flow_matches_torch(config, qconfig_kind, rng):
    t_quant, j_quant, x = _flows(config, qconfig_kind, rng)
    assert type(j_quant.lstm) is nnq.LSTM
    assert isinstance(j_quant.lstm.layers[0].layer_fw.cell.igates, nnq.Linear)
    assert isinstance(j_quant.lstm.layers[0].layer_fw.cell.gates, nnq.QFunctional)
    with torch.no_grad():
        expected = t_quant(torch.from_numpy(x))
    assert_quantized_close(j_quant(jnp.asarray(x)), expected,
                           min_exact=1.0 if qconfig_kind == "minmax" else 0.97)


def test_quantized_lstm_with_quantized_hidden_and_jit(rng):
    t_quant, j_quant, x = _flows("bidirectional", "minmax", rng, calibrations=1)
    h0 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    t_h = torch.quantize_per_tensor(torch.from_numpy(h0), 0.02, 60, torch.quint8)
    j_h = jaxq.quantize_per_tensor(h0, 0.02, 60, jaxq.quint8)
    np.testing.assert_array_equal(np.asarray(j_h.int_repr()), t_h.int_repr().numpy())
    with torch.no_grad():
        expected = t_quant(torch.from_numpy(x), (t_h, t_h))
    assert_quantized_close(j_quant(jnp.asarray(x), (j_h, j_h)), expected, min_exact=1.0)

    traces = []

    @nnx.jit
    def run(model, x):
        traces.append(1)
        return model(x)

    eager = j_quant(jnp.asarray(x))
    first = run(j_quant, jnp.asarray(x))
    second = run(j_quant, jnp.asarray(x) * 0.5)
    assert len(traces) == 1
    for a, b in zip(first, eager):
        np.testing.assert_array_equal(np.asarray(a.int_repr()), np.asarray(b.int_repr()))
    assert second[0].shape == first[0].shape


def test_default_custom_config_and_no_observer_set():
    config = get_default_custom_config_dict()
    assert config["float_to_observed_custom_module_class"][nnqa.LSTM] is nnqa.LSTM
    assert config["observed_to_quantized_custom_module_class"][nnqa.LSTM] is nnq.LSTM
    assert nnqa.LSTM in no_observer_set()
    model = JaxqModel(nnqa.LSTM(2, 3))
    model.qconfig = qconfigs("minmax")[1]
    prepared = jaxq.eager.prepare(model)
    # The LSTM itself gets no output observer (torch's no_observer_set); its sub-ops do.
    assert "activation_post_process" not in vars(prepared.lstm)
    observed = [name for name, m in named_modules(prepared)
                if "activation_post_process" in vars(m)]
    assert "lstm.layers.0.layer_fw.cell.ogate_cy" in observed
    assert "lstm.layers.0.layer_fw.cell.input_gate" not in observed
    assert type(model.lstm) is nnqa.LSTM and "activation_post_process" not in vars(
        model.lstm.layers[0].layer_fw.cell.gates.activation_post_process)


def test_quantized_lstm_rejects_float_input_after_convert(rng):
    _, j_quant, x = _flows("one_layer", "minmax", rng, calibrations=1)
    with pytest.raises(TypeError, match="QTensor"):
        j_quant.lstm(jnp.asarray(x))


def test_observed_calibration_under_jit_and_float_grad(rng):
    t_lstm, j_lstm = _pair(3, 4)
    j_lstm.qconfig = qconfigs("minmax")[1]
    jitted, eager = nnqa.LSTM.from_float(j_lstm), nnqa.LSTM.from_float(j_lstm)
    traces = []

    @nnx.jit
    def calibrate(model, x):
        traces.append(1)
        return model(x)

    for scale in (1.0, 2.0):
        x = _input(rng, 4, 3, 3, scale=scale)
        calibrate(jitted, jnp.asarray(x))
        eager(jnp.asarray(x))
    assert len(traces) == 1
    observers = [(m.activation_post_process, e.activation_post_process)
                 for (_, m), (_, e) in zip(named_modules(jitted), named_modules(eager))
                 if "activation_post_process" in vars(m)
                 and hasattr(m.activation_post_process, "calculate_qparams")]
    assert len(observers) == 7
    for a, b in observers:
        np.testing.assert_array_equal(a.calculate_qparams()[0], b.calculate_qparams()[0])

    # The float quantizable LSTM differentiates like torch's nn.LSTM.
    x = _input(rng, 4, 3, 3)
    grads = nnx.grad(lambda m, x: jnp.sum(m(x)[0] ** 2))(j_lstm, jnp.asarray(x))
    out, _ = t_lstm(torch.from_numpy(x))
    (out ** 2).sum().backward()
    cell_grads = grads.layers[0].layer_fw.cell
    np.testing.assert_allclose(cell_grads.igates.kernel.get_value().T,
                               t_lstm.weight_ih_l0.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cell_grads.hgates.bias.get_value(),
                               t_lstm.bias_hh_l0.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_prepare_qat_with_lstm_trains_and_converts(rng):
    """prepare_qat keeps the quantizable LSTM for `_prepare` (torch's own swap pass would
    try to quantize it unobserved and fail): fake-quant observers inside, gradients reach
    the gate weights, and convert gives the quantized LSTM, close to the fake-quant
    forward. (With torch's x86 QAT qconfig the two differ by design: its reduce_range
    fake-quant clamps at 127 while the converted ops use the whole quint8 range, and its
    fused weight fake-quant rounds scales like ATen's fused kernel, not like the observer
    that convert asks; a plain FakeQuantize qconfig shows the arithmetic agrees.)"""
    import optax

    from jaxq.fake_quantize import FakeQuantize
    from jaxq.observer import MinMaxObserver, PerChannelMinMaxObserver

    qconfig = jaxq.qconfig.QConfig(
        activation=FakeQuantize.with_args(observer=MinMaxObserver, quant_min=0,
                                          quant_max=255),
        weight=FakeQuantize.with_args(observer=PerChannelMinMaxObserver, quant_min=-128,
                                      quant_max=127, dtype=jaxq.qint8,
                                      qscheme=jaxq.per_channel_symmetric))
    _, j_lstm = _pair(3, 4)
    model = JaxqModel(j_lstm)
    model.qconfig = qconfig
    model.train()
    prepared = jaxq.eager.prepare_qat(model)
    assert type(prepared.lstm) is nnqa.LSTM and prepared.lstm is not j_lstm
    fake_quants = [name for name, m in named_modules(prepared.lstm)
                   if isinstance(m, FakeQuantize)]
    assert "layers.0.layer_fw.cell.ogate_cy.activation_post_process" in fake_quants
    assert "layers.0.layer_fw.cell.igates.weight_fake_quant" in fake_quants

    x = jnp.asarray(_input(rng, 4, 3, 3))
    cell = prepared.lstm.layers[0].layer_fw.cell
    before = np.asarray(cell.igates.kernel[...]).copy()
    optimizer = nnx.Optimizer(prepared, optax.sgd(0.1), wrt=nnx.Param)

    def loss(m):
        y, h, c = m(x)
        return jnp.mean(y ** 2) + jnp.mean(h ** 2) + jnp.mean(c ** 2)

    grads = nnx.grad(loss)(prepared)
    assert np.abs(np.asarray(grads.lstm.layers[0].layer_fw.cell.igates.kernel[...])).sum() > 0
    optimizer.update(prepared, grads)
    assert not np.array_equal(np.asarray(cell.igates.kernel[...]), before)

    prepared.eval()
    prepared(x)  # calibrate the observers on the trained weights
    for _, m in named_modules(prepared):
        if isinstance(m, FakeQuantize):
            m.disable_observer()
    fake_quant_out = prepared(x)
    quantized = jaxq.eager.convert(prepared)
    assert type(quantized.lstm) is nnq.LSTM
    y_quant = quantized(x)
    y_scale = float(quantized.lstm.layers[0].layer_fw.cell.ogate_cy.scale)
    np.testing.assert_allclose(np.asarray(y_quant[0].dequantize()),
                               np.asarray(fake_quant_out[0]), atol=3 * y_scale)
