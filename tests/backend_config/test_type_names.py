"""The torch -> jaxq translation table."""

import re

import jax
import pytest
import torch
from flax import nnx

from jaxq.backend_config import type_names
from jaxq.backend_config.type_names import TORCH_TO_JAXQ, ByRank

# Targets that name jaxq modules written by other parts of the project.
_PENDING_PREFIXES = ("jaxq.nn.", "jaxq.fuser_method_mappings.")


@pytest.mark.parametrize("torch_name", [n for n in TORCH_TO_JAXQ if "." in n])
def test_every_torch_name_exists_in_torch(torch_name):
    assert type_names.import_object(torch_name) is not None


@pytest.mark.parametrize("torch_name", [n for n in TORCH_TO_JAXQ if "." not in n])
def test_method_names_are_tensor_methods(torch_name):
    # torch's configs list "hardsigmoid"/"hardsigmoid_" (and onednn's "leaky_relu") as
    # methods though Tensor lacks them.
    assert hasattr(torch.Tensor, torch_name) or torch_name.startswith(
        ("hardsigmoid", "leaky_relu"))


@pytest.mark.parametrize("torch_name,translation", list(TORCH_TO_JAXQ.items()))
def test_every_target_resolves_or_is_explained(torch_name, translation):
    if translation.target is None:
        assert translation.note, f"{torch_name} has no target and no note"
        with pytest.raises(LookupError, match=re.escape(torch_name)):
            type_names.to_jaxq(torch_name)
        assert type_names.to_jaxq(torch_name, missing="none") is None
    elif translation.target.startswith("."):
        assert hasattr(jax.Array, translation.target[1:])
        assert type_names.to_jaxq(torch_name) == translation.target[1:]
    elif translation.target.startswith(_PENDING_PREFIXES):
        obj = type_names.to_jaxq(torch_name, missing="none")
        assert obj is None or callable(obj)
    else:
        assert callable(type_names.to_jaxq(torch_name))


@pytest.mark.parametrize("torch_name,translation", list(TORCH_TO_JAXQ.items()))
def test_rank_agrees_with_the_torch_name(torch_name, translation):
    digits = re.findall(r"([123])d$", torch_name)
    if translation.rank is not None:
        assert digits == [str(translation.rank)]
    elif digits and translation.target and not translation.target.startswith("jaxq."):
        pytest.fail(f"{torch_name} is rank-specific but its target has no rank")


def test_examples():
    assert type_names.to_jaxq("torch.nn.Conv2d") is nnx.Conv
    assert type_names.rank_of("torch.nn.Conv3d") == 3
    assert type_names.to_jaxq("torch.nn.ReLU") is jax.nn.relu
    assert type_names.to_jaxq("view") == "reshape"
    assert type_names.translate_torch_object(torch.nn.Linear) is nnx.Linear
    assert type_names.translate_torch_object(torch.nn.functional.relu) is jax.nn.relu
    assert type_names.torch_name_of(torch.nn.Conv1d) == "torch.nn.Conv1d"


@pytest.mark.parametrize("call,argument", [
    (lambda: type_names.to_jaxq("torch.nn.Nope"), "torch_name"),
    (lambda: type_names.to_jaxq("torch.nn.Linear", missing="ignore"), "missing"),
    (lambda: type_names.torch_name_of(object()), "torch_object"),
    (lambda: type_names.torch_name_of("nope"), "torch_object"),
    (lambda: type_names.import_object("no_such_package.x"), "path"),
    (lambda: type_names.import_object(3), "path"),
])
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises((KeyError, LookupError, TypeError, ValueError), match=argument):
        call()


