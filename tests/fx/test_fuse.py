"""Graph-mode fusion (jaxq.fx.fuse)."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxq.backend_config import get_native_backend_config
from jaxq.fx.fuse import fuse_graph_module
from jaxq.fx.graph import capture
from tests.fx._models import Block, ConvBNReLU, image, vector


def test_ptq_folds_bn_and_keeps_the_first_node_id():
    model = ConvBNReLU()
    x = image()
    gm = capture(model, (x,))
    conv_id = gm.graph.find(path="conv")[0].id
    fused = fuse_graph_module(gm, get_native_backend_config(), is_qat=False)
    node = fused.graph.node(conv_id)
    assert type(fused.root.conv).__name__ == "ConvReLU2d"
    assert node.target is type(fused.root.conv)
    assert node.meta["fused_types"] == (nnx.Conv, jax.nn.relu)
    assert "bn" not in vars(fused.root)
    assert [n.op for n in fused.graph.nodes] == ["placeholder", "call_module", "output"]
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(model(x)), rtol=1e-5,
                               atol=1e-5)
    assert "bn" in vars(gm.root)  # the input GraphModule is unchanged


def test_qat_keeps_bn_in_a_container():
    gm = capture(ConvBNReLU(train=True), (image(),))
    fused = fuse_graph_module(gm, get_native_backend_config(), is_qat=True)
    assert type(fused.root.conv).__name__ == "ConvBnReLU2d"


def test_ptq_in_training_mode_raises():
    gm = capture(ConvBNReLU(train=True), (image(),))
    with pytest.raises(ValueError, match="eval"):
        fuse_graph_module(gm, get_native_backend_config(), is_qat=False)


def test_linear_relu_inside_sequential():
    class Model(nnx.Module):
        def __init__(self):
            self.seq = nnx.Sequential(nnx.Linear(4, 4, rngs=nnx.Rngs(0)), jax.nn.relu)

        def __call__(self, x):
            return self.seq(x)

    model = Model()
    gm = capture(model, (vector(),))
    fused = fuse_graph_module(gm, get_native_backend_config(), is_qat=False)
    assert type(fused.root.seq.layers[0]).__name__ == "LinearReLU"
    np.testing.assert_allclose(np.asarray(fused(vector())), np.asarray(model(vector())),
                               rtol=1e-6)


def test_block_add_is_not_a_fusion_pattern():
    gm = capture(Block(), (vector(),))
    fused = fuse_graph_module(gm, get_native_backend_config(), is_qat=False)
    assert len(fused.graph.nodes) == len(gm.graph.nodes)
