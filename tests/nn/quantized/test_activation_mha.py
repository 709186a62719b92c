"""jaxq.nn.quantized.MultiheadAttention through torch's direct API: quantizable
``from_float`` -> calibrate -> quantized ``from_observed``, against torch 2.13 (x86), on
quantized inputs with explicit qparams. The observers agree with torch's to float32
rounding; the test then gives them torch's exact ranges, so both convert with the same
qparams and the quantized MHA (including the quantized bias_k / bias_v) is checked bit for
bit (see tests/nn/quantizable/test_activation.py for the eager flow)."""

import numpy as np
import torch

import jaxq
from jaxq.nn import quantizable as nnqa
from jaxq.nn import quantized as nnq
from tests.nn.quantizable._helpers import (
    assert_float_close, assert_observers_match, assert_quantized_close,
    copy_torch_minmax_ranges, qconfigs)


def test_from_observed_matches_torch(rng):
    torch.manual_seed(0)
    t_float = torch.nn.MultiheadAttention(8, 2, add_bias_kv=True).eval()
    t_float.qconfig, j_qconfig = qconfigs("minmax")
    j_float = nnqa.MultiheadAttention._from_torch_like(t_float)
    j_float.qconfig = j_qconfig
    t_observed = torch.ao.nn.quantizable.MultiheadAttention.from_float(t_float)
    j_observed = nnqa.MultiheadAttention.from_float(j_float)
    q, k = (rng.standard_normal((n, 2, 8)).astype(np.float32) for n in (4, 5))
    with torch.no_grad():
        expected = t_observed(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(k))
    assert_float_close(j_observed(q, k, k), expected)
    assert_observers_match(j_observed, t_observed)
    copy_torch_minmax_ranges(j_observed, t_observed)

    t_quant = torch.ao.nn.quantized.MultiheadAttention.from_observed(t_observed)
    j_quant = nnq.MultiheadAttention.from_observed(j_observed)
    assert type(j_quant) is nnq.MultiheadAttention
    assert j_quant._get_name() == t_quant._get_name()
    for name in ("bias_k", "bias_v"):
        assert_quantized_close(getattr(j_quant, name).get_value(), getattr(t_quant, name),
                               min_exact=1.0)
    t_q, t_k = (torch.quantize_per_tensor(torch.from_numpy(a), 0.03, 64, torch.quint8)
                for a in (q, k))
    j_q, j_k = (jaxq.quantize_per_tensor(a, 0.03, 64, jaxq.quint8) for a in (q, k))
    with torch.no_grad():
        expected = t_quant(t_q, t_k, t_k)
    assert_quantized_close(j_quant(j_q, j_k, j_k), expected, min_exact=1.0)


def test_batch_first_matches_torch_on_transposed_inputs(rng):
    """torch's quantizable MHA mixes heads with batch_first=True (see
    jaxq.nn.quantizable.activation); jaxq's batch_first=True module equals torch's
    batch_first=False one on transposed inputs, through quantization."""
    torch.manual_seed(0)
    t_float = torch.nn.MultiheadAttention(8, 2).eval()
    t_float.qconfig, j_qconfig = qconfigs("minmax")
    t_float.batch_first = True
    j_float = nnqa.MultiheadAttention._from_torch_like(t_float)
    t_float.batch_first = False
    assert j_float.batch_first
    j_float.qconfig = j_qconfig
    t_observed = torch.ao.nn.quantizable.MultiheadAttention.from_float(t_float)
    j_observed = nnqa.MultiheadAttention.from_float(j_float)
    q = rng.standard_normal((2, 4, 8)).astype(np.float32)  # (N, L, E)
    t_in = torch.from_numpy(q.transpose(1, 0, 2).copy())
    with torch.no_grad():
        expected = t_observed(t_in, t_in, t_in)
    out, weights = j_observed(q, q, q)
    assert_float_close((np.swapaxes(out, 0, 1), weights), expected)
    copy_torch_minmax_ranges(j_observed, t_observed)
    t_quant = torch.ao.nn.quantized.MultiheadAttention.from_observed(t_observed)
    j_quant = nnq.MultiheadAttention.from_observed(j_observed)
    t_x = torch.quantize_per_tensor(t_in, 0.03, 64, torch.quint8)
    j_x = jaxq.quantize_per_tensor(q, 0.03, 64, jaxq.quint8)
    with torch.no_grad():
        t_out, t_weights = t_quant(t_x, t_x, t_x)
    j_out, j_weights = j_quant(j_x, j_x, j_x)
    j_out = jaxq.QTensor(np.swapaxes(np.asarray(j_out.int_repr()), 0, 1), j_out.scale,
                         j_out.zero_point, j_out.dtype)
    assert_quantized_close((j_out, j_weights), (t_out, t_weights), min_exact=1.0)
