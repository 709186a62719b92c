"""BackendConfig and custom configs from torch; an FX-converted checkpoint with key_map."""

from __future__ import annotations

import copy
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
import torch.ao.quantization.backend_config.utils  # noqa: F401  (torch's lazy import)
from flax import nnx
from torch.ao.quantization import backend_config as tbc
from torch.ao.quantization.fx import custom_config as tcc
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import jaxq.nn as jnn
from jaxq import custom_config as jcc
from jaxq.backend_config import get_native_backend_config
from jaxq.eager import DeQuantStub, QuantStub, convert, fuse_modules, prepare
from jaxq.interop import (
    TranslationWarning,
    from_torch,
    load_torch_state_dict,
    to_torch,
)
from jaxq.interop.mapping import jaxq_mapping_spec

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _key(config):
    return (repr(config.pattern), config.observation_type, tuple(config.dtype_configs),
            repr(config.root_module), repr(config.qat_module), repr(config.fused_module),
            repr(config.fuser_method), repr(config._num_tensor_args_to_observation_type))


def test_native_backend_config_equals_jaxq_native():
    with pytest.warns(TranslationWarning, match="left out"):
        ours = from_torch(tbc.get_native_backend_config())
    assert [_key(c) for c in ours.configs] == [_key(c) for c in get_native_backend_config().configs]


def test_onednn_complex_patterns_are_left_out_or_raise():
    with pytest.warns(TranslationWarning, match="complex pattern"):
        ours = from_torch(tbc.get_onednn_backend_config())
    assert ours.name == "onednn" and ours.configs
    with pytest.raises(ValueError, match="strict=True"):
        from_torch(tbc.get_onednn_backend_config(), strict=True)


class _TorchCustom(torch.nn.Module):
    pass


class _TorchObserved(torch.nn.Module):
    pass


class _JaxqCustom(nnx.Module):
    pass


class _JaxqObserved(nnx.Module):
    pass


def test_custom_configs_round_trip():
    type_map = {_TorchCustom: _JaxqCustom, _TorchObserved: _JaxqObserved}
    prepare_config = (
        tcc.PrepareCustomConfig()
        .set_standalone_module_name("sub", tq.QConfigMapping().set_global(tq.default_qconfig),
                                    (torch.ones(2, 3),), None, None)
        .set_float_to_observed_mapping(_TorchCustom, _TorchObserved)
        .set_non_traceable_module_names(["head"])
        .set_non_traceable_module_classes([torch.nn.Linear])
        .set_input_quantized_indexes([0])
        .set_output_quantized_indexes([0])
        .set_preserved_attributes(["meta"]))
    ours = from_torch(prepare_config, type_map=type_map)
    assert isinstance(ours, jcc.PrepareCustomConfig)
    assert ours.float_to_observed_mapping[jcc.QuantType.STATIC] == {_JaxqCustom: _JaxqObserved}
    assert ours.non_traceable_module_classes == [nnx.Linear]
    entry = ours.standalone_module_names["sub"]
    assert entry.example_inputs[0].shape == (2, 3)
    assert jaxq_mapping_spec(entry.qconfig_mapping) == jaxq_mapping_spec(
        from_torch(tq.QConfigMapping().set_global(tq.default_qconfig)))
    back = to_torch(ours, type_map=type_map)
    assert back.to_dict()["float_to_observed_custom_module_class"] == {
        "static": {_TorchCustom: _TorchObserved}}
    assert back.non_traceable_module_classes == [torch.nn.Linear]
    convert_config = tcc.ConvertCustomConfig().set_observed_to_quantized_mapping(
        _TorchObserved, _TorchCustom).set_preserved_attributes(["meta"])
    ours_convert = from_torch(convert_config, type_map=type_map)
    assert ours_convert.observed_to_quantized_mapping[jcc.QuantType.STATIC] == {
        _JaxqObserved: _JaxqCustom}
    fuse = from_torch(tcc.FuseCustomConfig().set_preserved_attributes(["a"]))
    assert fuse.preserved_attributes == ["a"]
    with pytest.raises(ValueError, match="_TorchCustom"):
        from_torch(prepare_config)  # without type_map


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.fc1 = torch.nn.Linear(6, 8)
        self.relu = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(8, 4)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


