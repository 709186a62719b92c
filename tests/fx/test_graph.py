"""Graph capture and interpretation (jaxq.fx.graph)."""

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxq.fx.graph import GraphModule, Ref, capture, interpret


class Block(nnx.Module):
    def __init__(self):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
        self.bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x))) + x[..., :1]


class Model(nnx.Module):
    def __init__(self):
        self.block = Block()
        self.seq = nnx.Sequential(nnx.Conv(4, 2, (1, 1), rngs=nnx.Rngs(1)), jax.nn.relu)
        self.scale = nnx.Param(jnp.full((2,), 2.0))

    def __call__(self, x):
        y = self.seq(self.block(x)) * self.scale
        return jnp.mean(y, axis=(1, 2)), y.reshape(y.shape[0], -1)


@pytest.fixture(scope="module")
def captured():
    model = Model()
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    return model, x, capture(model, (x,))


def test_nodes(captured):
    _, _, gm = captured
    graph = gm.graph
    ops = [(n.op, n.module_path) for n in graph.nodes if n.op == "call_module"]
    assert ops == [("call_module", "block.conv"), ("call_module", "block.bn"),
                   ("call_module", "seq.layers.0")]
    assert graph.find(path="block.conv")[0].target is nnx.Conv
    relus = graph.find(target=jax.nn.relu)
    assert [n.module_path for n in relus] == ["block", "seq"]
    assert relus[0].scope_type is Block
    add = graph.find(target=operator.add)[0]
    assert add.module_path == "block"
    assert graph.find(target="reshape")[0].op == "call_method"
    assert graph.find(target=jnp.mean)[0].op == "call_function"
    get_attr = graph.find(op="get_attr")
    assert [n.target for n in get_attr] == ["scale"]
    ids = [n.id for n in graph.nodes]
    assert ids == sorted(set(ids))
    for node in graph.nodes:
        for arg in node.args:
            if isinstance(arg, Ref):
                assert arg.node_id < node.id
    assert "block.conv" in graph.format()


def test_call_index():
    class Twice(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(3, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return jax.nn.relu(jax.nn.relu(self.fc(x)) + self.fc(x))

    gm = capture(Twice(), (jnp.ones((2, 3)),))
    assert [n.call_index for n in gm.graph.find(target=jax.nn.relu)] == [0, 1]
    assert [n.call_index for n in gm.graph.find(op="call_module")] == [0, 1]


def test_matches_model_and_updates_state(captured):
    model, x, gm = captured
    model = nnx.clone(model)
    gm = GraphModule(nnx.clone(gm.root), gm.graph)
    expected = model(x)
    got = gm(x)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(model.block.bn.mean.get_value()),
                                  np.asarray(gm.root.block.bn.mean.get_value()))


def test_jit_no_recompile_and_grad(captured):
    _, x, gm = captured
    gm = GraphModule(nnx.clone(gm.root), gm.graph)
    traces = []

    @nnx.jit
    def run(module, inputs):
        traces.append(1)
        return module(inputs)[0]

    run(gm, x)
    run(gm, x + 1.0)
    assert len(traces) == 1
    grads = nnx.grad(lambda m, inputs: m(inputs)[0].sum())(gm, x)
    assert float(jnp.abs(grads["root"]["scale"].get_value()).sum()) > 0


def test_node_hook(captured):
    _, x, gm = captured
    seen = []

    def hook(node, outputs):
        seen.append(node.id)
        if node.op == "call_module" and node.module_path == "seq.layers.0":
            return [jnp.zeros_like(outputs[0])]
        return outputs

    out = interpret(gm.graph, nnx.clone(gm.root), (x,), hook)
    assert float(jnp.abs(out[0]).max()) == 0.0
    assert seen == [n.id for n in gm.graph.nodes if n.op != "output"]


def test_bad_input():
    with pytest.raises(TypeError, match="model"):
        capture(lambda x: x, (jnp.ones(2),))
    with pytest.raises(TypeError, match="example_inputs"):
        capture(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), jnp.ones((1, 2)))
    gm = capture(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), (jnp.ones((1, 2)),))
    with pytest.raises(ValueError, match="structure"):
        gm(jnp.ones((1, 2)), jnp.ones((1, 2)))


def test_leaf_module_names():
    model = Model()
    gm = capture(model, (jnp.ones((1, 5, 5, 3)),), leaf_module_names=["block"])
    assert [n.module_path for n in gm.graph.find(op="call_module")] == ["block",
                                                                       "seq.layers.0"]


def test_calls_inside_jit_are_inlined_and_scan_raises():
    class Jitted(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(3, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            @jax.jit
            def helper(v):
                return jax.nn.relu(v) * 2.0

            return self.fc(helper(x))

    model = Jitted()
    x = jnp.arange(6.0).reshape(2, 3) - 2.0
    gm = capture(model, (x,))
    assert gm.graph.find(target=jax.nn.relu)
    np.testing.assert_allclose(np.asarray(gm(x)), np.asarray(model(x)), rtol=1e-6)

    class Scanned(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(3, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            def body(carry, _):
                return self.fc(carry), None
            return jax.lax.scan(body, x, None, length=2)[0]

    with pytest.raises(NotImplementedError, match="scan"):
        capture(Scanned(), (x,))


def test_specialize_to_other_batch_sizes(captured):
    model, x, gm = captured
    gm = GraphModule(nnx.clone(gm.root), gm.graph)
    model = nnx.clone(model)
    for batch in (1, 3):
        inputs = jnp.concatenate([x, x])[:batch]
        expected = model(inputs)
        got = gm(inputs)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    leaves = [jnp.ones((3, 5, 5, 3))]
    assert gm.graph.specialize(leaves) is gm.graph.specialize(leaves)
    assert gm.graph.specialize([x]) is gm.graph


def test_shape_dependent_graph_raises():
    class Branchy(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(3, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.fc(x) if x.shape[0] > 1 else jax.nn.relu(self.fc(x))

    gm = capture(Branchy(), (jnp.ones((2, 3)),))
    with pytest.raises(ValueError, match="depends on the input shapes"):
        gm(jnp.ones((1, 3)))
