"""QConfigMapping: setters, torch's precedence, dict round trips, default mappings."""

import operator
import re

import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import qconfig_mapping as torch_qm
from torch.ao.quantization.fx import qconfig_mapping_utils as torch_utils

from jaxq import qconfig_mapping as jqm
from jaxq.backend_config import type_names
from jaxq.qconfig_mapping import QConfigMapping


class TypeA:
    pass


class TypeB:
    pass


# Object types valid in both torch's and jaxq's mapping (torch accepts any hashable).
OBJECT_TYPES = [TypeA, TypeB, operator.add, "reshape"]
NAMES = ["", "a", "a.b", "a.b.c", "a.c", "b", "b.a", "ab"]
REGEXES = [r"a\..*", r"a\.b.*", r".*c", "b", "a"]
QCONFIGS = ["q0", "q1", "q2", "q3", None]


def _random_mappings(rng, n):
    """The same random mapping built in torch and in jaxq."""
    for _ in range(n):
        torch_mapping, jaxq_mapping = torch_qm.QConfigMapping(), QConfigMapping()
        calls = [("set_global", (rng.choice(QCONFIGS),))]
        for _ in range(rng.integers(0, 4)):
            calls.append(("set_object_type", (OBJECT_TYPES[rng.integers(len(OBJECT_TYPES))],
                                              rng.choice(QCONFIGS))))
        for _ in range(rng.integers(0, 3)):
            calls.append(("set_module_name_regex", (rng.choice(REGEXES), rng.choice(QCONFIGS))))
        for _ in range(rng.integers(0, 3)):
            calls.append(("set_module_name", (rng.choice(NAMES[1:]), rng.choice(QCONFIGS))))
        for _ in range(rng.integers(0, 3)):
            calls.append(("set_module_name_object_type_order", (
                rng.choice(NAMES), OBJECT_TYPES[rng.integers(len(OBJECT_TYPES))],
                int(rng.integers(0, 3)), rng.choice(QCONFIGS))))
        rng.shuffle(calls)
        for method, args in calls:
            args = tuple(None if a is None else (str(a) if isinstance(a, np.str_) else a)
                         for a in args)
            getattr(torch_mapping, method)(*args)
            getattr(jaxq_mapping, method)(*args)
        yield torch_mapping, jaxq_mapping


def _torch_call_module(mapping, module_name, module_type, index):
    # torch's _generate_node_name_to_qconfig, call_module branch.
    qconfig = torch_utils._maybe_adjust_qconfig_for_module_type_or_name(
        mapping, module_type, module_name, mapping.global_qconfig)
    parent, _ = module_name.rpartition(".")[0], None
    return torch_utils._maybe_adjust_qconfig_for_module_name_object_type_order(
        mapping, parent, module_type, index, qconfig)


def _torch_call_function(mapping, function, scope_name, scope_type, index):
    # torch's _generate_node_name_to_qconfig, call_function branch.
    qconfig = torch_utils._get_object_type_qconfig(mapping, function, mapping.global_qconfig)
    qconfig = torch_utils._maybe_adjust_qconfig_for_module_type_or_name(
        mapping, scope_type, scope_name, qconfig)
    return torch_utils._maybe_adjust_qconfig_for_module_name_object_type_order(
        mapping, scope_name, function, index, qconfig)


def _torch_call_method(mapping, method, scope_name, scope_type):
    # torch's _generate_node_name_to_qconfig, call_method branch.
    qconfig = torch_utils._maybe_adjust_qconfig_for_module_type_or_name(
        mapping, method, scope_name, mapping.global_qconfig)
    return torch_utils._maybe_adjust_qconfig_for_module_type_or_name(
        mapping, scope_type, scope_name, qconfig)