def test_by_rank():
    choice = ByRank.from_dict({2: "b", 1: "a"})
    assert choice.ranks == (1, 2) and choice.for_rank(1) == "a"
    conv = nnx.Conv(2, 3, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    assert choice.for_module(conv) == "b"
    assert hash(choice) == hash(ByRank.from_dict({1: "a", 2: "b"}))
    with pytest.raises(KeyError, match="rank=3"):
        choice.for_rank(3)
    with pytest.raises(TypeError, match="module"):
        choice.for_module(nnx.BatchNorm(3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="rank"):
        ByRank.from_dict({-1: "a"})
    fuser = ByRank.from_dict({1: lambda is_qat, m: ("one", is_qat), 2: lambda is_qat, m: "two"})
    assert fuser(True, conv) == "two"
    with pytest.raises(TypeError, match="kernel_size"):
        fuser(True, 3)


# torch's multi-layer LSTM and MultiheadAttention: jaxq's float forms are the quantizable
# classes, so torch.nn.X and torch.ao.nn.quantizable.X land on one jaxq class, whose
# reverse lookup lists the torch.nn name first.
_RECURRENT_AND_ATTENTION = [
    # (torch class, jaxq path, first torch name of the reverse lookup)
    (torch.nn.LSTM, "jaxq.nn.quantizable.LSTM", "torch.nn.LSTM"),
    (torch.nn.MultiheadAttention, "jaxq.nn.quantizable.MultiheadAttention",
     "torch.nn.MultiheadAttention"),
    (torch.ao.nn.quantizable.LSTM, "jaxq.nn.quantizable.LSTM", "torch.nn.LSTM"),
    (torch.ao.nn.quantizable.MultiheadAttention, "jaxq.nn.quantizable.MultiheadAttention",
     "torch.nn.MultiheadAttention"),
    (torch.ao.nn.quantizable.LSTMCell, "jaxq.nn.quantizable.LSTMCell",
     "torch.ao.nn.quantizable.LSTMCell"),
    (torch.ao.nn.quantized.LSTM, "jaxq.nn.quantized.LSTM", "torch.ao.nn.quantized.LSTM"),
    (torch.ao.nn.quantized.MultiheadAttention, "jaxq.nn.quantized.MultiheadAttention",
     "torch.ao.nn.quantized.MultiheadAttention"),
    *[(getattr(torch.ao.nn.quantized.dynamic, name), f"jaxq.nn.quantized.dynamic.{name}",
       f"torch.ao.nn.quantized.dynamic.{name}")
      for name in ("LSTM", "GRU", "LSTMCell", "GRUCell", "RNNCell")],
]


@pytest.mark.parametrize("torch_cls,jaxq_path,first_name", _RECURRENT_AND_ATTENTION,
                         ids=[f"{c.__module__}.{c.__name__}"
                              for c, _, _ in _RECURRENT_AND_ATTENTION])
def test_recurrent_and_attention_modules_round_trip(torch_cls, jaxq_path, first_name):
    jaxq_cls = type_names.translate_torch_object(torch_cls)
    assert jaxq_cls is type_names.import_object(jaxq_path)
    torch_name = type_names.torch_name_of(torch_cls)
    assert type_names.to_jaxq(torch_name) is jaxq_cls
    names = type_names.torch_names_for(jaxq_cls)
    assert torch_name in names and names[0] == first_name
    assert all(type_names.to_jaxq(name) is jaxq_cls for name in names)
    assert type_names.jaxq_path_of(jaxq_cls) == jaxq_path


def test_torch_default_custom_config_dict_translates_to_jaxq_default():
    """torch's eager custom module config (nn.LSTM -> nnqa.LSTM -> nnq.LSTM, MHA alike)
    names only classes the table translates, and lands on jaxq's own default."""
    from torch.ao.quantization.quantize import get_default_custom_config_dict as torch_default

    from jaxq.eager import get_default_custom_config_dict

    translated = {
        kind: {type_names.translate_torch_object(float_cls):
               type_names.translate_torch_object(other_cls)
               for float_cls, other_cls in entries.items()}
        for kind, entries in torch_default().items()}
    assert translated == get_default_custom_config_dict()


def test_torch_dynamic_mapping_of_lstm_translates_to_jaxq_mapping():
    import torch.ao.quantization.quantization_mappings as tmap

    from jaxq.quantization_mappings import get_default_dynamic_quant_module_mappings

    key = type_names.translate_torch_object(torch.nn.LSTM)
    value = type_names.translate_torch_object(tmap.DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS[
        torch.nn.LSTM])
    assert get_default_dynamic_quant_module_mappings()[key] is value
