"""Bring your PyTorch quantization recipe (and checkpoint) to jaxq.

1. A QConfigMapping written in torch goes to a JSON file (one call) and comes back as a
   jaxq QConfigMapping on a machine without torch (one call).
2. A small CNN is quantized in torch (fuse, prepare, calibrate, convert).
3. The same CNN in Flax is prepared in jaxq with the converted recipe, takes torch's
   calibration statistics, is converted, and loads torch's quantized weights.
4. Both run on the same input; the int8 outputs agree.

Run: python examples/bring_your_torch_recipe.py
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings

import jax.numpy as jnp
import numpy as np
import torch
import torch.ao.quantization as tq
from flax import nnx

import jaxq.nn as jnn
from jaxq.eager import DeQuantStub, QuantStub, convert, fuse_modules, prepare
from jaxq.interop import (
    TranslationWarning,
    from_torch,
    load_qconfig_mapping,
    load_torch_observer_state_dict,
    load_torch_state_dict,
    save_qconfig_mapping,
)

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="torch")


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.relu = torch.nn.ReLU()
        self.dequant = tq.DeQuantStub()
        self.quant2 = tq.QuantStub()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):                      # x: (N, C, H, W)
        x = self.relu(self.bn(self.conv(self.quant(x))))
        return self.fc(self.quant2(self.dequant(x).mean((2, 3))))


class FlaxNet(nnx.Module):
    """The same network, channels-last, with the same attribute names."""

    def __init__(self, rngs: nnx.Rngs):
        self.quant = QuantStub()
        self.conv = nnx.Conv(3, 8, (3, 3), padding=1, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.relu = jnn.ReLU()
        self.dequant = DeQuantStub()
        self.quant2 = QuantStub()
        self.fc = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x):                     # x: (N, H, W, C)
        x = self.relu(self.bn(self.conv(self.quant(x))))
        return self.fc(self.quant2(self.dequant(x).mean((1, 2))))


def main() -> None:
    # 1. The recipe: torch -> file -> jaxq.
    recipe = (tq.QConfigMapping()
              .set_global(tq.QConfig(
                  activation=tq.MovingAverageMinMaxObserver.with_args(reduce_range=True),
                  weight=tq.default_per_channel_weight_observer))
              .set_object_type(torch.nn.functional.layer_norm, tq.default_qconfig))
    path = os.path.join(tempfile.mkdtemp(), "recipe.json")
    save_qconfig_mapping(recipe, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TranslationWarning)
        mapping = load_qconfig_mapping(path)    # no torch needed for this line
    print(f"recipe file: {path}")
    for warning in caught:
        print(f"  note: {warning.message}")

    # 2. Quantize in torch.
    torch.manual_seed(0)
    torch_model = TorchNet().eval()
    torch_model.qconfig = recipe.global_qconfig
    torch_model = tq.prepare(tq.fuse_modules(torch_model, [["conv", "bn", "relu"]]))
    with torch.no_grad():
        for _ in range(8):
            torch_model(torch.randn(4, 3, 16, 16))
    statistics = tq.get_observer_state_dict(torch_model)
    torch_quantized = tq.convert(copy.deepcopy(torch_model))

    # 3. The same model in jaxq, with torch's recipe, statistics and weights.
    model = FlaxNet(nnx.Rngs(0))
    model.eval()
    model = fuse_modules(model, [["conv", "bn", "relu"]])
    model.qconfig = mapping.global_qconfig     # == from_torch(recipe.global_qconfig)
    assert type(model.qconfig.activation()) is type(from_torch(recipe.global_qconfig)
                                                    .activation())
    prepared = prepare(model)
    load_torch_observer_state_dict(prepared, statistics)
    quantized = convert(prepared)
    load_torch_state_dict(quantized, torch_quantized.state_dict())

    # 4. Same input, same int8 output.
    x = torch.randn(8, 3, 16, 16)
    theirs = torch_quantized(x).int_repr().numpy()
    ours = np.asarray(quantized(jnp.asarray(x.numpy().transpose(0, 2, 3, 1))).int_repr())
    diff = np.abs(theirs.astype(int) - ours.astype(int))
    print(f"int8 outputs: {100 * (diff == 0).mean():.2f}% equal, max difference {diff.max()}")


if __name__ == "__main__":
    main()
