"""BackendConfig, BackendPatternConfig, DTypeConfig, DTypeWithConstraints vs torch's."""

import dataclasses
import operator

import jax
import pytest
import torch
from flax import nnx
from torch.ao.quantization import backend_config as tbc
from torch.ao.quantization.backend_config import utils as torch_bc_utils

import jaxq
from jaxq.backend_config import (
    BackendConfig,
    BackendPatternConfig,
    DTypeConfig,
    DTypeWithConstraints,
    ObservationType,
)
from jaxq.backend_config import utils as bc_utils
from jaxq.backend_config.backend_config import pattern_in_reversed_nested_tuple_format


def to_jaxq_dtype_config(torch_dtype_config):
    """A torch DTypeConfig rebuilt in jaxq (dtypes converted by name)."""
    def constraints(c):
        return DTypeWithConstraints(**dataclasses.asdict(c))
    return DTypeConfig(constraints(torch_dtype_config.input_dtype_with_constraints),
                       constraints(torch_dtype_config.output_dtype_with_constraints),
                       constraints(torch_dtype_config.weight_dtype_with_constraints),
                       torch_dtype_config.bias_dtype, torch_dtype_config.is_dynamic)


def test_observation_type_matches_torch():
    assert [(m.name, m.value) for m in ObservationType] == [
        (m.name, m.value) for m in tbc.ObservationType]


DTYPE_KWARGS = [
    dict(input_dtype=torch.quint8, output_dtype=torch.quint8, weight_dtype=torch.qint8,
         bias_dtype=torch.float),
    dict(input_dtype=torch.quint8, output_dtype=torch.float, weight_dtype=torch.qint8,
         bias_dtype=torch.float, is_dynamic=True),
    dict(input_dtype=torch.float16, output_dtype=torch.float16),
    dict(weight_dtype=torch.quint4x2),
    dict(),
]


@pytest.mark.parametrize("kwargs", DTYPE_KWARGS)
def test_dtype_config_matches_torch(kwargs):
    torch_config = tbc.DTypeConfig(**kwargs)
    config = DTypeConfig(**kwargs)
    assert config == to_jaxq_dtype_config(torch_config)
    assert set(config.to_dict()) == set(torch_config.to_dict())
    for name in ("input_dtype", "output_dtype", "weight_dtype"):
        torch_value = getattr(torch_config, name)
        value = getattr(config, name)
        assert (value is None) == (torch_value is None)
        if value is not None:
            assert value is jaxq.as_quant_dtype(torch_value)
    assert config.is_dynamic == torch_config.is_dynamic
    assert DTypeConfig.from_dict(config.to_dict()) == config
    assert DTypeConfig.from_dict(torch_config.to_dict()) == config
    hash(config)


def test_dtype_with_constraints_matches_torch():
    kwargs = dict(dtype=torch.quint8, quant_min_lower_bound=0, quant_max_upper_bound=255,
                  scale_min_lower_bound=2**-12, scale_exact_match=1 / 256,
                  zero_point_exact_match=0)
    torch_constraints = tbc.DTypeWithConstraints(**kwargs)
    constraints = DTypeWithConstraints(**kwargs)
    assert constraints.dtype is jaxq.quint8
    for field in dataclasses.fields(tbc.DTypeWithConstraints):
        if field.name != "dtype":
            assert getattr(constraints, field.name) == getattr(torch_constraints, field.name)
    config = DTypeConfig(input_dtype=constraints)
    assert config.input_dtype is jaxq.quint8
    assert config.input_dtype_with_constraints is constraints


@pytest.mark.parametrize("call,argument", [
    (lambda: DTypeWithConstraints(dtype="float64x"), "dtype"),
    (lambda: DTypeWithConstraints(quant_min_lower_bound="0"), "quant_min_lower_bound"),
    (lambda: DTypeWithConstraints(zero_point_exact_match=0.5), "zero_point_exact_match"),
    (lambda: DTypeWithConstraints(scale_exact_match=True), "scale_exact_match"),
    (lambda: DTypeConfig(input_dtype=3), "input_dtype"),
    (lambda: DTypeConfig(weight_dtype="int9"), "weight_dtype"),
    (lambda: DTypeConfig(bias_dtype=object()), "bias_dtype"),
    (lambda: DTypeConfig(is_dynamic=1), "is_dynamic"),
    (lambda: DTypeConfig.from_dict({"input_dtype": 3}), "input_dtype"),
    (lambda: DTypeConfig.from_dict({"bias_type": jaxq.float32}), "bias_type"),
    (lambda: DTypeConfig.from_dict([]), "dtype_config_dict"),
])
def test_dtype_config_bad_input_names_the_argument(call, argument):
    with pytest.raises((TypeError, ValueError), match=argument):
        call()


