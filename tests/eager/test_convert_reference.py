"""prepare -> calibrate -> convert(is_reference=True) vs torch's eager flow.

torch keeps QuantStub -> nnq.Quantize and DeQuantStub -> nnq.DeQuantize in reference mode
and swaps Linear / Conv for reference modules whose weight qparams come from
``get_qparam_dict(qconfig.weight())`` run on the weight. Weights and qparams must be
bit-exact; the reference modules' float forward is compared with rtol/atol 1e-5.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx

import jaxq.observer as jobs
import jaxq.qconfig as jqc
from jaxq.eager import DeQuantStub, QuantStub, convert, prepare
from jaxq.eager.hooks import is_activation_post_process
from jaxq.eager._tree import named_modules
from jaxq.nn.quantized import DeQuantize, Quantize
from jaxq.nn.quantized.reference import Conv2d as RefConv2d, Linear as RefLinear
from tests.eager._models import copy_conv, copy_linear, nchw


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 5 * 5, 6)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.conv(self.quant(x))
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.dequant(self.fc(x))


class FlaxNet(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.quant = QuantStub()
        self.conv = nnx.Conv(2, 4, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.fc = nnx.Linear(4 * 5 * 5, 6, rngs=rngs)
        self.dequant = DeQuantStub()

    def __call__(self, x):
        x = self.conv(self.quant(x))
        return self.dequant(self.fc(x.reshape(x.shape[0], -1)))


QCONFIGS = {
    "x86": (lambda: tq.get_default_qconfig("x86"), lambda: jqc.get_default_qconfig("x86")),
    "qnnpack": (lambda: tq.get_default_qconfig("qnnpack"),
                lambda: jqc.get_default_qconfig("qnnpack")),
    "minmax_quint8_weight": (
        lambda: tq.QConfig(activation=tq.default_observer,
                           weight=tq.MinMaxObserver.with_args(dtype=torch.quint8)),
        lambda: jqc.QConfig(activation=jobs.default_observer,
                            weight=jobs.MinMaxObserver.with_args(dtype="quint8"))),
    "float_qparams_weight": (
        lambda: tq.QConfig(activation=tq.default_observer,
                           weight=tq.default_float_qparams_observer),
        lambda: jqc.QConfig(activation=jobs.default_observer,
                            weight=jobs.default_float_qparams_observer)),
    "fp16_placeholder_weight": (
        lambda: tq.QConfig(activation=tq.default_observer,
                           weight=tq.PlaceholderObserver.with_args(dtype=torch.float16)),
        lambda: jqc.QConfig(activation=jobs.default_observer,
                            weight=jobs.PlaceholderObserver.with_args(dtype="float16"))),
}


def _name(value) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", getattr(value, "name", value))).removeprefix("torch.")


def _converted(rng, qconfig_name):
    torch.manual_seed(int(rng.integers(0, 2**31)))
    tmodel = TorchNet().eval()
    model = FlaxNet()
    copy_conv(model.conv, tmodel.conv)
    copy_linear(model.fc, tmodel.fc)
    tqconfig, jqconfig = QCONFIGS[qconfig_name]
    tmodel.qconfig = tqconfig()
    model.qconfig = jqconfig()
    tprepared, prepared = tq.prepare(tmodel), prepare(model)
    for _ in range(2):
        x = rng.normal(size=(3, 5, 5, 2)).astype(np.float32)
        tprepared(nchw(x))
        prepared(jnp.asarray(x))
    return tq.convert(tprepared, is_reference=True), convert(prepared, is_reference=True)


_forward = nnx.jit(lambda m, x: m(x))


@pytest.mark.parametrize("qconfig_name", list(QCONFIGS))
def test_convert_reference_matches_torch(rng, qconfig_name):
    tref, ref = _converted(rng, qconfig_name)
    assert isinstance(ref.quant, Quantize) and isinstance(ref.dequant, DeQuantize)
    assert isinstance(tref.quant, torch.ao.nn.quantized.Quantize)
    assert isinstance(ref.conv, RefConv2d) and isinstance(ref.fc, RefLinear)
    assert isinstance(tref.conv, torch.ao.nn.quantized.reference.Conv2d)
    np.testing.assert_array_equal(np.asarray(ref.quant.scale.get_value()).ravel(),
                                  tref.quant.scale.numpy())
    np.testing.assert_array_equal(np.asarray(ref.quant.zero_point.get_value()).ravel(),
                                  tref.quant.zero_point.numpy())
    assert not any(is_activation_post_process(m) for _, m in named_modules(ref))
    assert not any("qconfig" in vars(m) for _, m in named_modules(ref))
    for name in ("conv", "fc"):
        tmod, mod = getattr(tref, name), getattr(ref, name)
        assert _name(mod.weight_qscheme) == _name(tmod.weight_qscheme)
        assert _name(mod.weight_dtype) == _name(tmod.weight_dtype)
        assert mod.weight_axis_int == tmod.weight_axis_int
        assert (mod.weight_quant_min, mod.weight_quant_max) == (tmod.weight_quant_min,
                                                                tmod.weight_quant_max)
        np.testing.assert_array_equal(np.asarray(mod.weight_scale.get_value()),
                                      tmod.weight_scale.numpy())
        np.testing.assert_array_equal(np.asarray(mod.weight_zero_point.get_value()),
                                      tmod.weight_zero_point.numpy())
        np.testing.assert_array_equal(np.asarray(mod.get_weight()),
                                      tmod.get_weight().detach().numpy())
        if tmod.weight_qscheme is not None:
            tq_weight, q_weight = tmod.get_quantized_weight(), mod.get_quantized_weight()
            np.testing.assert_array_equal(np.asarray(q_weight.int_repr()),
                                          tq_weight.int_repr().numpy())
    # The reference modules compute in float.
    x = rng.normal(size=(2, 5, 5, 2)).astype(np.float32)
    got = np.asarray(_forward(ref.conv, jnp.asarray(x)))
    expected = tref.conv(nchw(x)).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    h = got.reshape(2, -1)
    np.testing.assert_allclose(np.asarray(_forward(ref.fc, jnp.asarray(h))),
                               tref.fc(torch.from_numpy(h)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_reference_model_rejects_quantized_activations_like_torch(rng):
    tref, ref = _converted(rng, "x86")
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
    with pytest.raises(RuntimeError):
        tref(nchw(x))
    with pytest.raises(TypeError, match="float input"):
        ref(jnp.asarray(x))


def test_convert_reference_conv_transpose_matches_torch(rng):
    """Transposed convs: the observer sees torch's ``(in, out, *k)`` weight (per-tensor
    only, as torch's prepare rejects per-channel weight observers for them)."""
    from jaxq.nn.quantized.reference import ConvTranspose2d as RefConvTranspose2d
    torch.manual_seed(int(rng.integers(0, 2**31)))
    tmodel = torch.nn.Sequential(tq.QuantStub(), torch.nn.ConvTranspose2d(2, 3, 3, stride=2),
                                 tq.DeQuantStub()).eval()

    class Net(nnx.Module):
        def __init__(self):
            self.quant = QuantStub()
            self.convt = nnx.ConvTranspose(2, 3, (3, 3), strides=2, padding=((2, 2), (2, 2)),
                                           transpose_kernel=True, rngs=nnx.Rngs(0))
            self.dequant = DeQuantStub()

        def __call__(self, x):
            return self.dequant(self.convt(self.quant(x)))

    model = Net()
    w = tmodel[1].weight.detach().numpy()
    model.convt.kernel.set_value(jnp.asarray(np.ascontiguousarray(w.transpose(2, 3, 1, 0))))
    model.convt.bias.set_value(jnp.asarray(tmodel[1].bias.detach().numpy()))
    tmodel.qconfig, model.qconfig = tq.default_qconfig, jqc.default_qconfig
    tprepared, prepared = tq.prepare(tmodel), prepare(model)
    x = rng.normal(size=(2, 4, 4, 2)).astype(np.float32)
    tprepared(nchw(x))
    prepared(jnp.asarray(x))
    tref, ref = tq.convert(tprepared, is_reference=True), convert(prepared, is_reference=True)
    assert isinstance(ref.convt, RefConvTranspose2d)
    assert isinstance(tref[1], torch.ao.nn.quantized.reference.ConvTranspose2d)
    np.testing.assert_array_equal(np.asarray(ref.convt.weight_scale.get_value()),
                                  tref[1].weight_scale.numpy())
    np.testing.assert_array_equal(np.asarray(ref.convt.get_weight()),
                                  tref[1].get_weight().detach().numpy())
    got = np.asarray(_forward(ref.convt, jnp.asarray(x)))
    expected = tref[1](nchw(x)).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_convert_reference_embedding(rng):
    """torch 2.13's reference Embedding lacks ``_IS_REFERENCE``, so its eager
    ``convert(is_reference=True)`` calls ``from_float(mod)`` without weight_qparams and
    fails; jaxq converts, with the module torch's ``from_float(mod, get_qparam_dict(
    qconfig.weight() run on the weight))`` builds."""
    from torch.ao.quantization.utils import get_qparam_dict
    from jaxq.nn.quantized.reference import Embedding as RefEmbedding
    table = rng.normal(size=(10, 8)).astype(np.float32)
    tmodel = torch.nn.Sequential(torch.nn.Embedding(10, 8, _weight=torch.from_numpy(table)))

    class Net(nnx.Module):
        def __init__(self):
            self.emb = nnx.Embed(10, 8, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.emb(x)

    model = Net()
    model.emb.embedding.set_value(jnp.asarray(table))
    tmodel[0].qconfig = tq.float_qparams_weight_only_qconfig
    model.emb.qconfig = jqc.float_qparams_weight_only_qconfig
    indices = rng.integers(0, 10, size=(3, 2))
    tprepared, prepared = tq.prepare(tmodel), prepare(model)
    tprepared(torch.from_numpy(indices))
    prepared(jnp.asarray(indices))
    with pytest.raises(TypeError, match="weight_qparams"):
        tq.convert(tprepared, is_reference=True)
    observer = tq.float_qparams_weight_only_qconfig.weight()
    observer(tmodel[0].weight)
    tref = torch.ao.nn.quantized.reference.Embedding.from_float(tmodel[0],
                                                                get_qparam_dict(observer))
    ref = convert(prepared, is_reference=True)
    assert isinstance(ref.emb, RefEmbedding)
    np.testing.assert_array_equal(np.asarray(ref.emb.weight_scale.get_value()),
                                  tref.weight_scale.numpy())
    np.testing.assert_array_equal(np.asarray(ref.emb.weight_zero_point.get_value()),
                                  tref.weight_zero_point.numpy())
    np.testing.assert_array_equal(np.asarray(ref(jnp.asarray(indices))),
                                  tref(torch.from_numpy(indices)).detach().numpy())


def test_convert_reference_lstm_cell(rng):
    """torch 2.13's reference cells lack ``_IS_REFERENCE`` (its convert fails); jaxq
    gives the cell torch's ``from_float(mod, weight_qparams_dict)`` builds with one
    ``get_qparam_dict(qconfig.weight())`` per weight."""
    from torch.ao.quantization.utils import get_qparam_dict
    from jaxq.nn.quantized.reference import LSTMCell as RefLSTMCell
    torch.manual_seed(int(rng.integers(0, 2**31)))
    tcell = torch.nn.LSTMCell(5, 4)
    with torch.no_grad():
        tcell.bias_ih.zero_()  # Flax's LSTMCell has no input-side biases
    tmodel = torch.nn.Sequential(tcell)

    class Net(nnx.Module):
        def __init__(self):
            self.quant = QuantStub()
            self.cell = nnx.LSTMCell(5, 4, rngs=nnx.Rngs(0))
            self.dequant = DeQuantStub()

    model = Net()  # the stubs' observers mark it prepared; the cell needs no calibration
    hidden = 4
    w_ih, w_hh = tcell.weight_ih.detach().numpy(), tcell.weight_hh.detach().numpy()
    b_hh = tcell.bias_hh.detach().numpy()
    for gate, (lin_i, lin_h) in enumerate([("ii", "hi"), ("if_", "hf"), ("ig", "hg"),
                                           ("io", "ho")]):
        rows = slice(gate * hidden, (gate + 1) * hidden)
        getattr(model.cell, lin_i).kernel.set_value(jnp.asarray(w_ih[rows].T))
        getattr(model.cell, lin_h).kernel.set_value(jnp.asarray(w_hh[rows].T))
        getattr(model.cell, lin_h).bias.set_value(jnp.asarray(b_hh[rows]))
    tqconfig, jqconfig = tq.get_default_qconfig("x86"), jqc.get_default_qconfig("x86")
    tmodel[0].qconfig = tqconfig
    model.qconfig = jqconfig
    tprepared, prepared = tq.prepare(tmodel), prepare(model)
    with pytest.raises(TypeError, match="weight_qparams_dict"):
        tq.convert(tprepared, is_reference=True)
    qparams = {}
    for name in ("weight_ih", "weight_hh"):
        observer = tqconfig.weight()
        observer(getattr(tcell, name))
        qparams[name] = get_qparam_dict(observer)
    tref = torch.ao.nn.quantized.reference.LSTMCell.from_float(
        tcell, {**qparams, "is_decomposed": False})
    ref = convert(prepared, is_reference=True)
    assert isinstance(ref.cell, RefLSTMCell)
    for name in ("ih", "hh"):
        np.testing.assert_array_equal(
            np.asarray(getattr(ref.cell, f"weight_{name}_scale").get_value()),
            getattr(tref, f"weight_{name}_scale").numpy())
        np.testing.assert_array_equal(np.asarray(getattr(ref.cell, f"get_weight_{name}")()),
                                      getattr(tref, f"get_weight_{name}")().detach().numpy())
    x = rng.normal(size=(3, 5)).astype(np.float32)
    got_h, got_c = ref.cell(jnp.asarray(x))
    want_h, want_c = tref(torch.from_numpy(x))
    np.testing.assert_allclose(np.asarray(got_h), want_h.detach().numpy(), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_c), want_c.detach().numpy(), rtol=1e-5,
                               atol=1e-5)
