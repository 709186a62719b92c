"""from_torch / to_torch for QConfigs and constructors, checked against torch's qparams."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
import torch.ao.quantization as tq
import torch.ao.quantization.qconfig as tqconfig

import jaxq
from jaxq import fake_quantize as jfq
from jaxq import observer as jobs
from jaxq import qconfig as jqconfig
from jaxq.interop import from_torch, to_torch
from jaxq.interop.specs import jaxq_qconfig_spec, torch_qconfig_spec
from tests.interop._helpers import assert_same_qparams

warnings.filterwarnings("ignore", category=DeprecationWarning)

DEFAULT_QCONFIG_NAMES = sorted(
    name for name, value in vars(tqconfig).items()
    if isinstance(value, tq.QConfig) and not name.startswith("_"))
BACKENDS = ["x86", "fbgemm", "qnnpack", "onednn"]


def test_every_torch_default_qconfig_is_listed():
    assert len(DEFAULT_QCONFIG_NAMES) >= 20
    assert "default_qat_qconfig_v2" in DEFAULT_QCONFIG_NAMES


@pytest.mark.parametrize("name", DEFAULT_QCONFIG_NAMES)
def test_default_qconfig_converts_to_jaxq_namesake(name, rng):
    theirs = getattr(tqconfig, name)
    ours = from_torch(theirs)
    assert isinstance(ours, jqconfig.QConfig)
    assert jaxq_qconfig_spec(ours) == jaxq_qconfig_spec(getattr(jqconfig, name))
    assert_same_qparams(theirs.activation, ours.activation, "activation", rng)
    assert_same_qparams(theirs.weight, ours.weight, "weight", rng)
    # ... and back.
    assert torch_qconfig_spec(to_torch(ours)) == torch_qconfig_spec(theirs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["ptq", "qat0", "qat1"])
def test_get_default_qconfig(backend, kind, rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "ptq":
            theirs, expected = tq.get_default_qconfig(backend), jqconfig.get_default_qconfig(
                backend)
        else:
            version = int(kind[-1])
            theirs = tq.get_default_qat_qconfig(backend, version)
            expected = jqconfig.get_default_qat_qconfig(backend, version)
    ours = from_torch(theirs)
    assert jaxq_qconfig_spec(ours) == jaxq_qconfig_spec(expected)
    assert_same_qparams(theirs.activation, ours.activation, "activation", rng)
    assert_same_qparams(theirs.weight, ours.weight, "weight", rng)


def test_with_args_chains_and_nested_partials(rng):
    chain = tq.MinMaxObserver.with_args(dtype=torch.qint8).with_args(
        qscheme=torch.per_tensor_symmetric).with_args(quant_min=-100, quant_max=100)
    ours = from_torch(chain)
    obs = ours()
    assert (obs.dtype, obs.qscheme, obs.quant_min, obs.quant_max) == (
        jaxq.qint8, jaxq.per_tensor_symmetric, -100, 100)
    assert_same_qparams(chain, ours, "activation", rng)
    # FakeQuantize partial carrying its own observer partial.
    fq = tq.FakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver.with_args(averaging_constant=0.5),
        quant_min=0, quant_max=127)
    ours_fq = from_torch(fq)
    built = ours_fq()
    assert isinstance(built, jfq.FakeQuantize)
    assert built.activation_post_process.averaging_constant == 0.5
    assert_same_qparams(fq, ours_fq, "activation", rng)
    # A plain functools.partial works like with_args.
    partial = functools.partial(tq.PerChannelMinMaxObserver, dtype=torch.qint8,
                                qscheme=torch.per_channel_symmetric)
    assert_same_qparams(partial, from_torch(partial), "weight", rng)


def test_callable_args_are_evaluated_at_each_construction(rng):
    calls = []

    def bins():
        calls.append(1)
        return 64

    ctor = tq.HistogramObserver.with_callable_args(bins=bins).with_args(reduce_range=True)
    ours = from_torch(ctor)          # builds it once to validate it
    calls.clear()
    assert ours().bins == 64 and ours().bins == 64 and len(calls) == 2
    assert ours(bins=32).bins == 32  # call-time keywords win, as in torch
    # A static keyword bound on top of a callable arg overrides it (torch's semantics).
    assert from_torch(ctor.with_args(bins=16))().bins == 16
    # torch values returned by the callable are translated.
    dtype_ctor = tq.MinMaxObserver.with_callable_args(dtype=lambda: torch.qint8)
    assert from_torch(dtype_ctor)().dtype is jaxq.qint8
    back = to_torch(from_torch(dtype_ctor))
    assert back().dtype is torch.qint8


def test_classes_dtypes_qschemes():
    assert from_torch(tq.HistogramObserver) is jobs.HistogramObserver
    assert from_torch(tq.FusedMovingAvgObsFakeQuantize) is jfq.FusedMovingAvgObsFakeQuantize
    assert from_torch(torch.quint4x2) is jaxq.quint4x2
    assert from_torch(torch.per_channel_affine_float_qparams) is (
        jaxq.per_channel_affine_float_qparams)
    assert to_torch(jaxq.qint32) is torch.qint32
    assert to_torch(jobs.MinMaxObserver) is tq.MinMaxObserver
    assert to_torch(jaxq.per_tensor_symmetric) is torch.per_tensor_symmetric


def test_activation_ch_axis_is_channels_last_in_jaxq():
    qconfig = tq.QConfig(
        activation=tq.PerChannelMinMaxObserver.with_args(ch_axis=1),
        weight=tq.default_per_channel_weight_observer)
    ours = from_torch(qconfig)
    assert ours.activation().ch_axis == -1   # NCHW channel axis -> NHWC's last axis
    assert ours.weight().ch_axis == 0        # weights keep torch's axis (jaxq.nn.layout)
    assert to_torch(ours).activation().ch_axis == 1
    bad = tq.QConfig(activation=tq.PerChannelMinMaxObserver.with_args(ch_axis=2),
                     weight=None)
    with pytest.raises(ValueError, match=r"activation\.ch_axis=2"):
        from_torch(bad)


class _MyTorchObserver(tq.MinMaxObserver):
    pass


@pytest.mark.parametrize("obj, match", [
    (_MyTorchObserver, "_MyTorchObserver"),
    (tq.QConfig(activation=_MyTorchObserver, weight=None), "activation.*_MyTorchObserver"),
    (tq.MinMaxObserver.with_args(dtype=torch.float16), r"dtype"),
    (tq.QConfig(activation=tq.MinMaxObserver, weight=tq.MinMaxObserver.with_args(
        qscheme=torch.per_channel_affine)), r"weight.*MinMaxObserver"),
    (tq.MinMaxObserver.with_args(dtype=torch.complex64), r"dtype"),
])
def test_unrepresentable_raises_naming_it(obj, match):
    with pytest.raises(ValueError, match=match):
        from_torch(obj)


def test_bad_kinds_raise_type_error():
    with pytest.raises(TypeError, match="instance"):
        from_torch(tq.MinMaxObserver())
    with pytest.raises(TypeError, match="torch object"):
        from_torch(jqconfig.default_qconfig)
    with pytest.raises(TypeError, match="cannot convert"):
        from_torch(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="to_torch cannot convert"):
        to_torch(object())