def test_torch_rejects_bad_dtype_in_from_dict_too():
    with pytest.raises(ValueError, match="input_dtype"):
        tbc.DTypeConfig.from_dict({"input_dtype": 3})


def _int8():
    return DTypeConfig(input_dtype=jaxq.quint8, output_dtype=jaxq.quint8,
                       weight_dtype=jaxq.qint8, bias_dtype=jaxq.float32)


def _fuser(is_qat, a, b):
    return (a, b)


def _full_pattern_config(cls, dtype_config, linear, relu):
    return (cls((linear, relu))
            .set_observation_type(type(cls().observation_type).OUTPUT_SHARE_OBSERVER_WITH_INPUT)
            .add_dtype_config(dtype_config).set_root_module(linear).set_qat_module(linear)
            .set_reference_quantized_module(linear).set_fused_module(linear)
            .set_fuser_method(_fuser)._set_root_node_getter(_fuser)
            ._set_extra_inputs_getter(_fuser)
            ._set_num_tensor_args_to_observation_type(
                {1: type(cls().observation_type).OUTPUT_SHARE_OBSERVER_WITH_INPUT})
            ._set_input_type_to_index({"weight": 1}))


def test_backend_pattern_config_dict_matches_torch_and_round_trips():
    torch_config = _full_pattern_config(tbc.BackendPatternConfig,
                                        tbc.DTypeConfig(**DTYPE_KWARGS[0]), torch.nn.Linear,
                                        torch.nn.ReLU)
    config = _full_pattern_config(BackendPatternConfig, _int8(), nnx.Linear, jax.nn.relu)
    torch_dict, jaxq_dict = torch_config.to_dict(), config.to_dict()
    assert list(jaxq_dict) == list(torch_dict)
    assert jaxq_dict["observation_type"].name == torch_dict["observation_type"].name
    assert jaxq_dict["pattern"] == (nnx.Linear, jax.nn.relu)
    assert BackendPatternConfig.from_dict(jaxq_dict).to_dict() == jaxq_dict
    # Minimal config: same keys as torch's.
    assert list(BackendPatternConfig(nnx.Linear).to_dict()) == list(
        tbc.BackendPatternConfig(torch.nn.Linear).to_dict())
    assert "BackendPatternConfig" in repr(config)


def test_complex_format_pattern():
    config = BackendPatternConfig()._set_pattern_complex_format(
        (operator.add, (jax.nn.relu, nnx.Conv)))
    assert pattern_in_reversed_nested_tuple_format(config) == (
        operator.add, (jax.nn.relu, nnx.Conv))
    assert BackendPatternConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="pattern_complex_format"):
        config.set_pattern(nnx.Conv)
    with pytest.raises(ValueError, match="pattern_complex_format"):
        BackendPatternConfig(nnx.Conv)._set_pattern_complex_format(nnx.Conv)


@pytest.mark.parametrize("pattern", [
    nnx.Linear, (nnx.Linear, jax.nn.relu), (nnx.Conv, nnx.BatchNorm, jax.nn.relu)])
def test_reversed_nested_tuple_format_matches_torch(pattern):
    torch_pattern = {nnx.Linear: torch.nn.Linear, jax.nn.relu: torch.nn.ReLU,
                     nnx.Conv: torch.nn.Conv2d, nnx.BatchNorm: torch.nn.BatchNorm2d}
    translate = {v: k for k, v in torch_pattern.items()}
    torch_p = (tuple(torch_pattern[p] for p in pattern) if isinstance(pattern, tuple)
               else torch_pattern[pattern])
    torch_key = torch_bc_utils._get_pattern_in_reversed_nested_tuple_format(
        tbc.BackendPatternConfig(torch_p))

    def back(p):
        return tuple(back(x) for x in p) if isinstance(p, tuple) else translate[p]
    assert pattern_in_reversed_nested_tuple_format(BackendPatternConfig(pattern)) == back(
        torch_key)


