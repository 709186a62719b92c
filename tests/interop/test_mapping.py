"""QConfigMapping conversion: defaults, every setter, precedence, collisions, round trips."""

from __future__ import annotations

import warnings

import jax
import pytest
import torch
import torch.ao.quantization as tq
import torch.nn.functional as F
from flax import nnx
from torch.ao.quantization.fx.qconfig_mapping_utils import (
    _maybe_adjust_qconfig_for_module_name_object_type_order,
    _maybe_adjust_qconfig_for_module_type_or_name,
)

from jaxq import qconfig_mapping as jqm
from jaxq.interop import TranslationWarning, from_torch, to_torch
from jaxq.interop.mapping import jaxq_mapping_spec
from jaxq.interop.specs import jaxq_qconfig_spec, torch_qconfig_spec
from tests.interop._helpers import assert_same_qparams

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _convert(mapping):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TranslationWarning)
        return from_torch(mapping)


@pytest.mark.parametrize("backend", ["x86", "qnnpack"])
@pytest.mark.parametrize("qat", [False, True])
def test_default_mapping_equals_jaxq_default(backend, qat, rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = (tq.get_default_qat_qconfig_mapping(backend) if qat
                  else tq.get_default_qconfig_mapping(backend))
    with pytest.warns(TranslationWarning, match="layer_norm"):
        ours = from_torch(theirs)
    expected = (jqm.get_default_qat_qconfig_mapping(backend) if qat
                else jqm.get_default_qconfig_mapping(backend))
    assert jaxq_mapping_spec(ours) == jaxq_mapping_spec(expected)
    # Every entry's observers compute torch's qparams on the same data.
    pairs = [(theirs.global_qconfig, ours.global_qconfig)]
    pairs += [(qc, ours.object_type_qconfigs[jax.nn.sigmoid])
              for op, qc in theirs.object_type_qconfigs.items() if op is torch.sigmoid]
    pairs += [(theirs.object_type_qconfigs[torch.nn.ConvTranspose2d],
               ours.object_type_qconfigs[nnx.ConvTranspose])]
    for torch_qconfig, jaxq_qconfig in pairs:
        assert_same_qparams(torch_qconfig.activation, jaxq_qconfig.activation, "activation",
                            rng)
        assert_same_qparams(torch_qconfig.weight, jaxq_qconfig.weight, "weight", rng)


def test_strict_raises_naming_the_entry():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = tq.get_default_qconfig_mapping("x86")
    with pytest.raises(ValueError, match="torch.nn.functional.layer_norm"):
        from_torch(theirs, strict=True)


def _custom_torch_mapping():
    qconfig = tq.get_default_qconfig("qnnpack")
    per_channel = tq.QConfig(activation=tq.MinMaxObserver.with_args(reduce_range=True),
                             weight=tq.default_per_channel_weight_observer)
    qat = tq.get_default_qat_qconfig("x86")
    return (tq.QConfigMapping()
            .set_global(qconfig)
            .set_object_type(torch.nn.Linear, per_channel)
            .set_object_type(torch.nn.Conv2d, qat)
            .set_object_type(torch.nn.Conv1d, qat)       # collapses onto nnx.Conv with Conv2d
            .set_object_type(F.relu, None)
            .set_object_type(torch.nn.ReLU, None)
            .set_object_type("reshape", tq.default_reuse_input_qconfig)
            .set_module_name_regex("blocks\\.[0-9]+\\.fc", qat)
            .set_module_name_regex("blocks\\..*", per_channel)
            .set_module_name("head", None)
            .set_module_name("blocks.1", qconfig)
            .set_module_name_object_type_order("blocks.0", torch.nn.functional.linear, 0,
                                               per_channel)
            .set_module_name_object_type_order("", torch.add, 1, None))


QUERIES = [  # (module name, torch type, jaxq type)
    ("fc", torch.nn.Linear, nnx.Linear),
    ("conv", torch.nn.Conv2d, nnx.Conv),
    ("blocks.0.fc", torch.nn.Linear, nnx.Linear),
    ("blocks.3.conv", torch.nn.Conv2d, nnx.Conv),
    ("blocks.1.fc", torch.nn.Linear, nnx.Linear),
    ("head", torch.nn.Linear, nnx.Linear),
    ("head.proj", torch.nn.Linear, nnx.Linear),
    ("act", torch.nn.ReLU, jax.nn.relu),
    ("other", torch.nn.LayerNorm, nnx.LayerNorm),
]


def _same(jaxq_qconfig, torch_qconfig):
    return jaxq_qconfig_spec(jaxq_qconfig) == torch_qconfig_spec(torch_qconfig)


def test_every_setter_order_and_precedence(rng):
    theirs = _custom_torch_mapping()
    ours = from_torch(theirs)
    assert list(ours.object_type_qconfigs) == [nnx.Linear, nnx.Conv, jax.nn.relu, "reshape"]
    assert list(ours.module_name_regex_qconfigs) == list(theirs.module_name_regex_qconfigs)
    assert list(ours.module_name_qconfigs) == list(theirs.module_name_qconfigs)
    assert [(m, i) for m, _, i in ours.module_name_object_type_order_qconfigs] == [
        ("blocks.0", 0), ("", 1)]
    for name, torch_type, jaxq_type in QUERIES:
        expected = _maybe_adjust_qconfig_for_module_type_or_name(
            theirs, torch_type, name, theirs.global_qconfig)
        actual = ours.module_type_or_name_qconfig(jaxq_type, name, ours.global_qconfig)
        assert _same(actual, expected), name
    expected = _maybe_adjust_qconfig_for_module_name_object_type_order(
        theirs, "blocks.0", torch.nn.functional.linear, 0, None)
    actual = ours.module_name_object_type_order_qconfig("blocks.0", jax.lax.dot_general, 0,
                                                        None)
    assert _same(actual, expected)
    assert_same_qparams(theirs.object_type_qconfigs[torch.nn.Linear].weight,
                        ours.object_type_qconfigs[nnx.Linear].weight, "weight", rng)
    assert_same_qparams(theirs.object_type_qconfigs[torch.nn.Linear].activation,
                        ours.object_type_qconfigs[nnx.Linear].activation, "activation", rng)


def test_round_trip_through_torch():
    ours = from_torch(_custom_torch_mapping())
    back = to_torch(ours)
    # nnx.Conv expands to Conv1d/2d/3d, jax.nn.relu to every torch spelling of relu.
    assert {torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, F.relu, torch.relu} <= set(
        back.object_type_qconfigs)
    assert jaxq_mapping_spec(from_torch(back)) == jaxq_mapping_spec(ours)


def test_collapsed_entries_with_different_qconfigs_raise():
    theirs = (tq.QConfigMapping().set_object_type(torch.nn.Conv1d, tq.default_qconfig)
              .set_object_type(torch.nn.Conv2d, tq.default_per_channel_qconfig))
    with pytest.raises(ValueError, match="torch.nn.Conv1d.*torch.nn.Conv2d"):
        from_torch(theirs)


class _TorchBlock(torch.nn.Module):
    pass


class _JaxqBlock(nnx.Module):
    pass


def test_type_map_for_own_modules():
    theirs = tq.QConfigMapping().set_object_type(_TorchBlock, tq.default_qconfig)
    with pytest.raises(ValueError, match="_TorchBlock"):
        from_torch(theirs)
    ours = from_torch(theirs, type_map={_TorchBlock: _JaxqBlock})
    assert list(ours.object_type_qconfigs) == [_JaxqBlock]