def test_resolvers_match_torch_on_random_mappings(rng):
    checked = 0
    for torch_mapping, jaxq_mapping in _random_mappings(rng, 150):
        for name in NAMES:
            for object_type in OBJECT_TYPES:
                for index in range(3):
                    if name:
                        assert jaxq_mapping.qconfig_for_module(name, object_type, index) == (
                            _torch_call_module(torch_mapping, name, object_type, index))
                    for scope_type in (TypeA, TypeB):
                        assert jaxq_mapping.qconfig_for_function(
                            object_type, name, scope_type, index) == _torch_call_function(
                                torch_mapping, object_type, name, scope_type, index)
                        checked += 1
                assert jaxq_mapping.qconfig_for_method("reshape", name, object_type) == (
                    _torch_call_method(torch_mapping, "reshape", name, object_type))
                assert jaxq_mapping.module_type_or_name_qconfig(object_type, name, "fb") == (
                    torch_utils._maybe_adjust_qconfig_for_module_type_or_name(
                        torch_mapping, object_type, name, "fb"))
    assert checked > 10000


# (setter calls, query, expected) written out from torch's documented precedence.
PRECEDENCE_CASES = [
    # global < object_type
    ([("set_global", "g"), ("set_object_type", nnx.Linear, "t")], ("fc", nnx.Linear), "t"),
    ([("set_global", "g"), ("set_object_type", nnx.Linear, "t")], ("fc", nnx.Conv), "g"),
    # object_type < regex
    ([("set_object_type", nnx.Linear, "t"), ("set_module_name_regex", "f.*", "r")],
     ("fc", nnx.Linear), "r"),
    # first registered regex wins, and re-setting keeps the position
    ([("set_module_name_regex", "foo.*bar.*conv[0-9]+", "r1"),
      ("set_module_name_regex", "foo.*bar.*", "r2"), ("set_module_name_regex", "foo.*", "r3")],
     ("foo.bar.conv0", nnx.Conv), "r1"),
    ([("set_module_name_regex", "foo.*bar.*conv[0-9]+", "r1"),
      ("set_module_name_regex", "foo.*bar.*", "r2"), ("set_module_name_regex", "foo.*", "r3")],
     ("foo.bar.linear", nnx.Linear), "r2"),
    ([("set_module_name_regex", "foo.*bar.*conv[0-9]+", "r1"),
      ("set_module_name_regex", "foo.*bar.*", "r2"), ("set_module_name_regex", "foo.*", "r3")],
     ("foo.baz.relu", nnx.Linear), "r3"),
    ([("set_module_name_regex", "a.*", "r1"), ("set_module_name_regex", "a.b", "r2"),
      ("set_module_name_regex", "a.*", "r3")], ("a.b", nnx.Linear), "r3"),
    # regex < module_name; module_name falls back through parents
    ([("set_module_name_regex", "a.*", "r"), ("set_module_name", "a", "n")],
     ("a.b.c", nnx.Linear), "n"),
    ([("set_module_name", "a.b", "n1"), ("set_module_name", "a", "n2")],
     ("a.b.c", nnx.Linear), "n1"),
    ([("set_module_name", "a.b", "n1")], ("a.bc", nnx.Linear), None),
    # module_name may disable quantization
    ([("set_global", "g"), ("set_module_name", "a", None)], ("a.b", nnx.Linear), None),
    # module_name < module_name_object_type_order (index counted in the parent)
    ([("set_module_name", "a.fc", "n"),
      ("set_module_name_object_type_order", "a", nnx.Linear, 1, "o")],
     ("a.fc", nnx.Linear, 1), "o"),
    ([("set_module_name", "a.fc", "n"),
      ("set_module_name_object_type_order", "a", nnx.Linear, 1, "o")],
     ("a.fc", nnx.Linear, 0), "n"),
]


@pytest.mark.parametrize("calls,query,expected", PRECEDENCE_CASES)
def test_precedence_table(calls, query, expected):
    torch_mapping, mapping = torch_qm.QConfigMapping(), QConfigMapping()
    for method, *args in calls:
        getattr(mapping, method)(*args)
        getattr(torch_mapping, method)(*args)
    name, module_type, *index = query
    index = index[0] if index else 0
    assert mapping.qconfig_for_module(name, module_type, index) == expected
    assert _torch_call_module(torch_mapping, name, module_type, index) == expected


