"""Observer insertion (jaxq.fx.prepare)."""

import operator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq import qconfig as jqconfig
from jaxq.backend_config import get_native_backend_config
from jaxq.eager._tree import get_submodule
from jaxq.fx.fuse import fuse_graph_module
from jaxq.fx.graph import capture
from jaxq.fx.prepare import prepare_graph_module
from jaxq.observer.base import ObserverState
from jaxq.qconfig_mapping import QConfigMapping, get_default_qconfig_mapping
from tests.fx._models import Net, vector


def _prepare(model, mapping, x):
    backend = get_native_backend_config()
    gm = fuse_graph_module(capture(model, (x,)), backend, is_qat=False)
    return prepare_graph_module(gm, mapping, backend, is_qat=False)


def _observer_nodes(prepared):
    return [n for n in prepared.graph.nodes if n.meta.get("observer")]


def test_observers_where_torch_puts_them():
    prepared = _prepare(Net(), QConfigMapping().set_global(jqconfig.default_qconfig), vector())
    graph = prepared.graph
    observers = _observer_nodes(prepared)
    # input, fc output, add+relu output, head output; the root relu shares its input's
    # observer (OUTPUT_SHARE_OBSERVER_WITH_INPUT) and the reshape too.
    kinds = [n.meta["kind"] for n in observers]
    assert kinds == ["input", "output", "output", "shared", "output", "shared"]
    fc = graph.find(path="block.fc")[0]
    assert graph.node(fc.args[0].node_id).meta["kind"] == "input"
    add = graph.find(target=operator.add)[0]
    # the add reads the observed fc output and the (already observed) block input
    assert all(graph.node(i).meta.get("observer") for i in add.input_ids)
    shared = [n for n in observers if n.meta["kind"] == "shared"]
    relu_observer = graph.node(graph.find(target=jax.nn.relu)[1].args[0].node_id)
    assert shared[0].module_path == relu_observer.module_path
    assert fc.meta["output_observer"] is not None
    unique = {n.module_path for n in observers}
    assert len(unique) == 4
    assert all(p.startswith("activation_post_process_") for p in unique)


def test_none_qconfig_leaves_module_unobserved():
    mapping = QConfigMapping().set_global(jqconfig.default_qconfig).set_module_name(
        "head", None)
    prepared = _prepare(Net(), mapping, vector())
    head = prepared.graph.find(path="head")[0]
    assert head.meta.get("qconfig") is None
    assert "output_observer" not in head.meta
    # The reshape after it is still quantized (global qconfig): like torch, it observes
    # the float head output as its input.
    (user,) = prepared.graph.users(head)
    assert user.meta["observer"] and user.meta["kind"] == "input"


def test_reuse_input_qconfig_on_unobserved_input_adds_no_observer():
    class Reshape(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(2, 4, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.fc(x.reshape(-1, 2)).reshape(-1)

    prepared = _prepare(Reshape(), get_default_qconfig_mapping("x86"), vector())
    reshape = prepared.graph.find(target="reshape")[0]
    # reshape's input is the float model input: nothing to share
    assert reshape.meta["output_observer"] is None


def test_observer_state_calibrates_under_jit():
    x = vector()
    prepared = _prepare(Net(), QConfigMapping().set_global(jqconfig.default_qconfig), x)
    assert len(jax.tree.leaves(nnx.state(prepared, ObserverState))) > 0
    run = nnx.jit(lambda m, inputs: m(inputs))
    out = run(prepared, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(Net()(x)), rtol=1e-6)
    first = get_submodule(prepared.root, "activation_post_process_0")
    np.testing.assert_array_equal(np.asarray(first.min_val), np.asarray(jnp.min(x)))
    run(prepared, x * 2)
    np.testing.assert_array_equal(np.asarray(first.max_val), np.asarray(jnp.max(x * 2)))
