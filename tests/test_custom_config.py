"""Fuse/Prepare/ConvertCustomConfig and StandaloneModuleConfigEntry vs torch's."""

import pytest
from flax import nnx
from torch.ao.quantization import QConfigMapping as TorchQConfigMapping
from torch.ao.quantization.backend_config import BackendConfig as TorchBackendConfig
from torch.ao.quantization.fx import custom_config as tcc
from torch.ao.quantization.quant_type import QuantType as TorchQuantType

from jaxq.backend_config import BackendConfig
from jaxq.custom_config import (
    ConvertCustomConfig,
    FuseCustomConfig,
    PrepareCustomConfig,
    QuantType,
    StandaloneModuleConfigEntry,
)
from jaxq.qconfig_mapping import QConfigMapping


class FloatCustom(nnx.Module):
    pass


class ObservedCustom(nnx.Module):
    pass


class QuantizedCustom(nnx.Module):
    pass


def test_quant_type_matches_torch():
    assert [(q.name, q.value) for q in QuantType] == [(q.name, q.value) for q in TorchQuantType]


def _prepare(cls, qconfig_mapping_cls, backend_config_cls):
    child = cls().set_preserved_attributes(["c"])
    return (cls()
            .set_standalone_module_name("sub", qconfig_mapping_cls().set_global("g"), (1, 2),
                                        child, backend_config_cls("b"))
            .set_standalone_module_class(FloatCustom, None, (3,), None, None)
            .set_float_to_observed_mapping(FloatCustom, ObservedCustom)
            .set_non_traceable_module_names(["m2", "m3"])
            .set_non_traceable_module_classes([ObservedCustom])
            .set_input_quantized_indexes([0])
            .set_output_quantized_indexes([0, 1])
            .set_preserved_attributes(["attr1", "attr2"]))


def _comparable(d):
    """A to_dict result with configs made comparable (BackendConfigs by their dict form)."""
    out = {}
    for key, value in d.items():
        if key.startswith("standalone"):
            value = [(k, q, e, p, None if b is None else b.name) for k, q, e, p, b in value]
        out[key] = value
    return out


def test_prepare_custom_config_dict_matches_torch_and_round_trips():
    torch_config = _prepare(tcc.PrepareCustomConfig, TorchQConfigMapping, TorchBackendConfig)
    config = _prepare(PrepareCustomConfig, QConfigMapping, BackendConfig)
    assert _comparable(config.to_dict()) == _comparable(torch_config.to_dict())
    assert list(config.to_dict()) == list(torch_config.to_dict())
    rebuilt = PrepareCustomConfig.from_dict(config.to_dict())
    assert _comparable(rebuilt.to_dict()) == _comparable(config.to_dict())
    entry = rebuilt.standalone_module_names["sub"]
    assert isinstance(entry.qconfig_mapping, QConfigMapping)
    assert entry.qconfig_mapping.global_qconfig == "g"
    assert entry.prepare_custom_config.preserved_attributes == ["c"]
    assert entry.backend_config.name == "b"
    assert PrepareCustomConfig().to_dict() == tcc.PrepareCustomConfig().to_dict() == {}
    assert repr(config).startswith("PrepareCustomConfig(")


def test_convert_and_fuse_custom_config_match_torch_and_round_trip():
    for quant_type, torch_quant_type in [(QuantType.STATIC, TorchQuantType.STATIC),
                                         (QuantType.DYNAMIC, TorchQuantType.DYNAMIC),
                                         (QuantType.WEIGHT_ONLY, TorchQuantType.WEIGHT_ONLY)]:
        config = (ConvertCustomConfig()
                  .set_observed_to_quantized_mapping(ObservedCustom, QuantizedCustom, quant_type)
                  .set_preserved_attributes(["a"]))
        torch_config = (tcc.ConvertCustomConfig()
                        .set_observed_to_quantized_mapping(ObservedCustom, QuantizedCustom,
                                                           torch_quant_type)
                        .set_preserved_attributes(["a"]))
        assert config.to_dict() == torch_config.to_dict()
        assert ConvertCustomConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    fuse = FuseCustomConfig().set_preserved_attributes(["x"])
    assert fuse.to_dict() == tcc.FuseCustomConfig().set_preserved_attributes(["x"]).to_dict()
    assert FuseCustomConfig.from_dict(fuse.to_dict()).to_dict() == fuse.to_dict()
    assert FuseCustomConfig().to_dict() == {} and ConvertCustomConfig().to_dict() == {}