def test_function_in_named_scope_takes_module_name_over_function_type():
    mapping = (QConfigMapping().set_global("g").set_object_type(operator.add, "add")
               .set_module_name("block", "block")
               .set_module_name_object_type_order("block", operator.add, 1, "second_add"))
    assert mapping.qconfig_for_function(operator.add, "", nnx.Module, 0) == "add"
    assert mapping.qconfig_for_function(operator.add, "block", nnx.Module, 0) == "block"
    assert mapping.qconfig_for_function(operator.add, "block", nnx.Module, 1) == "second_add"
    assert mapping.qconfig_for_function(operator.add, "block", nnx.Module) == "block"


def test_eager_lookup_without_index_skips_order():
    mapping = (QConfigMapping().set_global("g")
               .set_module_name_object_type_order("", nnx.Linear, 0, "o"))
    assert mapping.qconfig_for_module("fc", nnx.Linear) == "g"
    assert mapping.qconfig_for_module("fc", nnx.Linear, 0) == "o"


def test_flattened_matches_torch():
    torch_mapping = (torch_qm.QConfigMapping().set_global("g").set_object_type(TypeA, "a")
                     .set_module_name("x.y", "n").set_module_name_regex("x.*", "r"))
    mapping = QConfigMapping.from_dict(torch_mapping.to_dict())
    assert mapping.flattened() == torch_utils._get_flattened_qconfig_dict(torch_mapping)


def test_setters_chain_and_override():
    mapping = QConfigMapping()
    assert mapping.set_global("g") is mapping
    mapping.set_object_type(nnx.Linear, "a").set_object_type(nnx.Linear, "b")
    assert list(mapping.object_type_qconfigs.items()) == [(nnx.Linear, "b")]
    mapping.set_module_name_regex("x", 1).set_module_name_regex("y", 2)
    mapping.set_module_name_regex("x", 3)
    assert list(mapping.module_name_regex_qconfigs.items()) == [("x", 3), ("y", 2)]


def _sample_mapping(mapping):
    return (mapping.set_global("g").set_object_type(TypeA, "a").set_object_type("reshape", None)
            .set_module_name_regex("x.*", "r").set_module_name("x.y", "n")
            .set_module_name_object_type_order("x", TypeB, 2, "o"))


def test_to_dict_matches_torch_and_round_trips():
    torch_dict = _sample_mapping(torch_qm.QConfigMapping()).to_dict()
    mapping = _sample_mapping(QConfigMapping())
    assert mapping.to_dict() == torch_dict
    assert QConfigMapping.from_dict(torch_dict).to_dict() == torch_dict
    assert torch_qm.QConfigMapping.from_dict(mapping.to_dict()).to_dict() == torch_dict
    assert repr(mapping) == repr(_sample_mapping(torch_qm.QConfigMapping()))


def test_from_dict_with_missing_keys():
    mapping = QConfigMapping.from_dict({"module_name": [("a", "n")]})
    assert mapping.global_qconfig is None
    assert mapping.to_dict() == torch_qm.QConfigMapping.from_dict(
        {"module_name": [("a", "n")]}).to_dict()


@pytest.mark.parametrize("call,argument", [
    (lambda m: m.set_object_type(3, "q"), "object_type"),
    (lambda m: m.set_object_type([nnx.Linear], "q"), "object_type"),
    (lambda m: m.set_module_name_regex(3, "q"), "module_name_regex"),
    (lambda m: m.set_module_name_regex("(", "q"), "module_name_regex"),
    (lambda m: m.set_module_name(nnx.Linear, "q"), "module_name"),
    (lambda m: m.set_module_name_object_type_order("a", nnx.Linear, -1, "q"), "index"),
    (lambda m: m.set_module_name_object_type_order("a", nnx.Linear, "0", "q"), "index"),
    (lambda m: m.set_module_name_object_type_order(0, nnx.Linear, 0, "q"), "module_name"),
    (lambda m: m.qconfig_for_module(None, nnx.Linear), "module_name"),
    (lambda m: QConfigMapping.from_dict({"objecttype": []}), "objecttype"),
    (lambda m: QConfigMapping.from_dict({"module_name": [("a",)]}), "module_name"),
    (lambda m: QConfigMapping.from_dict([]), "qconfig_dict"),
])
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises((TypeError, ValueError), match=re.escape(argument)):
        call(QConfigMapping())


