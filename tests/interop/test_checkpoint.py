"""A torch CNN quantized in torch (fuse, prepare, calibrate, convert) imported into jaxq."""

from __future__ import annotations

import copy
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx

import jaxq.nn as jnn
from jaxq.eager import DeQuantStub, QuantStub, convert, fuse_modules, prepare
from jaxq.interop import (
    from_torch,
    load_torch_observer_state_dict,
    load_torch_state_dict,
)

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)


# x86's default weights (per-channel symmetric qint8) with moving-average activation
# observers: HistogramObserver statistics are covered by test_histogram_and_per_channel_...
# below, on one observer (each jaxq histogram qparams search costs seconds eagerly).
QCONFIG = tq.QConfig(
    activation=tq.MovingAverageMinMaxObserver.with_args(reduce_range=True,
                                                        averaging_constant=0.3),
    weight=tq.default_per_channel_weight_observer)


class TorchCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 6, 3, stride=2)
        self.relu2 = torch.nn.ReLU()
        self.dequant = tq.DeQuantStub()
        self.quant2 = tq.QuantStub()
        self.fc = torch.nn.Linear(6, 5)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.bn1(self.conv1(self.quant(x))))))
        self.features = x
        return self.fc(self.quant2(self.dequant(x).mean((2, 3))))


class JaxqCNN(nnx.Module):
    """The same network in Flax (channels-last); its float weights are never used."""

    def __init__(self):
        rngs = nnx.Rngs(1)
        self.quant = QuantStub()
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=1, rngs=rngs)
        self.bn1 = nnx.BatchNorm(8, rngs=rngs)
        self.relu1 = jnn.ReLU()
        self.conv2 = nnx.Conv(8, 6, (3, 3), strides=2, padding="VALID", rngs=rngs)
        self.relu2 = jnn.ReLU()
        self.dequant = DeQuantStub()
        self.quant2 = QuantStub()
        self.fc = nnx.Linear(6, 5, rngs=rngs)

    def __call__(self, x):
        x = self.relu2(self.conv2(self.relu1(self.bn1(self.conv1(self.quant(x))))))
        self.features = nnx.data(x) if hasattr(nnx, "data") else x
        return self.fc(self.quant2(self.dequant(x).mean((1, 2))))


@pytest.fixture(scope="module")
def torch_quantized():
    torch.manual_seed(0)
    model = TorchCNN().eval()
    with torch.no_grad():  # non-trivial BN statistics
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
    model.qconfig = QCONFIG
    fused = tq.fuse_modules(model, [["conv1", "bn1", "relu1"], ["conv2", "relu2"]])
    prepared = tq.prepare(fused)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn(8, 3, 12, 12, generator=generator) * 2)
    del prepared.features
    observer_state = tq.get_observer_state_dict(prepared)
    quantized = tq.convert(copy.deepcopy(prepared))
    return prepared, observer_state, quantized


def _jaxq_prepared():
    model = JaxqCNN()
    model.eval()
    model = fuse_modules(model, [["conv1", "bn1", "relu1"], ["conv2", "relu2"]])
    model.qconfig = from_torch(QCONFIG)
    return prepare(model)


def test_observer_statistics_carry_over(torch_quantized):
    prepared, observer_state, _ = torch_quantized
    ours = _jaxq_prepared()
    load_torch_observer_state_dict(ours, observer_state)
    for name in ("quant", "conv1", "conv2", "quant2", "fc"):
        theirs = getattr(prepared, name).activation_post_process.calculate_qparams()
        scale, zero_point = getattr(ours, name).activation_post_process.calculate_qparams()
        np.testing.assert_array_equal(np.asarray(scale).reshape(-1),
                                      theirs[0].numpy().reshape(-1))
        np.testing.assert_array_equal(np.asarray(zero_point).reshape(-1),
                                      theirs[1].numpy().reshape(-1))


def test_observer_state_errors_name_the_entry(torch_quantized):
    _, observer_state, _ = torch_quantized
    ours = _jaxq_prepared()
    extra = {**observer_state, "head.activation_post_process.min_val": torch.tensor(0.0)}
    with pytest.raises(ValueError, match="head.activation_post_process.min_val"):
        load_torch_observer_state_dict(ours, extra)
    missing = {k: v for k, v in observer_state.items() if not k.startswith("fc.")}
    with pytest.raises(ValueError, match="fc.activation_post_process"):
        load_torch_observer_state_dict(ours, missing)
    bad = dict(observer_state)
    bad["conv1.activation_post_process.histogram"] = torch.zeros(16)
    with pytest.raises(ValueError, match="conv1.activation_post_process.histogram"):
        load_torch_observer_state_dict(ours, bad)


@pytest.fixture(scope="module")
def jaxq_quantized(torch_quantized):
    _, observer_state, quantized = torch_quantized
    ours = _jaxq_prepared()
    load_torch_observer_state_dict(ours, observer_state)
    ours = convert(ours)
    load_torch_state_dict(ours, quantized.state_dict())
    return ours


