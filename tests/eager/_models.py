"""Twin models for the torch cross-checks: the same network in torch and Flax NNX.

Weights go torch -> Flax (``kernel_from_torch``); activations are NCHW in torch and
NHWC in Flax, so inputs are transposed and outputs compared after transposing back.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import jaxq.nn as jnn
from jaxq.core.qtensor import QTensor
from jaxq.eager import DeQuantStub, QuantStub
from jaxq.nn.layout import kernel_from_torch


def set_param(variable, value) -> None:
    variable.set_value(jnp.asarray(np.asarray(value, np.float32)))


def copy_conv(conv: nnx.Conv, tconv: torch.nn.Module) -> None:
    set_param(conv.kernel, kernel_from_torch(tconv.weight.detach().numpy()))
    if tconv.bias is not None:
        set_param(conv.bias, tconv.bias.detach().numpy())


def copy_linear(linear: nnx.Linear, tlinear: torch.nn.Linear) -> None:
    set_param(linear.kernel, tlinear.weight.detach().numpy().T)
    if tlinear.bias is not None:
        set_param(linear.bias, tlinear.bias.detach().numpy())


def copy_bn(bn: nnx.BatchNorm, tbn: torch.nn.Module) -> None:
    set_param(bn.scale, tbn.weight.detach().numpy())
    set_param(bn.bias, tbn.bias.detach().numpy())
    set_param(bn.mean, tbn.running_mean.numpy())
    set_param(bn.var, tbn.running_var.numpy())


def randomize_bn(tbn: torch.nn.Module, rng: np.random.Generator) -> None:
    n = tbn.num_features
    with torch.no_grad():
        tbn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n).astype(np.float32)))
        tbn.bias.copy_(torch.from_numpy(rng.normal(0, 0.2, n).astype(np.float32)))
        tbn.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.3, n).astype(np.float32)))
        tbn.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, n).astype(np.float32)))


def max_pool_2x2(x):
    """2x2 max pool on NHWC floats or a per-tensor QTensor (torch's quantized max_pool2d
    keeps the qparams and takes the max of the integers)."""
    if isinstance(x, QTensor):
        pooled = nnx.max_pool(x.int_repr().astype(jnp.int32), (2, 2), (2, 2))
        return QTensor.from_int_values(pooled, x.q_scale(), x.q_zero_point(), x.dtype)
    return nnx.max_pool(x, (2, 2), (2, 2))


def flatten(x):
    return x.reshape(x.shape[0], -1)


class TorchCNN(torch.nn.Module):
    """QuantStub, (Conv-BN-ReLU) x 2, max pool, Linear, DeQuantStub; 8x8 inputs."""

    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv1 = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(6)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(8)
        self.relu2 = torch.nn.ReLU()
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = torch.nn.functional.max_pool2d(x, 2)
        # Flatten in NHWC order so the Linear weights line up with Flax's.
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.dequant(self.fc(x))


class FlaxCNN(nnx.Module):
    """:class:`TorchCNN` in Flax NNX (NHWC)."""

    def __init__(self, rngs: nnx.Rngs | None = None):
        rngs = rngs or nnx.Rngs(0)
        self.quant = QuantStub()
        self.conv1 = nnx.Conv(1, 6, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.bn1 = nnx.BatchNorm(6, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.relu1 = jnn.ReLU()
        self.conv2 = nnx.Conv(6, 8, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                              rngs=rngs)
        self.bn2 = nnx.BatchNorm(8, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.relu2 = jnn.ReLU()
        self.fc = nnx.Linear(8 * 4 * 4, 10, rngs=rngs)
        self.dequant = DeQuantStub()

    def __call__(self, x):
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = max_pool_2x2(x)
        return self.dequant(self.fc(flatten(x)))

    @classmethod
    def from_torch(cls, tmodel: TorchCNN) -> FlaxCNN:
        model = cls()
        copy_conv(model.conv1, tmodel.conv1)
        copy_bn(model.bn1, tmodel.bn1)
        copy_conv(model.conv2, tmodel.conv2)
        copy_bn(model.bn2, tmodel.bn2)
        copy_linear(model.fc, tmodel.fc)
        return model


CNN_FUSE = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"]]


class TorchMLP(torch.nn.Module):
    """QuantStub, Linear-ReLU, Linear-BN1d-ReLU... kept to what both can fuse."""

    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.fc1 = torch.nn.Linear(16, 32)
        self.relu1 = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(32, 24)
        self.bn2 = torch.nn.BatchNorm1d(24)
        self.fc3 = torch.nn.Linear(24, 5)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.fc1(x))
        x = self.bn2(self.fc2(x))
        return self.dequant(self.fc3(x))


class FlaxMLP(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.quant = QuantStub()
        self.fc1 = nnx.Linear(16, 32, rngs=rngs)
        self.relu1 = jnn.ReLU()
        self.fc2 = nnx.Linear(32, 24, rngs=rngs)
        self.bn2 = nnx.BatchNorm(24, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.fc3 = nnx.Linear(24, 5, rngs=rngs)
        self.dequant = DeQuantStub()

    def __call__(self, x):
        x = self.quant(x)
        x = self.relu1(self.fc1(x))
        x = self.bn2(self.fc2(x))
        return self.dequant(self.fc3(x))

    @classmethod
    def from_torch(cls, tmodel: TorchMLP) -> FlaxMLP:
        model = cls()
        copy_linear(model.fc1, tmodel.fc1)
        copy_linear(model.fc2, tmodel.fc2)
        copy_bn(model.bn2, tmodel.bn2)
        copy_linear(model.fc3, tmodel.fc3)
        return model


MLP_FUSE = [["fc1", "relu1"], ["fc2", "bn2"]]


def twin_cnn(rng: np.random.Generator) -> tuple[TorchCNN, FlaxCNN]:
    torch.manual_seed(int(rng.integers(0, 2**31)))
    tmodel = TorchCNN()
    randomize_bn(tmodel.bn1, rng)
    randomize_bn(tmodel.bn2, rng)
    tmodel.eval()
    model = FlaxCNN.from_torch(tmodel)
    model.eval()
    return tmodel, model


def twin_mlp(rng: np.random.Generator) -> tuple[TorchMLP, FlaxMLP]:
    torch.manual_seed(int(rng.integers(0, 2**31)))
    tmodel = TorchMLP()
    randomize_bn(tmodel.bn2, rng)
    tmodel.eval()
    model = FlaxMLP.from_torch(tmodel)
    model.eval()
    return tmodel, model


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def copy_qat_params(module, tmodule: torch.nn.Module) -> None:
    """Copies a torch QAT Linear / Conv (fused forms too) module's parameters, and its
    bn's running statistics, into the jaxq QAT module (kernel in Flax layout)."""
    weight = tmodule.weight.detach().numpy()
    set_param(module.kernel, weight.T if weight.ndim == 2 else kernel_from_torch(weight))
    if tmodule.bias is not None:
        set_param(module.bias, tmodule.bias.detach().numpy())
    if hasattr(tmodule, "bn"):
        copy_bn(module.bn, tmodule.bn)
