"""jaxq's native and x86 backend configs against torch's, translated through the type table."""

import pytest
from torch.ao.quantization import backend_config as tbc
from torch.ao.quantization.backend_config.x86 import get_x86_backend_config as torch_x86

from jaxq.backend_config import ByRank, get_native_backend_config, get_x86_backend_config
from jaxq.backend_config import type_names
from jaxq.backend_config._common import SequentialFuser
from jaxq.backend_config.backend_config import pattern_in_reversed_nested_tuple_format
from tests.backend_config.test_backend_config import to_jaxq_dtype_config

CONFIG_PAIRS = {
    "native": (get_native_backend_config, tbc.get_native_backend_config),
    "x86": (get_x86_backend_config, torch_x86),
}


def _translate_pattern(pattern):
    if isinstance(pattern, tuple):
        elements = tuple(_translate_pattern(p) for p in pattern)
        return None if any(e is None for e in elements) else elements
    return type_names.translate_torch_object(pattern, missing="none")


def _rank(pattern):
    elements = pattern if isinstance(pattern, tuple) else (pattern,)
    ranks = {type_names.rank_of(type_names.torch_name_of(e)) for e in elements} - {None}
    assert len(ranks) <= 1
    return ranks.pop() if ranks else None


def _field(value, rank):
    if isinstance(value, ByRank):
        # A ByRank leaves out ranks whose jaxq module does not exist.
        return value.for_rank(rank) if rank in value.ranks else None
    return value


def _expected_fuser(torch_fuser):
    name = getattr(torch_fuser, "__name__", "")
    if name in ("fuse_conv_bn", "fuse_conv_bn_relu", "fuse_linear_bn", "fuse_convtranspose_bn"):
        return type_names.to_jaxq(
            f"torch.ao.quantization.fuser_method_mappings.{name}", missing="none")
    return "sequential"


@pytest.mark.parametrize("backend", list(CONFIG_PAIRS))
def test_default_backend_config_matches_torch(backend):
    jaxq_fn, torch_fn = CONFIG_PAIRS[backend]
    config, torch_config = jaxq_fn(), torch_fn()
    assert config.name == torch_config.name
    jaxq_by_key = config._pattern_complex_format_to_config
    expected_by_key_rank = {}
    for torch_pattern_config in torch_config.configs:
        pattern = _translate_pattern(torch_pattern_config.pattern)
        if pattern is None:
            continue
        key = pattern_in_reversed_nested_tuple_format(_Pattern(pattern))
        expected_by_key_rank[(key, _rank(torch_pattern_config.pattern))] = torch_pattern_config
    assert set(jaxq_by_key) == {key for key, _ in expected_by_key_rank}
    for (key, rank), torch_pc in expected_by_key_rank.items():
        pc = jaxq_by_key[key]
        assert pc.observation_type.name == torch_pc.observation_type.name, key
        assert pc.dtype_configs == [to_jaxq_dtype_config(d) for d in torch_pc.dtype_configs]
        assert pc._input_type_to_index == torch_pc._input_type_to_index
        assert {k: v.name for k, v in pc._num_tensor_args_to_observation_type.items()} == {
            k: v.name for k, v in torch_pc._num_tensor_args_to_observation_type.items()}
        for field in ("root_module", "qat_module", "reference_quantized_module",
                      "fused_module"):
            torch_value = getattr(torch_pc, field)
            expected = (None if torch_value is None else
                        type_names.translate_torch_object(torch_value, missing="none"))
            actual = getattr(pc, field)
            assert (None if actual is None else _field(actual, rank)) == expected, (key, field)
        fuser = _field(pc.fuser_method, rank) if pc.fuser_method is not None else None
        if torch_pc.fuser_method is None:
            assert fuser is None
        elif _expected_fuser(torch_pc.fuser_method) == "sequential":
            fused = type_names.translate_torch_object(torch_pc.fused_module, missing="none")
            assert fuser == (None if fused is None else SequentialFuser(fused))
        else:
            assert fuser == _expected_fuser(torch_pc.fuser_method)


class _Pattern:
    """Just enough of a BackendPatternConfig for pattern_in_reversed_nested_tuple_format."""

    def __init__(self, pattern):
        self.pattern = pattern
        self._pattern_complex_format = None


def test_flax_patterns_are_present():
    import operator

    import jax
    import jax.numpy as jnp
    from flax import nnx

    keys = get_x86_backend_config()._pattern_complex_format_to_config
    for key in [nnx.Linear, nnx.Conv, nnx.ConvTranspose, nnx.BatchNorm, (jax.nn.relu, nnx.Linear),
                (jax.nn.relu, nnx.Conv), (nnx.BatchNorm, nnx.Conv),
                (jax.nn.relu, (nnx.BatchNorm, nnx.Conv)), operator.add, jnp.add, operator.mul,
                jax.nn.relu, jax.nn.sigmoid, jnp.tanh, jax.nn.hard_swish, nnx.Embed, "reshape",
                jnp.concatenate, jax.lax.dot_general, jax.lax.conv_general_dilated]:
        assert key in keys, key
    fixed = keys[jax.nn.sigmoid].dtype_configs[0].output_dtype_with_constraints
    assert (fixed.scale_exact_match, fixed.zero_point_exact_match) == (1 / 256, 0)
    fixed = keys[jnp.tanh].dtype_configs[0].output_dtype_with_constraints
    assert (fixed.scale_exact_match, fixed.zero_point_exact_match) == (2 / 256, 128)


def test_configs_are_fresh_and_dict_round_trips():
    first, second = get_native_backend_config(), get_native_backend_config()
    assert first is not second and first.configs[0] is not second.configs[0]
    from jaxq.backend_config import BackendConfig, get_native_backend_config_dict
    as_dict = get_native_backend_config_dict()
    assert BackendConfig.from_dict(as_dict).to_dict() == as_dict