# --- default mappings against torch's ----------------------------------------------------

@pytest.mark.parametrize("backend", ["x86", "fbgemm", "qnnpack", "onednn"])
@pytest.mark.parametrize("is_qat", [False, True])
def test_default_mapping_matches_torch(backend, is_qat):
    from tests.test_qconfig import assert_qconfig_matches_torch

    if is_qat:
        torch_mapping = torch_qm.get_default_qat_qconfig_mapping(backend)
        mapping = jqm.get_default_qat_qconfig_mapping(backend)
    else:
        torch_mapping = torch_qm.get_default_qconfig_mapping(backend)
        mapping = jqm.get_default_qconfig_mapping(backend)
    assert_qconfig_matches_torch(mapping.global_qconfig, torch_mapping.global_qconfig)
    expected_keys = []
    for torch_type, torch_qconfig in torch_mapping.object_type_qconfigs.items():
        jaxq_type = type_names.translate_torch_object(torch_type, missing="none")
        if jaxq_type is None:
            # Only F.layer_norm lacks a JAX form; its module form is covered.
            assert torch_type is torch.nn.functional.layer_norm
            continue
        expected_keys.append(jaxq_type)
        assert_qconfig_matches_torch(mapping.object_type_qconfigs[jaxq_type], torch_qconfig)
    assert set(mapping.object_type_qconfigs) == set(expected_keys)
    assert mapping.module_name_qconfigs == {} and mapping.module_name_regex_qconfigs == {}


def test_default_mapping_fixed_qparams_ops_share_one_qconfig():
    import jax
    import jax.numpy as jnp

    mapping = jqm.get_default_qconfig_mapping()
    sigmoid = mapping.object_type_qconfigs[jax.nn.sigmoid]
    assert mapping.object_type_qconfigs[jax.nn.hard_sigmoid] is sigmoid
    assert mapping.object_type_qconfigs[jax.nn.softmax] is sigmoid
    assert mapping.object_type_qconfigs[jnp.tanh] is not sigmoid


@pytest.mark.parametrize("backend", ["X86", "cuda", None])
def test_default_mapping_rejects_unknown_backend(backend):
    with pytest.raises(ValueError, match="backend.*x86"):
        jqm.get_default_qconfig_mapping(backend)
    with pytest.raises(ValueError, match="backend.*x86"):
        jqm.get_default_qat_qconfig_mapping(backend)


def test_symmetric_qnnpack_mappings_match_torch():
    from tests.test_qconfig import assert_qconfig_matches_torch

    for jaxq_fn, torch_fn in [
            (jqm._get_symmetric_qnnpack_qconfig_mapping,
             torch_qm._get_symmetric_qnnpack_qconfig_mapping),
            (jqm._get_symmetric_qnnpack_qat_qconfig_mapping,
             torch_qm._get_symmetric_qnnpack_qat_qconfig_mapping)]:
        mapping, torch_mapping = jaxq_fn(), torch_fn()
        assert_qconfig_matches_torch(mapping.global_qconfig, torch_mapping.global_qconfig)
        for torch_type, torch_qconfig in torch_mapping.object_type_qconfigs.items():
            jaxq_type = type_names.translate_torch_object(torch_type, missing="none")
            if jaxq_type is not None:
                assert_qconfig_matches_torch(mapping.object_type_qconfigs[jaxq_type],
                                             torch_qconfig)
