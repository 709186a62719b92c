"""jaxq.nn.quantizable.MultiheadAttention against torch 2.13's nn.MultiheadAttention,
nnqa.MultiheadAttention and the eager prepare -> calibrate -> convert flow (torch's
nnq.MultiheadAttention), engine x86.

The quantized Linears / Quantize / mul_scalar / cat / mean are bit-exact; the float core
(two batched matmuls and a softmax) runs in a different summation order than torch's, so
a value on a rounding boundary can land one quantum away (checked: within one quantum,
nearly all equal).
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
from jaxq.quantization_mappings import no_observer_set
from tests.nn.quantizable._helpers import (
    assert_float_close, assert_observers_match, assert_quantized_close,
    copy_torch_minmax_ranges, qconfigs)

E, HEADS = 8, 2


class TorchModel(torch.nn.Module):
    def __init__(self, mha):
        super().__init__()
        self.quant_q, self.quant_k, self.quant_v = tq.QuantStub(), tq.QuantStub(), tq.QuantStub()
        self.mha = mha

    def forward(self, q, k, v, **kwargs):
        return self.mha(self.quant_q(q), self.quant_k(k), self.quant_v(v), **kwargs)


class JaxqModel(nnx.Module):
    def __init__(self, mha):
        self.quant_q = jaxq.eager.QuantStub()
        self.quant_k = jaxq.eager.QuantStub()
        self.quant_v = jaxq.eager.QuantStub()
        self.mha = mha

    def __call__(self, q, k, v, **kwargs):
        return self.mha(self.quant_q(q), self.quant_k(k), self.quant_v(v), **kwargs)


def _float_pair(seed=0, **kwargs):
    """torch's float MHA and jaxq's float (quantizable, unprepared) one, same weights."""
    torch.manual_seed(seed)
    t_mha = torch.nn.MultiheadAttention(E, HEADS, **kwargs).eval()
    return t_mha, nnqa.MultiheadAttention._from_torch_like(t_mha)


def _inputs(rng, kdim=E, vdim=E, tgt=4, src=6, batch=2, batch_first=False):
    def make(length, dim):
        shape = (batch, length, dim) if batch_first else (length, batch, dim)
        return rng.standard_normal(shape).astype(np.float32)
    return make(tgt, E), make(src, kdim), make(src, vdim)


def _masks(kind, tgt=4, src=6, batch=2):
    if kind == "none":
        return {}
    if kind == "bool":
        return dict(attn_mask=np.triu(np.ones((tgt, src), bool), 3),
                    key_padding_mask=np.array([[0] * (src - 1) + [1],
                                               [0] * (src - 3) + [1] * 3], bool))
    mask = np.random.default_rng(1).standard_normal((batch * HEADS, tgt, src))
    return dict(attn_mask=mask.astype(np.float32))


def _torch_kwargs(kwargs):
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
            for k, v in kwargs.items()}


CONFIGS = {
    "default": (dict(), "none", {}),
    "kdim_vdim_no_bias_bool_masks": (dict(kdim=5, vdim=3, bias=False), "bool", {}),
    "bias_kv_zero_attn_float_mask": (dict(add_bias_kv=True, add_zero_attn=True), "float",
                                     {}),
    "per_head_weights": (dict(), "bool", dict(average_attn_weights=False)),
    "no_weights": (dict(), "none", dict(need_weights=False)),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_float_forward_matches_torch_mha(config, rng):
    kwargs, mask_kind, call = CONFIGS[config]
    t_mha, j_mha = _float_pair(**kwargs)
    q, k, v = _inputs(rng, kwargs.get("kdim", E), kwargs.get("vdim", E))
    call = dict(call, **_masks(mask_kind))
    with torch.no_grad():
        expected = t_mha(*map(torch.from_numpy, (q, k, v)), **_torch_kwargs(call))
    assert_float_close(j_mha(q, k, v, **call), expected)


def test_batch_first_matches_float_torch_not_torch_quantizable(rng):
    """torch's quantizable MHA mixes heads with batch_first=True (see the module docs);
    jaxq matches nn.MultiheadAttention(batch_first=True)."""
    t_mha, j_mha = _float_pair(batch_first=True)
    q, k, v = _inputs(rng, batch_first=True)
    with torch.no_grad():
        expected = t_mha(*map(torch.from_numpy, (q, k, v)))
        t_mha.qconfig = tq.default_qconfig
        torch_quantizable = torch.ao.nn.quantizable.MultiheadAttention.from_float(t_mha)
        buggy = torch_quantizable(*map(torch.from_numpy, (q, k, v)))
    out = j_mha(q, k, v)
    assert_float_close(out, expected)
    assert np.abs(np.asarray(out[0]) - buggy[0].numpy()).max() > 1e-3


def test_from_float_flax_multi_head_attention(rng):
    flax_mha = nnx.MultiHeadAttention(HEADS, E, in_kv_features=5, decode=False,
                                      rngs=nnx.Rngs(0))
    flax_mha.qconfig = qconfigs("minmax")[1]
    observed = nnqa.MultiheadAttention.from_float(flax_mha)
    assert observed.batch_first and observed.kdim == observed.vdim == 5
    q = rng.standard_normal((2, 4, E)).astype(np.float32)
    kv = rng.standard_normal((2, 6, 5)).astype(np.float32)
    out, weights = observed(q, kv, kv)
    np.testing.assert_allclose(out, flax_mha(q, kv, kv), atol=2e-6)
    assert weights.shape == (2, 4, 6)
    assert hasattr(observed.linear_K, "activation_post_process")
    with pytest.raises(ValueError, match="qkv_features"):
        other = nnx.MultiHeadAttention(HEADS, E, qkv_features=4, decode=False,
                                       rngs=nnx.Rngs(0))
        other.qconfig = flax_mha.qconfig
        nnqa.MultiheadAttention.from_float(other)


def test_errors():
    mha = nnqa.MultiheadAttention(E, HEADS)
    x = jnp.ones((4, 2, E))
    with pytest.raises(ValueError, match="causal"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match="2D attn_mask"):
        mha(x, x, x, attn_mask=jnp.zeros((3, 4), bool))
    with pytest.raises(TypeError, match="attn_mask"):
        mha(x, x, x, attn_mask=jnp.zeros((4, 4), jnp.int32))
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha(x, x, x, key_padding_mask=jnp.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="divisible"):
        nnqa.MultiheadAttention(E, 3)
    with pytest.raises(ValueError, match="qconfig"):
        nnqa.MultiheadAttention.from_float(mha)
    linear = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    linear.qconfig = qconfigs("minmax")[1]
    with pytest.raises(TypeError, match="MultiheadAttention"):
        nnqa.MultiheadAttention.from_float(linear)
    with pytest.raises(NotImplementedError):
        nnqa.MultiheadAttention.from_observed(mha)
    with pytest.raises(NotImplementedError):
        nnq.MultiheadAttention.from_float(mha)
    with pytest.raises(TypeError, match="quantizable"):
        nnq.MultiheadAttention.from_observed(linear)
    mha.deterministic = False
    mha.dropout = 0.5
    with pytest.raises(ValueError, match="rngs"):
        mha(x, x, x)
    out, _ = mha(x, x, x, rngs=nnx.Rngs(dropout=0))
    assert out.shape == x.shape


def _flows(config, qconfig_kind, rng, calibrations=2):
    kwargs, mask_kind, call = CONFIGS[config]
    t_mha, j_mha = _float_pair(**kwargs)
    t_model, j_model = TorchModel(t_mha).eval(), JaxqModel(j_mha)
    t_model.qconfig, j_model.qconfig = qconfigs(qconfig_kind)
    t_prepared, j_prepared = tq.prepare(t_model), jaxq.eager.prepare(j_model)
    call = dict(call, **_masks(mask_kind))
    dims = kwargs.get("kdim", E), kwargs.get("vdim", E)
    for _ in range(calibrations):
        q, k, v = _inputs(rng, *dims)
        with torch.no_grad():
            t_out = t_prepared(*map(torch.from_numpy, (q, k, v)), **_torch_kwargs(call))
        assert_float_close(j_prepared(q, k, v, **call), t_out)
    assert_observers_match(j_prepared, t_prepared)
    if qconfig_kind == "minmax":
        # Identical qparams from here on: the quantized arithmetic is compared bit for bit.
        copy_torch_minmax_ranges(j_prepared, t_prepared)
    t_quant, j_quant = tq.convert(t_prepared), jaxq.eager.convert(j_prepared)
    return t_quant, j_quant, _inputs(rng, *dims), call


@pytest.mark.parametrize("config,qconfig_kind", [
    ("default", "x86"), ("kdim_vdim_no_bias_bool_masks", "minmax"),
    ("bias_kv_zero_attn_float_mask", "minmax"), ("per_head_weights", "minmax")])
def test_eager_flow_matches_torch(config, qconfig_kind, rng):
    t_quant, j_quant, (q, k, v), call = _flows(config, qconfig_kind, rng)
    assert type(j_quant.mha) is nnq.MultiheadAttention
    assert isinstance(j_quant.mha.linear_Q, nnq.Linear)
    assert isinstance(j_quant.mha.quant_attn_output, nnq.Quantize)
    with torch.no_grad():
        expected = t_quant(*map(torch.from_numpy, (q, k, v)), **_torch_kwargs(call))
    assert_quantized_close(j_quant(q, k, v, **call), expected,
                           min_exact=1.0 if qconfig_kind == "minmax" else 0.97)
    if j_quant.mha.bias_k is not None:
        for name in ("bias_k", "bias_v"):
            ours, theirs = getattr(j_quant.mha, name).get_value(), getattr(t_quant.mha, name)
            assert_quantized_close(ours, theirs, min_exact=1.0)


def test_quantized_mha_no_weights_and_jit(rng):
    t_quant, j_quant, (q, k, v), _ = _flows("default", "minmax", rng, calibrations=1)
    with torch.no_grad():
        expected = t_quant(*map(torch.from_numpy, (q, k, v)), need_weights=False)
    out, weights = j_quant(q, k, v, need_weights=False)
    assert weights is None and expected[1] is None
    assert_quantized_close(out, expected[0], min_exact=1.0)

    traces = []

    @nnx.jit
    def run(model, q, k, v):
        traces.append(1)
        return model(q, k, v)

    eager = j_quant(q, k, v)
    first = run(j_quant, q, k, v)
    run(j_quant, q * 0.5, k, v)
    assert len(traces) == 1
    for a, b in zip(first, eager):
        np.testing.assert_array_equal(np.asarray(a.int_repr()), np.asarray(b.int_repr()))


def test_default_custom_config_and_no_observer_set():
    config = get_default_custom_config_dict()
    assert config["float_to_observed_custom_module_class"][nnqa.MultiheadAttention] \
        is nnqa.MultiheadAttention
    assert config["observed_to_quantized_custom_module_class"][nnqa.MultiheadAttention] \
        is nnq.MultiheadAttention
    assert nnqa.MultiheadAttention in no_observer_set()
