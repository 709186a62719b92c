"""Observed graph -> quantized graph (jaxq.fx.convert)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxq.nn.quantized as nnq
from jaxq import qconfig as jqconfig
from jaxq.core.qtensor import QTensor, quantize_per_tensor
from jaxq.eager._tree import get_submodule
from jaxq.fx.convert import CUSTOM_META_KEY
from jaxq.fx.graph import interpret
from jaxq.qconfig_mapping import QConfigMapping
from jaxq.quantize_fx import convert_fx, convert_to_reference_fx, prepare_fx
from tests.fx._models import Net, vector


def _calibrated(model, x, mapping=None):
    mapping = mapping or QConfigMapping().set_global(jqconfig.default_qconfig)
    prepared = prepare_fx(model, mapping, (x,))
    prepared(x)
    return prepared


def test_node_ids_survive_convert():
    x = vector()
    prepared = _calibrated(Net(), x)
    quantized = convert_fx(prepared)
    by_id = quantized.graph.by_id()
    fc = prepared.graph.find(path="block.fc")[0]
    assert isinstance(get_submodule(quantized.root, "block.fc"), nnq.Linear)
    assert by_id[fc.id].module_path == "block.fc"
    first_observer = next(n for n in prepared.graph.nodes if n.meta.get("observer"))
    assert by_id[first_observer.id].meta["quantize"]
    prepared_ids = {n.id for n in prepared.graph.nodes}
    new = [n for n in quantized.graph.nodes if n.id not in prepared_ids]
    assert new and all(n.meta.get("dequantize") for n in new)
    assert not any(name.startswith("activation_post_process") for name in vars(quantized.root))


def test_quantized_values_flow_between_nodes():
    x = vector()
    quantized = convert_fx(_calibrated(Net(), x))
    kinds = {}

    def hook(node, outputs):
        kinds[node.id] = type(outputs[0]) if outputs else None
        return outputs

    interpret(quantized.graph, quantized.root, (x,), hook)
    head = quantized.graph.find(path="head")[0]
    assert kinds[head.id] is QTensor
    assert kinds[quantized.graph.find(op="placeholder")[0].id] is not QTensor


def test_max_pool_runs_on_the_integer_grid():
    class Pool(nnx.Module):
        def __init__(self):
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))

        def __call__(self, x):
            return nnx.max_pool(self.conv(x), (2, 2), (2, 2))

    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    prepared = _calibrated(Pool(), x)
    quantized = convert_fx(prepared)
    outputs = {}

    def hook(node, values):
        outputs[node.id] = values[0]
        return values

    interpret(quantized.graph, quantized.root, (x,), hook)
    conv = quantized.graph.find(path="conv")[0]
    q = outputs[conv.id]
    pooled = nnx.max_pool(q.int_repr().astype(jnp.float32), (2, 2), (2, 2))
    expected = (pooled - q.q_zero_point()) * q.q_scale()
    np.testing.assert_array_equal(np.asarray(quantized(x)), np.asarray(expected))


def test_convert_time_qconfig_mapping_keeps_ops_float():
    x = vector()
    prepared = _calibrated(Net(), x)
    quantized = convert_fx(prepared, qconfig_mapping=QConfigMapping().set_global(
        jqconfig.default_qconfig).set_module_name("head", None))
    assert type(quantized.root.head) is nnx.Linear
    assert isinstance(quantized.root.block.fc, nnq.Linear)
    assert quantized(x).shape == (6,)


def test_reference_representation():
    x = vector()
    prepared = _calibrated(Net(), x)
    reference = convert_to_reference_fx(prepared)
    assert type(reference.root.head).__module__.startswith("jaxq.nn.quantized.reference")
    graph = reference.graph
    head = graph.find(path="head")[0]
    assert graph.node(head.args[0].node_id).meta.get("dequantize")
    quantized = convert_fx(prepared)
    scale = max(float(n.meta["qparams"]["scale"]) for n in quantized.graph.nodes
                if n.meta.get("quantize"))
    assert float(jnp.abs(reference(x) - quantized(x)).max()) <= 2 * scale


def test_quantize_node_matches_quantize_per_tensor():
    x = vector()
    quantized = convert_fx(_calibrated(Net(), x))
    node = next(n for n in quantized.graph.nodes if n.meta.get("quantize"))
    qparams = node.meta["qparams"]
    got = node.meta["function"](x)
    expected = quantize_per_tensor(x, qparams["scale"], qparams["zero_point"],
                                   qparams["dtype"])
    np.testing.assert_array_equal(np.asarray(got.int_repr()),
                                  np.asarray(expected.int_repr()))


class ManyKinds(nnx.Module):
    def __init__(self):
        r = nnx.Rngs(0)
        self.emb = nnx.Embed(10, 8, rngs=r)
        self.conv = nnx.Conv(8, 8, (3,), rngs=r)
        self.bn = nnx.BatchNorm(8, use_running_average=True, rngs=r)
        self.ln = nnx.LayerNorm(8, rngs=r)
        self.gn = nnx.GroupNorm(8, num_groups=2, rngs=r)
        self.convt = nnx.ConvTranspose(8, 4, (3,), rngs=r)
        self.drop = nnx.Dropout(0.1, deterministic=True)
        self.fc = nnx.Linear(4, 3, rngs=r)

    def __call__(self, ids):
        x = self.emb(ids)
        y = self.bn(self.conv(x) + x)
        y = jax.nn.hard_swish(self.ln(y))
        y = jax.nn.elu(self.gn(y)) + jax.nn.leaky_relu(y)
        y = nnx.avg_pool(y, (2,), (2,))
        y = jnp.mean(self.drop(self.convt(y)), axis=1)
        return jax.nn.gelu(self.fc(y))


@pytest.mark.slow
def test_many_module_kinds():
    model = ManyKinds()
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 10, (2, 8)))
    prepared = _calibrated(model, ids)
    quantized = convert_fx(prepared)
    kinds = {name: type(m).__module__ for name, m in vars(quantized.root).items()
             if isinstance(m, nnx.Module)}
    # 1-d BatchNorm has no quantized kernel (torch leaves BatchNorm1d float too); the
    # Embed's default qconfig is not one the backend's weight-only Embed pattern takes;
    # GroupNorm has no pattern in torch's (or jaxq's) native backend config.
    assert type(quantized.root.bn) is nnx.BatchNorm and type(quantized.root.emb) is nnx.Embed
    assert type(quantized.root.gn) is nnx.GroupNorm
    for name in ("conv", "ln", "convt", "fc"):
        assert kinds[name].startswith("jaxq.nn.quantized"), name
    run = nnx.jit(lambda m, x: m(x))
    got = np.asarray(run(quantized, ids))
    reference = np.asarray(run(convert_to_reference_fx(prepared), ids))
    expected = np.asarray(model(ids))
    assert np.abs(got - expected).max() < 0.05
    assert np.abs(got - reference).max() < 0.02


def test_quantize_nodes_keep_the_observer_custom_meta():
    x = vector()
    prepared = _calibrated(Net(), x)
    observers = [n for n in prepared.graph.nodes if n.meta.get("observer")]
    for i, node in enumerate(observers):
        node.meta[CUSTOM_META_KEY] = {"numeric_debug_handle": 100 + i, "tag": node.name}
    for convert in (convert_fx, convert_to_reference_fx):
        converted = convert(prepared)
        quantize_nodes = [n for n in converted.graph.nodes if n.meta.get("quantize")]
        assert quantize_nodes
        for node in quantize_nodes:
            observer = prepared.graph.node(node.id)
            assert node.meta[CUSTOM_META_KEY] == observer.meta[CUSTOM_META_KEY]
            # A copy: writing to the converted graph leaves the prepared one alone.
            assert node.meta[CUSTOM_META_KEY] is not observer.meta[CUSTOM_META_KEY]
        # Nodes convert inserts (dequantize) have fresh meta.
        assert all(CUSTOM_META_KEY not in n.meta for n in converted.graph.nodes
                   if n.meta.get("dequantize"))