@pytest.mark.parametrize("call,argument", [
    (lambda: BackendPatternConfig((nnx.Linear,) * 4), "pattern"),
    (lambda: BackendPatternConfig((nnx.Linear, 3)), "pattern"),
    (lambda: BackendPatternConfig(nnx.Linear).set_observation_type(0), "observation_type"),
    (lambda: BackendPatternConfig(nnx.Linear).add_dtype_config({}), "dtype_config"),
    (lambda: BackendPatternConfig(nnx.Linear).set_dtype_configs([_int8(), 1]), "dtype_configs"),
    (lambda: BackendPatternConfig(nnx.Linear).set_root_module(3), "root_module"),
    (lambda: BackendPatternConfig(nnx.Linear).set_qat_module("x"), "qat_module"),
    (lambda: BackendPatternConfig(nnx.Linear).set_fuser_method(1), "fuser_method"),
    (lambda: BackendPatternConfig(nnx.Linear)._set_input_type_to_index({1: 1}),
     "input_type_to_index"),
    (lambda: BackendPatternConfig.from_dict({"dtype_configs": [3]}), "dtype_configs"),
    (lambda: BackendConfig(3), "name"),
    (lambda: BackendConfig().set_backend_pattern_config({}), "config"),
    (lambda: BackendConfig().set_backend_pattern_config(BackendPatternConfig()), "pattern"),
    (lambda: BackendConfig.from_dict({"configs": [3]}), "configs"),
])
def test_pattern_and_backend_config_bad_input_names_the_argument(call, argument):
    with pytest.raises((TypeError, ValueError), match=argument):
        call()


def test_torch_raises_the_same_errors_for_bad_configs():
    with pytest.raises(ValueError, match="configs"):
        tbc.BackendConfig.from_dict({"configs": [3]})
    with pytest.raises(ValueError, match="dtype_configs"):
        tbc.BackendPatternConfig.from_dict({"dtype_configs": [3]})
    with pytest.raises(ValueError, match="pattern"):
        tbc.BackendConfig().set_backend_pattern_config(tbc.BackendPatternConfig())


def test_backend_config_overrides_by_pattern_and_round_trips():
    first = BackendPatternConfig(nnx.Linear).add_dtype_config(_int8())
    second = BackendPatternConfig(nnx.Linear)
    third = BackendPatternConfig((nnx.Linear, jax.nn.relu)).add_dtype_config(_int8())
    config = BackendConfig("mine").set_backend_pattern_configs([first, third, second])
    assert config.configs == [second, third]
    assert config.set_name("other").name == "other"
    as_dict = config.to_dict()
    assert list(as_dict) == list(tbc.BackendConfig("x").to_dict())
    rebuilt = BackendConfig.from_dict(as_dict)
    assert rebuilt.to_dict() == as_dict
    assert BackendConfig.from_dict({"configs": [first]}).configs == [first]
    assert bc_utils.get_pattern_to_dtype_configs(config) == {
        nnx.Linear: [], (jax.nn.relu, nnx.Linear): [_int8()]}


def test_utils_lookups():
    config = BackendConfig().set_backend_pattern_configs([
        BackendPatternConfig(nnx.Linear).set_root_module(nnx.Linear)
        .set_reference_quantized_module(nnx.LinearGeneral).set_qat_module(nnx.Einsum),
        BackendPatternConfig((nnx.Linear, jax.nn.relu)).set_fuser_method(_fuser)
        .set_fused_module(nnx.Einsum),
        BackendPatternConfig((nnx.Conv, nnx.BatchNorm, jax.nn.relu))
        .set_fuser_method(lambda is_qat, a, b, c: (a, b, c)),
    ])
    assert bc_utils.get_root_module_to_quantized_reference_module(config) == {
        nnx.Linear: nnx.LinearGeneral}
    assert bc_utils.get_qat_module_classes(config) == (nnx.Einsum,)
    assert bc_utils.get_fused_module_classes(config) == (nnx.Einsum,)
    assert bc_utils.get_module_to_qat_module(config) == {nnx.Linear: nnx.Einsum}
    fusers = bc_utils.get_fuser_method_mapping(config)
    assert fusers[(jax.nn.relu, nnx.Linear)](False, "relu", "linear") == ("linear", "relu")
    assert fusers[(jax.nn.relu, (nnx.BatchNorm, nnx.Conv))](False, "r", ("b", "c")) == (
        "c", "b", "r")
