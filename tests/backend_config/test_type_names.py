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
