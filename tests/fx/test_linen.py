"""Capturing linen models (jaxq.fx.linen)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxq import qconfig as jqconfig
from jaxq.fx.linen import capture_linen
from jaxq.qconfig_mapping import QConfigMapping
from jaxq.quantize_fx import convert_fx, prepare_fx


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jax.nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3))(x)))
        x = jax.nn.relu(nn.Conv(4, (3, 3), name="conv2")(x) + x)
        x = nn.max_pool(x, (2, 2), (2, 2)).reshape(x.shape[0], -1)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        return nn.Dense(3, name="head")(nn.LayerNorm()(x) * scale)


class NNXCNN(nnx.Module):
    """The same network in NNX, with the linen variables copied in."""

    def __init__(self, variables):
        p, s = variables["params"], variables["batch_stats"]
        self.conv = nnx.Conv(2, 4, (3, 3), rngs=nnx.Rngs(0))
        self.bn = nnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))
        self.conv2 = nnx.Conv(4, 4, (3, 3), rngs=nnx.Rngs(0))
        self.ln = nnx.LayerNorm(16, rngs=nnx.Rngs(0))
        self.head = nnx.Linear(16, 3, rngs=nnx.Rngs(0))
        self.scale = nnx.Param(p["scale"])
        for module, values in ((self.conv, p["Conv_0"]), (self.conv2, p["conv2"]),
                               (self.head, p["head"])):
            module.kernel.set_value(values["kernel"])
            module.bias.set_value(values["bias"])
        self.bn.scale.set_value(p["BatchNorm_0"]["scale"])
        self.bn.bias.set_value(p["BatchNorm_0"]["bias"])
        self.bn.mean.set_value(s["BatchNorm_0"]["mean"])
        self.bn.var.set_value(s["BatchNorm_0"]["var"])
        self.ln.scale.set_value(p["LayerNorm_0"]["scale"])
        self.ln.bias.set_value(p["LayerNorm_0"]["bias"])

    def __call__(self, x):
        x = jax.nn.relu(self.bn(self.conv(x)))
        x = jax.nn.relu(self.conv2(x) + x)
        x = nnx.max_pool(x, (2, 2), (2, 2)).reshape(x.shape[0], -1)
        return self.head(self.ln(x) * self.scale)


@pytest.fixture(scope="module")
def linen_model():
    x = jax.random.normal(jax.random.key(0), (4, 4, 4, 2))
    model = LinenCNN()
    variables = model.init(jax.random.key(1), x)
    stats = jax.tree.map(lambda v: v + 0.1, variables["batch_stats"])
    return model, {"params": variables["params"], "batch_stats": stats}, x


def test_capture_matches_apply(linen_model):
    model, variables, x = linen_model
    gm = capture_linen(model, variables, (x,))
    assert [n.module_path for n in gm.graph.find(op="call_module")] == [
        "Conv_0", "BatchNorm_0", "conv2", "LayerNorm_0", "head"]
    assert gm.graph.find(target=nn.max_pool)
    np.testing.assert_array_equal(np.asarray(gm(x)), np.asarray(model.apply(variables, x)))


@pytest.mark.slow
def test_quantized_linen_equals_quantized_nnx_twin(linen_model):
    model, variables, x = linen_model
    mapping = QConfigMapping().set_global(jqconfig.default_qconfig)
    twin = NNXCNN(variables)
    np.testing.assert_allclose(np.asarray(twin(x)), np.asarray(model.apply(variables, x)),
                               rtol=1e-5, atol=1e-5)
    prepared = prepare_fx(capture_linen(model, variables, (x,)), mapping, (x,))
    prepared_twin = prepare_fx(twin, mapping, (x,))
    run = nnx.jit(lambda m, inputs: m(inputs))
    run(prepared, x)
    run(prepared_twin, x)
    quantized, quantized_twin = convert_fx(prepared), convert_fx(prepared_twin)
    assert type(quantized.root.Conv_0).__name__ == "ConvReLU2d"
    np.testing.assert_array_equal(np.asarray(run(quantized, x)),
                                  np.asarray(run(quantized_twin, x)))


def test_unsupported():
    class TrainBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False)(x)

    x = jnp.ones((2, 3))
    variables = TrainBN().init(jax.random.key(0), x)
    with pytest.raises(NotImplementedError, match="running averages"):
        capture_linen(TrainBN(), variables, (x,))
    with pytest.raises(TypeError, match="linen"):
        capture_linen(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), {}, (x,))
