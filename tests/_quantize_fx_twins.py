"""Twin torch / Flax NNX models and the comparison helpers of tests/test_quantize_fx.py:
the same network in both frameworks with the same weights, observer and output checks."""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx
from torch.ao.quantization import quantize_fx as tfx

from jaxq.eager._tree import get_submodule
from jaxq.fx import GraphModule
from jaxq.quantize_fx import prepare_fx
from tests.eager._models import copy_bn, copy_conv, copy_linear, randomize_bn


# --- twin models -----------------------------------------------------------------------

class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class FlaxMLP(nnx.Module):
    def __init__(self):
        self.fc1 = nnx.Linear(16, 32, rngs=nnx.Rngs(0))
        self.fc2 = nnx.Linear(32, 8, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.fc2(jax.nn.relu(self.fc1(x)))


def twin_mlp():
    torch.manual_seed(0)
    t, j = TorchMLP().eval(), FlaxMLP()
    copy_linear(j.fc1, t.fc1)
    copy_linear(j.fc2, t.fc2)
    return t, j


class TorchCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.conv2(self.relu(self.bn(self.conv1(x))))


class FlaxCNN(nnx.Module):
    def __init__(self):
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=((1, 1), (1, 1)), rngs=nnx.Rngs(0))
        self.bn = nnx.BatchNorm(8, use_running_average=True, momentum=0.9, epsilon=1e-5,
                                rngs=nnx.Rngs(0))
        self.conv2 = nnx.Conv(8, 4, (3, 3), padding="VALID", rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.conv2(jax.nn.relu(self.bn(self.conv1(x))))


class TorchResidual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(8)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        z = F.relu(self.bn2(self.conv2(y)) + y)
        return F.max_pool2d(z, 2)


class FlaxResidual(nnx.Module):
    def __init__(self):
        pad = ((1, 1), (1, 1))
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=pad, rngs=nnx.Rngs(0))
        self.bn1 = nnx.BatchNorm(8, use_running_average=True, momentum=0.9, epsilon=1e-5,
                                 rngs=nnx.Rngs(0))
        self.conv2 = nnx.Conv(8, 8, (3, 3), padding=pad, rngs=nnx.Rngs(1))
        self.bn2 = nnx.BatchNorm(8, use_running_average=True, momentum=0.9, epsilon=1e-5,
                                 rngs=nnx.Rngs(0))

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        z = jax.nn.relu(self.bn2(self.conv2(y)) + y)
        return nnx.max_pool(z, (2, 2), (2, 2))


class TorchFunctional(torch.nn.Module):
    """A float-only op (sin) and a fixed-qparams op (tanh) between modules."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 16)
        self.fc2 = torch.nn.Linear(16, 16)
        self.fc3 = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(torch.sin(self.fc1(x)))))


class FlaxFunctional(nnx.Module):
    def __init__(self):
        self.fc1 = nnx.Linear(16, 16, rngs=nnx.Rngs(0))
        self.fc2 = nnx.Linear(16, 16, rngs=nnx.Rngs(1))
        self.fc3 = nnx.Linear(16, 4, rngs=nnx.Rngs(2))

    def __call__(self, x):
        return self.fc3(jnp.tanh(self.fc2(jnp.sin(self.fc1(x)))))


def _twin_conv(torch_cls, flax_cls, convs, bns, rng):
    torch.manual_seed(0)
    t, j = torch_cls().eval(), flax_cls()
    for name in convs:
        copy_conv(getattr(j, name), getattr(t, name))
    for name in bns:
        randomize_bn(getattr(t, name), rng)
        copy_bn(getattr(j, name), getattr(t, name))
    return t, j


def twin_cnn(rng):
    return _twin_conv(TorchCNN, FlaxCNN, ["conv1", "conv2"], ["bn"], rng)


def twin_residual(rng):
    return _twin_conv(TorchResidual, FlaxResidual, ["conv1", "conv2"], ["bn1", "bn2"], rng)


def twin_functional():
    torch.manual_seed(0)
    t, j = TorchFunctional().eval(), FlaxFunctional()
    for name in ("fc1", "fc2", "fc3"):
        copy_linear(getattr(j, name), getattr(t, name))
    return t, j


def to_torch(x):
    x = np.asarray(x)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4
                            else x)


def from_torch(y):
    y = y.detach().numpy()
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y


# --- harness ---------------------------------------------------------------------------

def torch_observers(model):
    found = []
    for node in model.graph.nodes:
        if node.op == "call_module" and "activation_post_process" in str(node.target):
            module = model.get_submodule(node.target)
            if all(module is not seen for seen in found):
                found.append(module)
    return found


def jaxq_observers(model: GraphModule):
    found = []
    for node in model.graph.nodes:
        if node.meta.get("observer"):
            module = get_submodule(model.root, node.module_path)
            if all(module is not seen for seen in found):
                found.append(module)
    return found


def assert_same_qparams(tprepared, prepared, first_exact=True):
    t_obs, j_obs = torch_observers(tprepared), jaxq_observers(prepared)
    assert len(t_obs) == len(j_obs)
    for i, (t, j) in enumerate(zip(t_obs, j_obs)):
        t_scale, t_zp = t.calculate_qparams()
        j_scale, j_zp = j.calculate_qparams()
        np.testing.assert_array_equal(np.asarray(j_zp).reshape(-1),
                                      t_zp.numpy().reshape(-1), err_msg=f"observer {i}")
        if i == 0 and first_exact:  # observes the model input: identical data
            np.testing.assert_array_equal(np.asarray(j_scale).reshape(-1),
                                          t_scale.numpy().reshape(-1))
        else:  # layer outputs differ in float accumulation order (XLA vs torch)
            np.testing.assert_allclose(np.asarray(j_scale).reshape(-1),
                                       t_scale.numpy().reshape(-1), rtol=1e-5,
                                       err_msg=f"observer {i}")
    return t_obs, j_obs


def run_twins(tmodel, model, t_mapping, j_mapping, batches):
    torch.backends.quantized.engine = "x86"
    tprepared = tfx.prepare_fx(tmodel, t_mapping, (to_torch(batches[0]),))
    prepared = prepare_fx(model, j_mapping, (jnp.asarray(batches[0]),))
    calibrate = nnx.jit(lambda m, x: m(x))
    for x in batches:
        tprepared(to_torch(x))
        calibrate(prepared, jnp.asarray(x))
    return tprepared, prepared


def assert_outputs_close(tquantized, quantized, x, steps=1.0):
    expected = from_torch(tquantized(to_torch(x)))
    got = np.asarray(quantized(jnp.asarray(x)))
    assert got.shape == expected.shape
    out_obs = [n for n in quantized.graph.nodes if n.meta.get("quantize")]
    scale = max(float(n.meta["qparams"]["scale"]) for n in out_obs) if out_obs else 1e-6
    diff = np.abs(got - expected)
    assert diff.max() <= steps * scale * 1.0001 + 1e-6, (diff.max(), scale)
    return diff


def batches(rng, shape, n=3, scale=1.5):
    return [(rng.normal(size=shape) * scale).astype(np.float32) for _ in range(n)]