class JaxqMLP(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.quant = QuantStub()
        self.fc1 = nnx.Linear(6, 8, rngs=rngs)
        self.relu = jnn.ReLU()
        self.fc2 = nnx.Linear(8, 4, rngs=rngs)
        self.dequant = DeQuantStub()

    def __call__(self, x):
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


def test_fx_converted_checkpoint_with_key_map():
    torch.manual_seed(0)
    qconfig = tq.QConfig(activation=tq.MinMaxObserver.with_args(reduce_range=True),
                         weight=tq.default_per_channel_weight_observer)
    example = torch.randn(16, 6)
    prepared = prepare_fx(TorchMLP().eval(), tq.QConfigMapping().set_global(qconfig),
                          (example,))
    prepared(example * 3)
    quantized = convert_fx(copy.deepcopy(prepared))
    state = quantized.state_dict()
    assert "fc1_input_scale_0" in state
    model = JaxqMLP()
    model = fuse_modules(model, [["fc1", "relu"]])
    model.qconfig = from_torch(qconfig)
    prepared_jaxq = prepare(model)
    prepared_jaxq(jnp.asarray(example.numpy()))
    ours = convert(prepared_jaxq)
    names = {"quant.scale": "fc1_input_scale_0", "quant.zero_point": "fc1_input_zero_point_0"}
    with pytest.raises(ValueError, match="missing 'quant.scale'"):
        load_torch_state_dict(ours, state)
    load_torch_state_dict(ours, state, key_map=lambda key: names.get(key, key))
    x = torch.randn(32, 6) * 2
    theirs = quantized(x).numpy()
    out = np.asarray(ours(jnp.asarray(x.numpy())))
    np.testing.assert_allclose(out, theirs, atol=float(quantized.fc2.scale) * 1.01, rtol=0)
    assert np.mean(np.isclose(out, theirs, atol=1e-6)) >= 0.99


def test_torch_lstm_custom_configs_convert_to_jaxq_quantizable_classes():
    """torch's custom module entries for nn.LSTM / nn.MultiheadAttention land on jaxq's
    float forms (the quantizable classes) and jaxq's quantized modules."""
    import jaxq.nn.quantizable as jnnqa
    import jaxq.nn.quantized as jnnq

    prepare_config = tcc.PrepareCustomConfig()
    convert_config = tcc.ConvertCustomConfig()
    for float_cls, observed_cls, quantized_cls in [
            (torch.nn.LSTM, torch.ao.nn.quantizable.LSTM, torch.ao.nn.quantized.LSTM),
            (torch.nn.MultiheadAttention, torch.ao.nn.quantizable.MultiheadAttention,
             torch.ao.nn.quantized.MultiheadAttention)]:
        prepare_config.set_float_to_observed_mapping(float_cls, observed_cls)
        convert_config.set_observed_to_quantized_mapping(observed_cls, quantized_cls)
    ours = from_torch(prepare_config)
    assert ours.float_to_observed_mapping[jcc.QuantType.STATIC] == {
        jnnqa.LSTM: jnnqa.LSTM, jnnqa.MultiheadAttention: jnnqa.MultiheadAttention}
    ours_convert = from_torch(convert_config)
    assert ours_convert.observed_to_quantized_mapping[jcc.QuantType.STATIC] == {
        jnnqa.LSTM: jnnq.LSTM, jnnqa.MultiheadAttention: jnnq.MultiheadAttention}
    # Back to torch: the jaxq class stands for torch.nn.X and nnqa.X; torch.nn.X is chosen.
    back = to_torch(ours_convert).to_dict()["observed_to_quantized_custom_module_class"]
    assert back == {"static": {torch.nn.LSTM: torch.ao.nn.quantized.LSTM,
                               torch.nn.MultiheadAttention:
                                   torch.ao.nn.quantized.MultiheadAttention}}


class _LSTMHolder(nnx.Module):
    def __init__(self, lstm):
        self.lstm = lstm

    def __call__(self, x):
        return self.lstm(x)


def test_torch_dynamic_lstm_recipe_quantizes_a_jaxq_lstm_like_torch(rng):
    """A torch quantize_dynamic recipe naming nn.LSTM (qconfig_spec as a QConfigMapping and
    the {float: dynamic} mapping), read through jaxq.interop, applied with
    jaxq.quantize_dynamic to a jaxq.nn.quantizable.LSTM: nnqd.LSTM, as torch's result."""
    import jaxq
    from jaxq.backend_config import type_names
    from jaxq.nn.quantized import dynamic as jnnqd

    torch.manual_seed(0)
    float_lstm = torch.nn.LSTM(3, 4, num_layers=2).eval()
    torch_spec = tq.QConfigMapping().set_object_type(torch.nn.LSTM, tq.default_dynamic_qconfig)
    torch_mapping = {torch.nn.LSTM: torch.ao.nn.quantized.dynamic.LSTM}
    torch_q = tq.quantize_dynamic(torch.nn.Sequential(float_lstm),
                                  {torch.nn.LSTM: tq.default_dynamic_qconfig},
                                  mapping=torch_mapping)[0]

    qconfig_spec = from_torch(torch_spec)
    mapping = {type_names.translate_torch_object(k): type_names.translate_torch_object(v)
               for k, v in torch_mapping.items()}
    assert mapping == {jnn.quantizable.LSTM: jnnqd.LSTM}
    jaxq_lstm = jnn.quantizable.LSTM(3, 4, num_layers=2)
    jaxq_lstm.set_weight_bias(dict(float_lstm.named_parameters()))
    ours = jaxq.quantize_dynamic(_LSTMHolder(jaxq_lstm), qconfig_spec=qconfig_spec,
                                 mapping=mapping).lstm
    assert type(ours) is jnnqd.LSTM and type(torch_q) is torch.ao.nn.quantized.dynamic.LSTM
    for name, expected in torch_q.get_weight().items():
        np.testing.assert_array_equal(np.asarray(ours.get_weight()[name].int_repr()),
                                      expected.int_repr().numpy(), err_msg=name)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    with torch.no_grad():
        expected, _ = torch_q(torch.from_numpy(x))
    # Gate GEMMs are bit-exact; sigmoid / tanh are XLA's, a few ulps from ATen's.
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))[0]), expected.numpy(),
                               atol=2e-6, rtol=0)