def test_torch_quant_type_is_accepted():
    config = ConvertCustomConfig().set_observed_to_quantized_mapping(
        ObservedCustom, QuantizedCustom, TorchQuantType.DYNAMIC)
    assert QuantType.DYNAMIC in config.observed_to_quantized_mapping


def test_from_torch_dicts():
    torch_dict = tcc.ConvertCustomConfig().set_observed_to_quantized_mapping(
        ObservedCustom, QuantizedCustom).to_dict()
    assert ConvertCustomConfig.from_dict(torch_dict).observed_to_quantized_mapping == {
        QuantType.STATIC: {ObservedCustom: QuantizedCustom}}


@pytest.mark.parametrize("call,argument", [
    (lambda: PrepareCustomConfig().set_float_to_observed_mapping(
        FloatCustom, ObservedCustom, QuantType.DYNAMIC), "quant_type"),
    (lambda: PrepareCustomConfig().set_float_to_observed_mapping(
        FloatCustom, ObservedCustom, 1), "quant_type"),
    (lambda: PrepareCustomConfig().set_float_to_observed_mapping("x", ObservedCustom),
     "float_class"),
    (lambda: PrepareCustomConfig().set_non_traceable_module_names("m"), "module_names"),
    (lambda: PrepareCustomConfig().set_non_traceable_module_classes(["m"]), "module_classes"),
    (lambda: PrepareCustomConfig().set_input_quantized_indexes([-1]), "indexes"),
    (lambda: PrepareCustomConfig().set_output_quantized_indexes(0), "indexes"),
    (lambda: PrepareCustomConfig().set_preserved_attributes([1]), "attributes"),
    (lambda: PrepareCustomConfig().set_standalone_module_name(1, None, (), None, None),
     "module_name"),
    (lambda: PrepareCustomConfig().set_standalone_module_class("x", None, (), None, None),
     "module_class"),
    (lambda: PrepareCustomConfig().set_standalone_module_name("a", {}, (), None, None),
     "qconfig_mapping"),
    (lambda: PrepareCustomConfig().set_standalone_module_name("a", None, [1], None, None),
     "example_inputs"),
    (lambda: PrepareCustomConfig().set_standalone_module_name("a", None, (), {}, None),
     "prepare_custom_config"),
    (lambda: PrepareCustomConfig().set_standalone_module_name("a", None, (), None, "b"),
     "backend_config"),
    (lambda: PrepareCustomConfig.from_dict({"standalone_module_name": [("a", 3, (), None, None)]}),
     "QConfigMapping"),
    (lambda: PrepareCustomConfig.from_dict({"standalone_module_name": [("a",)]}),
     "standalone_module_name"),
    (lambda: PrepareCustomConfig.from_dict(
        {"float_to_observed_custom_module_class": {"statik": {}}}), "statik"),
    (lambda: PrepareCustomConfig.from_dict(3), "prepare_custom_config_dict"),
    (lambda: ConvertCustomConfig().set_observed_to_quantized_mapping(ObservedCustom, 3),
     "quantized_class"),
    (lambda: ConvertCustomConfig().set_preserved_attributes("a"), "attributes"),
    (lambda: ConvertCustomConfig.from_dict(None), "convert_custom_config_dict"),
    (lambda: FuseCustomConfig().set_preserved_attributes(None), "attributes"),
    (lambda: FuseCustomConfig.from_dict(None), "fuse_custom_config_dict"),
])
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises((TypeError, ValueError), match=argument):
        call()


def test_standalone_entry_fields():
    entry = StandaloneModuleConfigEntry(None, (1,), None, None)
    assert (entry.qconfig_mapping, entry.example_inputs) == (None, (1,))
    assert [f for f in StandaloneModuleConfigEntry.__dataclass_fields__] == [
        f for f in tcc.StandaloneModuleConfigEntry.__dataclass_fields__]