def test_int8_outputs_match_torch(torch_quantized, jaxq_quantized):
    _, _, quantized = torch_quantized
    x = torch.randn(16, 3, 12, 12, generator=torch.Generator().manual_seed(7)) * 2
    theirs = quantized(x)
    ours = jaxq_quantized(jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    for t, o in ((quantized.features.int_repr().numpy().transpose(0, 2, 3, 1),
                  np.asarray(jaxq_quantized.features.int_repr())),
                 (theirs.int_repr().numpy(), np.asarray(ours.int_repr()))):
        diff = np.abs(t.astype(np.int32) - o.astype(np.int32))
        assert diff.max() <= 1
        assert (diff == 0).mean() >= 0.99
    assert float(ours.scale) == theirs.q_scale()
    assert int(ours.zero_point) == theirs.q_zero_point()


def test_weights_and_qparams_are_torch_s(torch_quantized, jaxq_quantized):
    _, _, quantized = torch_quantized
    ours, theirs = jaxq_quantized.conv1.weight(), quantized.conv1.weight()
    np.testing.assert_array_equal(np.asarray(ours.int_repr()), theirs.int_repr().numpy())
    np.testing.assert_array_equal(np.asarray(ours.scale),
                                  theirs.q_per_channel_scales().numpy().astype(np.float32))
    np.testing.assert_array_equal(np.asarray(jaxq_quantized.fc.bias()),
                                  quantized.fc.bias().detach().numpy())


def test_state_dict_errors_name_the_entry(torch_quantized):
    _, observer_state, quantized = torch_quantized
    ours = _jaxq_prepared()
    load_torch_observer_state_dict(ours, observer_state)
    ours = convert(ours)
    before = np.asarray(ours.conv2.weight().int_repr())
    state = quantized.state_dict()
    with pytest.raises(ValueError, match="'conv2.zero_point'"):
        load_torch_state_dict(ours, {k: v for k, v in state.items() if k != "conv2.zero_point"})
    with pytest.raises(ValueError, match="'extra.scale'"):
        load_torch_state_dict(ours, {**state, "extra.scale": torch.tensor(1.0)})
    wrong = dict(state)
    wrong["conv1.weight"] = torch.quantize_per_tensor(torch.randn(8, 3, 5, 5), 0.1, 0,
                                                      torch.qint8)
    with pytest.raises(ValueError, match=r"'conv1.weight'\] has shape \(8, 3, 5, 5\)"):
        load_torch_state_dict(ours, wrong)
    wrong = dict(state)
    wrong["fc.scale"] = torch.ones(3)
    with pytest.raises(ValueError, match=r"'fc.scale'\] has shape"):
        load_torch_state_dict(ours, wrong)
    # Nothing was written by the failed loads.
    np.testing.assert_array_equal(np.asarray(ours.conv2.weight().int_repr()), before)


class _Holder(nnx.Module):
    def __init__(self, observers):
        for name, observer in observers.items():
            setattr(self, name, observer)


def test_histogram_and_per_channel_statistics_carry_over(rng):
    torch_modules = torch.nn.Module()
    torch_modules.hist = tq.HistogramObserver(reduce_range=True)
    torch_modules.chan = tq.MovingAveragePerChannelMinMaxObserver(
        averaging_constant=0.2, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    torch_modules.fq = tq.default_fake_quant()
    for _ in range(2):
        x = torch.from_numpy(rng.normal(0.5, 2.0, size=(6, 10)).astype(np.float32))
        torch_modules.hist(x)
        torch_modules.chan(x)
        torch_modules.fq(x)
    ours = _Holder({name: from_torch(type(module).with_args(**kwargs))()
                    for name, module, kwargs in (
                        ("hist", torch_modules.hist, {"reduce_range": True}),
                        ("chan", torch_modules.chan, {"averaging_constant": 0.2,
                                                       "dtype": torch.qint8,
                                                       "qscheme": torch.per_channel_symmetric}))})
    ours.fq = from_torch(tq.default_fake_quant)()
    # torch's get_observer_state_dict skips a fake-quant's own scale / zero_point / flags.
    with pytest.raises(ValueError, match="'fq.scale'"):
        load_torch_observer_state_dict(ours, tq.get_observer_state_dict(torch_modules))
    load_torch_observer_state_dict(ours, torch_modules.state_dict())
    for name in ("hist", "chan", "fq"):
        theirs = getattr(torch_modules, name).calculate_qparams()
        scale, zero_point = getattr(ours, name).calculate_qparams()
        np.testing.assert_array_equal(np.asarray(scale).reshape(-1),
                                      theirs[0].numpy().reshape(-1))
        np.testing.assert_array_equal(np.asarray(zero_point).reshape(-1),
                                      theirs[1].numpy().reshape(-1))
