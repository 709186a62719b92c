"""jaxq.nn.quantized.LSTM through torch's direct API (no eager model around it):
quantizable ``from_float`` -> calibrate -> quantized ``from_observed``, against torch 2.13
(x86), on quantized inputs with explicit qparams. The observers agree with torch's to
float32 rounding; the test then gives them torch's exact ranges, so both convert with the
same qparams and the quantized LSTM is checked bit for bit (see
tests/nn/quantizable/test_lstm.py for the eager flow, compared to within one quantum)."""

import numpy as np
import pytest
import torch

import jaxq
from jaxq.nn import quantizable as nnqa
from jaxq.nn import quantized as nnq
from tests.nn.quantizable._helpers import (
    assert_float_close, assert_observers_match, assert_quantized_close,
    copy_torch_minmax_ranges, qconfigs)


@pytest.mark.parametrize("kwargs", [dict(), dict(bidirectional=True, batch_first=True)])
def test_from_observed_matches_torch(kwargs, rng):
    torch.manual_seed(0)
    t_float = torch.nn.LSTM(3, 4, **kwargs).eval()
    j_float = nnqa.LSTM(3, 4, **kwargs)
    j_float.set_weight_bias(dict(t_float.named_parameters()))
    t_float.qconfig, j_float.qconfig = qconfigs("minmax")
    t_observed = torch.ao.nn.quantizable.LSTM.from_float(t_float)
    j_observed = nnqa.LSTM.from_float(j_float)
    assert type(j_observed) is nnqa.LSTM and j_observed is not j_float
    x = rng.standard_normal((3, 4, 3)).astype(np.float32)
    with torch.no_grad():
        expected = t_observed(torch.from_numpy(x))
    assert_float_close(j_observed(x), expected)
    assert_observers_match(j_observed, t_observed)
    copy_torch_minmax_ranges(j_observed, t_observed)

    t_quant = torch.ao.nn.quantized.LSTM.from_observed(t_observed)
    j_quant = nnq.LSTM.from_observed(j_observed)
    assert type(j_quant) is nnq.LSTM and j_quant._get_name() == t_quant._get_name()
    t_x = torch.quantize_per_tensor(torch.from_numpy(x), 0.025, 64, torch.quint8)
    j_x = jaxq.quantize_per_tensor(x, 0.025, 64, jaxq.quint8)
    np.testing.assert_array_equal(np.asarray(j_x.int_repr()), t_x.int_repr().numpy())
    with torch.no_grad():
        expected = t_quant(t_x)
    out, (h, c) = j_quant(j_x)
    assert_quantized_close((out, h, c), (expected[0], *expected[1]), min_exact=1.0)
