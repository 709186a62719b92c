"""Pattern matching and qconfig resolution (jaxq.fx.match)."""

import operator

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.backend_config import get_native_backend_config
from jaxq.fx.fuse import module_type_getter
from jaxq.fx.graph import capture
from jaxq.fx.match import find_matches, node_qconfig, object_type_aliases
from jaxq.fx.prepare import quantization_patterns
from jaxq.qconfig_mapping import QConfigMapping
from tests.fx._models import Block, ConvBNReLU, Net, TwoUsers, image, vector


def _matches(model, x):
    gm = capture(model, (x,))
    patterns = quantization_patterns(get_native_backend_config())
    return gm, find_matches(gm.graph, patterns, module_type_getter(gm.root))


def test_longest_pattern_wins():
    gm, matches = _matches(ConvBNReLU(), image())
    conv = gm.graph.find(path="conv")[0]
    assert matches[conv.id].pattern == (nnx.Conv, nnx.BatchNorm, jax.nn.relu)
    assert [n.op for n in matches[conv.id].nodes] == ["call_module", "call_module",
                                                       "call_function"]


def test_intermediate_node_with_two_users_is_not_fused():
    gm, matches = _matches(TwoUsers(), image())
    conv = gm.graph.find(path="conv")[0]
    assert matches[conv.id].pattern is nnx.Conv
    bn = gm.graph.find(path="bn")[0]
    assert matches[bn.id].pattern is nnx.BatchNorm


def test_add_relu_pattern():
    gm, matches = _matches(Block(), vector())
    add = gm.graph.find(target=operator.add)[0]
    assert matches[add.id].pattern[1] is jax.nn.relu
    assert jnp.add in object_type_aliases(operator.add)


def test_function_qconfig_precedence():
    gm = capture(Net(), (vector(),))
    relu_in_block, relu_in_root = gm.graph.find(target=jax.nn.relu)
    add = gm.graph.find(target=operator.add)[0]
    mapping = QConfigMapping().set_global("global").set_object_type(jax.nn.relu, "relu")
    assert node_qconfig(mapping, relu_in_root, None) == "relu"
    mapping.set_object_type(Block, "block_type")
    assert node_qconfig(mapping, relu_in_block, None) == "block_type"
    assert node_qconfig(mapping, relu_in_root, None) == "relu"
    mapping.set_module_name("block", "block_name")
    assert node_qconfig(mapping, relu_in_block, None) == "block_name"
    mapping.set_module_name_object_type_order("block", operator.add, 0, "order")
    assert node_qconfig(mapping, add, None) == "order"
    # jnp.add configures the jaxpr add as well.
    assert node_qconfig(QConfigMapping().set_object_type(jnp.add, "jnp_add"), add,
                        None) == "jnp_add"


def test_module_qconfig_precedence():
    gm = capture(Net(), (vector(),))
    fc, head = gm.graph.find(op="call_module")
    mapping = QConfigMapping().set_global("g").set_object_type(nnx.Linear, "linear")
    assert node_qconfig(mapping, fc, nnx.Linear) == "linear"
    mapping.set_module_name_regex("bl.*", "regex")
    assert node_qconfig(mapping, fc, nnx.Linear) == "regex"
    mapping.set_module_name("block", "parent")
    assert node_qconfig(mapping, fc, nnx.Linear) == "parent"
    assert node_qconfig(mapping, head, nnx.Linear) == "linear"
    mapping.set_module_name("block.fc", None)
    assert node_qconfig(mapping, fc, nnx.Linear) is None
