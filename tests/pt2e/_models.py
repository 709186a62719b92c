"""The same small models in torch and Flax NNX, with identical weights.

Torch runs NCHW with (out, in[, kh, kw]) weights; Flax runs NHWC with (in, out) / HWIO
kernels. ``to_flax_activation`` maps a torch activation to Flax's layout.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx


class TorchNet(torch.nn.Module):
    """conv -> relu -> mean over H, W -> linear -> relu -> linear (+ 1)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 2)

    def forward(self, x):
        y = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(y))) + 1.0


class FlaxNet(nnx.Module):
    """``TorchNet`` in Flax (NHWC input)."""

    def __init__(self):
        self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=nnx.Rngs(0))
        self.fc1 = nnx.Linear(4, 8, rngs=nnx.Rngs(1))
        self.fc2 = nnx.Linear(8, 2, rngs=nnx.Rngs(2))

    def __call__(self, x):
        y = jnp.mean(jax.nn.relu(self.conv(x)), axis=(1, 2))
        return self.fc2(jax.nn.relu(self.fc1(y))) + 1.0


def copy_weights(torch_model: TorchNet, flax_model: FlaxNet) -> None:
    """Loads ``torch_model``'s weights into ``flax_model`` (in place)."""
    sd = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    flax_model.conv.kernel[...] = jnp.asarray(sd["conv.weight"].transpose(2, 3, 1, 0))
    flax_model.conv.bias[...] = jnp.asarray(sd["conv.bias"])
    for name in ("fc1", "fc2"):
        getattr(flax_model, name).kernel[...] = jnp.asarray(sd[f"{name}.weight"].T)
        getattr(flax_model, name).bias[...] = jnp.asarray(sd[f"{name}.bias"])


def fake_quantize_weights(state_dict: dict) -> dict:
    """Per-tensor symmetric int8 fake quantization of every ``*.weight`` (numpy)."""
    out = {}
    for key, value in state_dict.items():
        value = value.detach().numpy().copy()
        if key.endswith("weight"):
            scale = np.float32(np.abs(value).max() / 127.0)
            value = (np.clip(np.round(value / scale), -128, 127) * scale).astype(np.float32)
        out[key] = torch.from_numpy(value)
    return out


def make_pair(seed: int = 0) -> tuple[TorchNet, FlaxNet]:
    torch.manual_seed(seed)
    torch_model = TorchNet().eval()
    flax_model = FlaxNet()
    copy_weights(torch_model, flax_model)
    return torch_model, flax_model


def quantized_copy(torch_model: TorchNet) -> TorchNet:
    """A copy of ``torch_model`` whose weights are int8 fake-quantized."""
    model = copy.deepcopy(torch_model)
    model.load_state_dict(fake_quantize_weights(torch_model.state_dict()))
    return model


def to_flax_activation(value: torch.Tensor) -> np.ndarray:
    array = value.detach().numpy()
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


class ResidualNet(nnx.Module):
    """conv -> sigmoid -> mean -> fc1 -> fc2 (+ fc1) -> relu (* fc1)."""

    def __init__(self):
        self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=nnx.Rngs(0))
        self.fc1 = nnx.Linear(4, 8, rngs=nnx.Rngs(1))
        self.fc2 = nnx.Linear(8, 8, rngs=nnx.Rngs(2))

    def __call__(self, x):
        y = jnp.mean(jax.nn.sigmoid(self.conv(x)), axis=(1, 2))
        a = self.fc1(y)
        return jax.nn.relu(self.fc2(a) + a) * a
