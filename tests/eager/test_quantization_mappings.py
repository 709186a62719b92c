"""jaxq's default module mappings mirror torch's entry by entry (or say why not)."""

import re
import warnings

import pytest
import torch
import torch.ao.quantization.quantization_mappings as tmap
from flax import nnx

import jaxq.nn.modules as jmodules
import jaxq.quantization_mappings as jmap
from jaxq.backend_config.type_names import TORCH_TO_JAXQ, ByRank, import_object

warnings.filterwarnings("ignore", category=DeprecationWarning)

_RANKED = re.compile(r"^(Conv|ConvTranspose|BatchNorm|InstanceNorm)([123])d$")
_RANKLESS_IN_FLAX = ("BatchNorm", "InstanceNorm")


def _subpackage(cls) -> str:
    module = cls.__module__
    module = module.split(".modules")[0]
    return module.replace("torch.ao.quantization.stubs", "jaxq.eager").replace(
        "torch.ao.nn", "jaxq.nn")


def _jaxq_key(tcls):
    """(jaxq key object or None, rank or None, torch name) for a torch float class."""
    name = tcls.__name__
    if tcls.__module__.startswith("torch.nn."):
        torch_name = f"torch.nn.{name}"
        match = _RANKED.match(name)
        if match:
            translation = TORCH_TO_JAXQ[torch_name]
            return import_object(translation.target), int(match.group(2)), torch_name
        if hasattr(jmodules, name):
            return getattr(jmodules, name), None, torch_name
        translation = TORCH_TO_JAXQ.get(torch_name)
        target = translation.target if translation else None
        return (import_object(target) if target else None), None, torch_name
    path = f"{_subpackage(tcls)}.{name}"
    try:
        return import_object(path), None, path
    except LookupError:
        return None, None, path


def _is_unavailable(table: str, torch_name: str, *paths: str) -> bool:
    for entry in jmap.UNAVAILABLE_MAPPINGS:
        if entry.startswith(table) and (torch_name in entry
                                        or any(p and p in entry for p in paths)):
            return True
    return False


@pytest.mark.parametrize("table", ["DEFAULT_STATIC_QUANT_MODULE_MAPPINGS",
                                   "DEFAULT_QAT_MODULE_MAPPINGS",
                                   "DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS",
                                   "DEFAULT_REFERENCE_STATIC_QUANT_MODULE_MAPPINGS"])
def test_every_torch_entry_is_mapped_or_explained(table):
    torch_table, jaxq_table = getattr(tmap, table), getattr(jmap, table)
    checked = 0
    for tkey, tvalue in torch_table.items():
        key, rank, torch_name = _jaxq_key(tkey)
        value_path = f"{_subpackage(tvalue)}.{tvalue.__name__}"
        if key is None or key not in jaxq_table:
            assert _is_unavailable(table, torch_name, value_path, f".{tkey.__name__}"), (
                tkey, tvalue)
            continue
        value = jaxq_table[key]
        if isinstance(value, ByRank):
            resolved = dict(value.by_rank).get(rank)
            if resolved is None:
                assert _is_unavailable(table, torch_name, value_path, f".{tkey.__name__}"), (
                tkey, tvalue)
                continue
            value = resolved
        expected_name = tvalue.__name__
        if rank is not None and _RANKED.match(tkey.__name__).group(1) in _RANKLESS_IN_FLAX:
            # Flax's BatchNorm / InstanceNorm carry no rank: jaxq maps them to the 2-d class.
            expected_name = re.sub(r"[123]d$", "2d", expected_name)
        assert value.__name__ == expected_name, (tkey, tvalue, value)
        assert value.__module__.startswith(_subpackage(tvalue)), (tkey, tvalue, value)
        checked += 1
    assert checked > 0 or table == "DEFAULT_REFERENCE_STATIC_QUANT_MODULE_MAPPINGS"


def test_propagation_list_and_getters():
    propagation = jmap.get_default_qconfig_propagation_list()
    assert {nnx.Linear, nnx.Conv, nnx.Sequential, jmodules.ReLU6} <= propagation
    from jaxq.eager import QuantStub
    assert QuantStub in propagation
    static = jmap.get_default_static_quant_module_mappings()
    static[nnx.Linear] = None  # a copy
    assert jmap.DEFAULT_STATIC_QUANT_MODULE_MAPPINGS[nnx.Linear] is not None
    assert isinstance(jmap.get_static_quant_module_class(nnx.Conv), ByRank)
    with pytest.raises(ValueError, match="does not have a corresponding"):
        jmap.get_static_quant_module_class(nnx.Dropout.__mro__[-1])
    with pytest.raises(ValueError, match="does not have a corresponding"):
        jmap.get_dynamic_quant_module_class(nnx.Conv)
    assert jmap.get_dynamic_quant_module_class(nnx.Linear).__module__.startswith(
        "jaxq.nn.quantized.dynamic")
    assert jmap._get_special_act_post_process(jmodules.Sigmoid()) is not None
    assert not jmap._has_special_act_post_process(jmodules.Sigmoid(), training=False)
    qop = jmap.get_quantized_operator(next(iter(jmap.DEFAULT_FLOAT_TO_QUANTIZED_OPERATOR_MAPPINGS)))
    assert callable(qop)
    with pytest.raises(ValueError):
        jmap.get_quantized_operator(torch.relu)
    assert nnx.Linear in jmap.get_default_compare_output_module_list()
