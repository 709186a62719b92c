"""nnqd.LSTM.from_float from jaxq.nn.quantizable.LSTM (jaxq's float nn.LSTM), and
quantize_dynamic on a model holding one, against torch 2.13's quantize_dynamic(nn.LSTM)."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq
from jaxq.nn import quantizable as nnqa
from jaxq.nn.quantized import dynamic as nnqd

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
torch.backends.quantized.engine = "x86"


class Holder(nnx.Module):
    def __init__(self, lstm):
        self.lstm = lstm

    def __call__(self, x):
        return self.lstm(x)


def _pair(dtype, split_gates=False, **kwargs):
    torch.manual_seed(0)
    float_lstm = torch.nn.LSTM(3, 5, **kwargs).eval()
    jaxq_lstm = nnqa.LSTM(3, 5, split_gates=split_gates, **kwargs)
    jaxq_lstm.set_weight_bias(dict(float_lstm.named_parameters()))
    torch_q = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(float_lstm), {torch.nn.LSTM}, dtype=dtype)[0]
    jaxq_dtype = jaxq.qint8 if dtype == torch.qint8 else jaxq.float16
    jaxq_q = jaxq.quantize_dynamic(Holder(jaxq_lstm), dtype=jaxq_dtype).lstm
    return torch_q, jaxq_q


@pytest.mark.parametrize("dtype,split_gates,kwargs", [
    (torch.qint8, False, {}),
    (torch.qint8, True, {"num_layers": 2, "bidirectional": True}),
    (torch.qint8, False, {"batch_first": True}),
    (torch.float16, False, {"num_layers": 2}),
])
def test_quantize_dynamic_lstm_matches_torch(dtype, split_gates, kwargs, rng):
    torch_q, jaxq_q = _pair(dtype, split_gates, **kwargs)
    assert type(jaxq_q) is nnqd.LSTM
    jaxq_weights, torch_weights = jaxq_q.get_weight(), torch_q.get_weight()
    assert set(jaxq_weights) == set(torch_weights)
    for name, expected in torch_weights.items():
        got = jaxq_weights[name]
        if dtype == torch.qint8:
            np.testing.assert_array_equal(np.asarray(got.int_repr()),
                                          expected.int_repr().numpy(), err_msg=name)
            assert float(got.q_scale()) == pytest.approx(expected.q_scale(), rel=1e-7)
        else:
            np.testing.assert_array_equal(np.asarray(got, np.float32),
                                          expected.float().numpy(), err_msg=name)
    shape = (2, 6, 3) if kwargs.get("batch_first") else (6, 2, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        expected, (h, c) = torch_q(torch.from_numpy(x))
    got, (jh, jc) = jaxq_q(jnp.asarray(x))
    for a, b in ((got, expected), (jh, h), (jc, c)):
        # Gate GEMMs are bit-exact; sigmoid / tanh are XLA's, a few ulps from ATen's.
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=2e-6, rtol=0)


def test_without_bias_close_to_float(rng):
    """torch's from_float refuses bias=False ("mod.bias must be True"); jaxq converts it."""
    float_lstm = nnqa.LSTM(3, 4, bias=False)
    quantized = jaxq.quantize_dynamic(Holder(float_lstm)).lstm
    assert type(quantized) is nnqd.LSTM and not quantized.bias
    x = jnp.asarray(rng.standard_normal((5, 2, 3)).astype(np.float32))
    np.testing.assert_allclose(np.asarray(quantized(x)[0]), np.asarray(float_lstm(x)[0]),
                               atol=0.02)


def test_from_float_errors():
    with pytest.raises(TypeError, match="quantizable.LSTM"):
        nnqd.LSTM.from_float(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="qconfig"):
        nnqd.LSTM.from_float(nnqa.LSTM(2, 3))


def test_static_flow_still_uses_the_quantizable_path():
    """Only the dynamic mapping swaps the LSTM whole; prepare still observes its ops."""
    model = Holder(nnqa.LSTM(2, 3))
    model.qconfig = jaxq.qconfig.get_default_qconfig("x86")
    prepared = jaxq.prepare(model)
    assert type(prepared.lstm) is nnqa.LSTM
    assert "activation_post_process" in vars(prepared.lstm.layers[0].layer_fw.cell.fgate_cx)
