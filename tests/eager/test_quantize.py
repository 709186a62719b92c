"""propagate_qconfig_, prepare / prepare_qat / convert semantics, observed-module hooks
under nnx.jit, QAT flags without recompilation, and bad input."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx

import jaxq.nn as jnn
import jaxq.nn.quantized as nnq
from jaxq import qconfig as jqconfig
from jaxq.eager import (
    DeQuantStub,
    QuantStub,
    QuantWrapper,
    add_quant_dequant,
    convert,
    default_eval_fn,
    fuse_modules_qat,
    prepare,
    prepare_qat,
    propagate_qconfig_,
    quantize_dynamic,
    quantize_qat,
    swap_module,
)
from jaxq.eager import hooks
from jaxq.eager._tree import named_modules
from jaxq.fake_quantize import (
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
)
from jaxq.nn.intrinsic.qat import freeze_bn_stats, update_bn_stats
from jaxq.observer import MinMaxObserver, MovingAverageMinMaxObserver
from jaxq.qconfig_mapping import QConfigMapping
from jaxq.quantization_mappings import get_default_static_quant_module_mappings
from tests.eager._models import CNN_FUSE, FlaxCNN

warnings.filterwarnings("ignore", category=DeprecationWarning)


# --------------------------------------------------------------------------------------
# propagate_qconfig_ against torch
# --------------------------------------------------------------------------------------

class TBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)
        self.conv = torch.nn.Conv2d(1, 1, 1)


class TTree(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([TBlock(), TBlock()])
        self.head = torch.nn.Linear(2, 2)
        self.act = torch.nn.ReLU()


class JBlock(nnx.Module):
    def __init__(self):
        self.fc = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        self.conv = nnx.Conv(1, 1, (1, 1), rngs=nnx.Rngs(0))


class JTree(nnx.Module):
    def __init__(self):
        self.blocks = nnx.List([JBlock(), JBlock()])
        self.head = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        self.act = jnn.ReLU()


def _torch_qconfigs():
    return [tq.QConfig(activation=tq.MinMaxObserver.with_args(quant_min=0, quant_max=i + 10),
                       weight=tq.default_weight_observer) for i in range(4)]


def _jaxq_qconfigs():
    return [jqconfig.QConfig(activation=MinMaxObserver.with_args(quant_min=0,
                                                                 quant_max=i + 10),
                             weight=jqconfig.default_weight_observer) for i in range(4)]


def _label(qconfig):
    # torch wraps each qconfig (device-aware factories), so identify qconfigs by the
    # quant_max their activation observer is built with.
    if qconfig is None or qconfig == "missing":
        return qconfig
    return int(qconfig.activation().quant_max) - 10


def _labels(modules):
    return {name: _label(getattr(m, "qconfig", "missing")) for name, m in modules}


@pytest.mark.parametrize("as_mapping", [False, True])
def test_propagate_qconfig_precedence_matches_torch(as_mapping):
    tqs, jqs = _torch_qconfigs(), _jaxq_qconfigs()
    tmodel, model = TTree(), JTree()
    tmodel.head.qconfig, model.head.qconfig = tqs[3], jqs[3]
    tq.propagate_qconfig_(tmodel, {"": tqs[0], torch.nn.Linear: tqs[1], "blocks.1": tqs[2],
                                   "blocks.1.conv": None})
    if as_mapping:
        spec = (QConfigMapping().set_global(jqs[0]).set_object_type(nnx.Linear, jqs[1])
                .set_module_name("blocks.1", jqs[2]).set_module_name("blocks.1.conv", None))
    else:
        spec = {"": jqs[0], nnx.Linear: jqs[1], "blocks.1": jqs[2], "blocks.1.conv": None}
    assert propagate_qconfig_(model, spec) is None
    expected = _labels(tmodel.named_modules())
    got = _labels(named_modules(model))
    assert got == expected
    # The type entry beats the parent's name entry; a module's own qconfig beats both.
    assert got["blocks.1"] == 2 and got["blocks.1.fc"] == 1 and got["blocks.1.conv"] is None
    assert got["blocks.0.conv"] == 0 and got["head"] == 3


def test_propagate_qconfig_bad_input_leaves_model_unchanged():
    model = JTree()
    with pytest.raises(TypeError, match="not a QConfig"):
        propagate_qconfig_(model, {"head": "not a qconfig"})
    assert not any(hasattr(m, "qconfig") for _, m in named_modules(model))
    with pytest.raises(TypeError, match="qconfig_dict must be"):
        propagate_qconfig_(model, [jqconfig.default_qconfig])
    with pytest.raises(TypeError, match="flax.nnx.Module"):
        propagate_qconfig_(torch.nn.Linear(1, 1))
    convt = nnx.Sequential(nnx.ConvTranspose(1, 1, (2, 2), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="Per channel weight observer"):
        propagate_qconfig_(convt, {"": jqconfig.get_default_qconfig("x86")})
    assert not hasattr(convt.layers[0], "qconfig")


# --------------------------------------------------------------------------------------
# Observed<Cls>: torch's forward hooks
# --------------------------------------------------------------------------------------

def test_observed_classes_are_cached_and_restored():
    a = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    b = nnx.Linear(2, 2, rngs=nnx.Rngs(1))
    hooks.add_activation_post_process(a, MinMaxObserver())
    hooks.add_activation_post_process(b, MinMaxObserver())
    assert type(a) is type(b) is hooks.observed_class(nnx.Linear)
    assert hooks.observed_class(hooks.observed_class(nnx.Linear)) is type(a)
    assert hooks.type_before_observation(a) is nnx.Linear and hooks.is_observed(a)
    y = a(jnp.array([[1.0, -2.0]]))
    np.testing.assert_array_equal(np.asarray(a.activation_post_process.min_val),
                                  np.asarray(y).min())
    hooks.remove_activation_post_process(a)
    assert type(a) is nnx.Linear and not hasattr(a, "activation_post_process")


def test_memoryless_qconfig_observes_the_input_like_torchs_pre_hook():
    qconfig = jqconfig.QConfig(
        activation=MovingAverageMinMaxObserver.with_args(averaging_constant=1),
        weight=jqconfig.default_weight_observer)
    model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    model.qconfig = qconfig
    prepared = prepare(model)
    assert hooks.observes_input(prepared.layers[0])
    x = jnp.array([[5.0, -7.0]])
    prepared(x)
    observer = prepared.layers[0].activation_post_process
    assert float(observer.min_val) == -7.0 and float(observer.max_val) == 5.0


def test_prepared_models_share_a_graphdef_and_compile_once(rng):
    traces = []

    @nnx.jit
    def calibrate(model, x):
        traces.append(1)
        return model(x)

    models = []
    qconfig = jqconfig.get_default_qconfig("x86")  # qconfigs are static graph data
    for seed in range(2):
        model = FlaxCNN(nnx.Rngs(seed))
        model.eval()
        model.qconfig = qconfig
        models.append(prepare(model))
    assert nnx.graphdef(models[0]) == nnx.graphdef(models[1])
    for step in range(3):
        for model in models:
            calibrate(model, jnp.asarray(rng.normal(size=(4, 8, 8, 1)), jnp.float32))
    assert len(traces) == 1
    # Observers updated under jit.
    assert float(models[1].conv1.activation_post_process.max_val) > 0


# --------------------------------------------------------------------------------------
# QAT: flags under nnx.jit without recompilation
# --------------------------------------------------------------------------------------

def _qat_cnn():
    model = FlaxCNN(nnx.Rngs(0))
    model.train()
    model.qconfig = jqconfig.get_default_qat_qconfig("x86")
    return prepare_qat(fuse_modules_qat(model, CNN_FUSE))


def test_qat_flags_toggle_mid_training_without_recompiling(rng):
    model = _qat_cnn()
    assert type(model.conv1).__name__ == "ObservedConvBnReLU2d"
    assert type(model.fc).__name__ == "ObservedLinear"
    optimizer = nnx.Optimizer(model, optax.sgd(0.05), wrt=nnx.Param)
    traces = []

    @nnx.jit
    def train_step(model, optimizer, x, y):
        traces.append(1)

        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    x = jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 16), jnp.int32)
    act = model.conv1.activation_post_process

    def snapshot():
        return (np.asarray(model.conv1.bn.mean[...]).copy(),
                np.asarray(act.activation_post_process.min_val).copy(),
                np.asarray(act.scale).copy())

    train_step(model, optimizer, x, y)
    before = snapshot()
    train_step(model, optimizer, x, y)
    after = snapshot()
    assert not np.array_equal(before[0], after[0])  # BN statistics move
    assert not np.array_equal(before[2], after[2])  # observer (scale) moves

    freeze_bn_stats(model)
    disable_observer(model)
    before = snapshot()
    train_step(model, optimizer, x, y)
    after = snapshot()
    np.testing.assert_array_equal(before[0], after[0])  # frozen BN statistics
    np.testing.assert_array_equal(before[2], after[2])  # observer disabled

    update_bn_stats(model)
    enable_observer(model)
    disable_fake_quant(model)
    train_step(model, optimizer, x, y)
    assert not np.array_equal(after[0], snapshot()[0])
    enable_fake_quant(model)
    train_step(model, optimizer, x, y)
    assert len(traces) == 1

    model.eval()
    quantized = convert(model)
    assert type(quantized.conv1) is jnn.intrinsic.quantized.ConvReLU2d
    assert type(quantized.fc) is nnq.Linear
    assert quantized(x).shape == (16, 10)


def test_quantize_qat_one_call(rng):
    model = FlaxCNN(nnx.Rngs(0))
    model.qconfig = jqconfig.get_default_qat_qconfig("x86")
    model = fuse_modules_qat(model, CNN_FUSE)
    x = jnp.asarray(rng.normal(size=(8, 8, 8, 1)), jnp.float32)
    quantized = quantize_qat(model, default_eval_fn, [[(x, None)]])
    assert type(quantized.conv2) is jnn.intrinsic.quantized.ConvReLU2d
    assert quantized(x).shape == (8, 10)
    assert type(model.conv2) is jnn.intrinsic.ConvBnReLU2d  # untouched


# --------------------------------------------------------------------------------------
# inplace, stubs, swap_module
# --------------------------------------------------------------------------------------

def test_inplace_true_updates_the_given_object(rng):
    model = FlaxCNN(nnx.Rngs(0))
    model.eval()
    model.qconfig = jqconfig.default_qconfig
    conv1 = model.conv1
    assert prepare(model, inplace=True) is model
    assert model.conv1 is conv1  # mutated in place, as torch does
    assert type(conv1).__name__ == "ObservedConv"
    model(jnp.asarray(rng.normal(size=(2, 8, 8, 1)), jnp.float32))
    assert convert(model, inplace=True) is model
    assert type(model.conv1) is nnq.Conv2d and type(model.quant) is nnq.Quantize
    assert not any(hasattr(m, "qconfig") for _, m in named_modules(model))


def test_quant_wrapper_and_add_quant_dequant():
    inner = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    inner.qconfig = jqconfig.default_qconfig
    wrapped = add_quant_dequant(inner)
    assert isinstance(wrapped, QuantWrapper) and wrapped.quant.qconfig is inner.qconfig
    tree = nnx.Sequential(nnx.Linear(3, 3, rngs=nnx.Rngs(0)), jnn.ReLU())
    tree.layers[0].qconfig = jqconfig.default_qconfig
    assert add_quant_dequant(tree) is tree
    assert isinstance(tree.layers[0], QuantWrapper) and isinstance(tree.layers[1], jnn.ReLU)
    assert tree(jnp.ones((1, 3))).shape == (1, 3)
    prepared = prepare(tree)
    prepared(jnp.linspace(-1, 1, 6).reshape(2, 3))
    quantized = convert(prepared)
    assert type(quantized.layers[0].quant) is nnq.Quantize
    assert type(quantized.layers[0].dequant) is nnq.DeQuantize
    assert quantized(jnp.ones((2, 3))).shape == (2, 3)


def test_swap_module_rank_dispatch_and_pass_through():
    mapping = get_default_static_quant_module_mappings()
    linear = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    assert swap_module(linear, mapping, {}) is linear  # no qconfig: kept
    conv1d = nnx.Conv(1, 1, (3,), rngs=nnx.Rngs(0))
    conv1d.qconfig = jqconfig.default_qconfig
    hooks.add_activation_post_process(conv1d, MinMaxObserver())
    conv1d(jnp.ones((1, 4, 1)))
    assert type(swap_module(conv1d, mapping, {})) is nnq.Conv1d
    from jaxq.quantization_mappings import get_default_qat_module_mappings
    plain = nnx.Conv(1, 1, (3,), rngs=nnx.Rngs(0))
    plain.qconfig = jqconfig.default_qat_qconfig
    # torch's QAT mapping has no Conv1d entry: the module is kept.
    assert swap_module(plain, get_default_qat_module_mappings(), {}) is plain


# --------------------------------------------------------------------------------------
# Bad input: clear errors, model unchanged
# --------------------------------------------------------------------------------------

def _leaves(model):
    return [np.asarray(v) for v in jax.tree.leaves(nnx.state(model))]


def _types(model):
    return [(name, type(m)) for name, m in named_modules(model)]


@pytest.mark.parametrize("inplace", [False, True])
def test_errors_leave_the_model_unchanged(rng, inplace):
    model = FlaxCNN(nnx.Rngs(0))
    model.eval()
    types, leaves = _types(model), _leaves(model)

    with pytest.raises(ValueError, match="None of the submodule got qconfig"):
        prepare(model, inplace=inplace)
    with pytest.raises(ValueError, match="no submodule has a qconfig"):
        convert(model, inplace=inplace)
    with pytest.raises(ValueError, match="training mode"):
        prepare_qat(model, inplace=inplace)
    assert _types(model) == types

    model.qconfig = jqconfig.default_qconfig
    with pytest.raises(ValueError, match="was not prepared"):
        convert(model, inplace=inplace)  # qconfig but never prepared
    with pytest.raises(ValueError, match="Don't know how to quantize"):
        quantize_dynamic(model, dtype=jnp.int16, inplace=inplace)
    with pytest.raises(TypeError, match="inplace"):
        prepare(model, inplace="yes")

    prepared = prepare(model)
    prepared(jnp.asarray(rng.normal(size=(2, 8, 8, 1)), jnp.float32))
    p_types, p_leaves = _types(prepared), _leaves(prepared)
    # An unsupported swap: Linear -> quantized Conv2d fails in from_float, after other
    # modules (quant, conv1, conv2) would already have been swapped.
    bad_mapping = dict(get_default_static_quant_module_mappings())
    bad_mapping[nnx.Linear] = nnq.Conv2d
    with pytest.raises((TypeError, ValueError)):
        convert(prepared, mapping=bad_mapping, inplace=inplace)
    assert _types(prepared) == p_types
    for a, b in zip(_leaves(prepared), p_leaves):
        np.testing.assert_array_equal(a, b)

    assert _types(model) == types
    for a, b in zip(_leaves(model), leaves):
        np.testing.assert_array_equal(a, b)


def test_quantized_model_rejects_float_input(rng):
    model = FlaxCNN(nnx.Rngs(0))
    model.eval()
    model.qconfig = jqconfig.default_qconfig
    prepared = prepare(model)
    prepared(jnp.asarray(rng.normal(size=(2, 8, 8, 1)), jnp.float32))
    quantized = convert(prepared)
    with pytest.raises(TypeError):
        quantized.conv1(jnp.ones((1, 8, 8, 1)))


def test_stubs_are_identity_before_convert():
    x = jnp.arange(3.0)
    assert QuantStub()(x) is x and DeQuantStub()(x) is x
    assert QuantStub(jqconfig.default_qconfig).qconfig is jqconfig.default_qconfig
    assert not hasattr(QuantStub(None), "qconfig")
    with pytest.raises(TypeError, match="nnx.Module"):
        QuantWrapper(lambda v: v)
