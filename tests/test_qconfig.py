"""QConfig and the default qconfigs: same observers and constructor arguments as torch."""

import warnings

import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import qconfig as tq

import jaxq
from jaxq import qconfig as jq

# Attributes that define an observer / fake-quantize; compared wherever torch's has them.
ATTRIBUTES = ("dtype", "qscheme", "quant_min", "quant_max", "reduce_range", "ch_axis",
              "averaging_constant", "eps", "is_dynamic", "bins", "upsample_rate",
              "has_customized_qrange", "custom_op")
FIXED_QPARAMS_ATTRIBUTES = ("scale", "zero_point")


def _normalize(name, value):
    if isinstance(value, torch.Tensor):
        value = value.detach().numpy()
    if name == "dtype" and value is not None:
        return jaxq.as_quant_dtype(value)
    if name == "qscheme" and value is not None:
        return jaxq.as_qscheme(value)
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        array = np.asarray(value)
        return array.item() if array.size == 1 else tuple(array.ravel().tolist())
    return value


def assert_observer_matches_torch(obj, torch_obj, where="observer"):
    """Same class name and the same defining attributes (recursing into fake-quantizes)."""
    if isinstance(torch_obj, torch.nn.Identity):
        assert isinstance(obj, jq.Identity), where
        return
    assert type(obj).__name__ == type(torch_obj).__name__, where
    names = ATTRIBUTES
    if type(torch_obj).__name__.startswith("FixedQParams"):
        names += FIXED_QPARAMS_ATTRIBUTES
    for name in names:
        if not hasattr(torch_obj, name):
            continue
        assert hasattr(obj, name), f"{where}: jaxq {type(obj).__name__} lacks {name}"
        expected = _normalize(name, getattr(torch_obj, name))
        actual = _normalize(name, getattr(obj, name))
        if isinstance(expected, float) and isinstance(actual, float):
            assert actual == pytest.approx(expected, rel=1e-7), f"{where}.{name}"
        else:
            assert actual == expected, f"{where}.{name}: {actual!r} != {expected!r}"
    if hasattr(torch_obj, "activation_post_process"):
        assert_observer_matches_torch(obj.activation_post_process,
                                      torch_obj.activation_post_process,
                                      f"{where}.activation_post_process")


def assert_qconfig_matches_torch(qconfig, torch_qconfig):
    """Both None, or both QConfigs whose constructors build matching observers."""
    if torch_qconfig is None:
        assert qconfig is None
        return
    assert isinstance(qconfig, jq.QConfig)
    for part in ("activation", "weight"):
        torch_ctor, ctor = getattr(torch_qconfig, part), getattr(qconfig, part)
        if torch_ctor is None:
            assert ctor is None, part
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert_observer_matches_torch(ctor(), torch_ctor(), part)


QCONFIG_NAMES = [n for n in tq.__all__ if isinstance(getattr(tq, n), tq.QConfig)] + [
    "_default_fp32_placeholder_qconfig", "_default_quint8_placeholder_qconfig"]


def test_every_torch_name_exists():
    missing = [n for n in tq.__all__ if not hasattr(jq, n)]
    assert not missing
    assert len(QCONFIG_NAMES) >= 20


@pytest.mark.parametrize("name", QCONFIG_NAMES)
def test_default_qconfig_matches_torch(name):
    assert_qconfig_matches_torch(getattr(jq, name), getattr(tq, name))


@pytest.mark.parametrize("backend", ["x86", "fbgemm", "qnnpack", "onednn"])
def test_get_default_qconfig_matches_torch(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_qconfig_matches_torch(jq.get_default_qconfig(backend),
                                     tq.get_default_qconfig(backend))


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("backend", ["x86", "fbgemm", "qnnpack", "onednn"])
def test_get_default_qat_qconfig_matches_torch(backend, version):
    assert_qconfig_matches_torch(jq.get_default_qat_qconfig(backend, version),
                                 tq.get_default_qat_qconfig(backend, version))


def test_defaults_are_x86():
    assert jq.qconfig_equals(jq.get_default_qconfig(), jq.get_default_qconfig("x86", 0))
    assert jq.qconfig_equals(jq.get_default_qat_qconfig(), jq.get_default_qat_qconfig("x86", 1))


@pytest.mark.parametrize("backend", ["X86", "cuda", "", None])
def test_unsupported_backend(backend):
    with pytest.raises(AssertionError):
        tq.get_default_qconfig(backend)
    for fn in (jq.get_default_qconfig, jq.get_default_qat_qconfig):
        with pytest.raises(ValueError, match=r"backend.*x86.*qnnpack.*onednn"):
            fn(backend)


@pytest.mark.parametrize("fn,version", [
    (jq.get_default_qconfig, 1), (jq.get_default_qconfig, True),
    (jq.get_default_qat_qconfig, 2), (jq.get_default_qat_qconfig, -1),
    (jq.get_default_qat_qconfig, None)])
def test_unsupported_version(fn, version):
    with pytest.raises(ValueError, match="version"):
        fn("x86", version)


def test_qconfig_is_a_named_tuple_of_constructors():
    qconfig = jq.QConfig(activation=jaxq.observer.MinMaxObserver, weight=None)
    assert qconfig._fields == ("activation", "weight") == tq.QConfig._fields
    assert qconfig == (jaxq.observer.MinMaxObserver, None)
    with pytest.raises(ValueError, match="observer instance"):
        jq.QConfig(activation=jaxq.observer.MinMaxObserver(), weight=None)
    with pytest.raises(ValueError, match="observer instance"):
        tq.QConfig(activation=torch.ao.quantization.MinMaxObserver(), weight=None)
    with pytest.raises(TypeError, match="weight"):
        jq.QConfig(activation=None, weight=3)


def test_qconfig_dynamic_is_deprecated():
    with pytest.warns(FutureWarning, match="QConfig"):
        qconfig = jq.QConfigDynamic(weight=jaxq.observer.MinMaxObserver)
    assert qconfig.activation is jq.Identity
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="observer instance"):
        jq.QConfigDynamic(weight=jaxq.observer.MinMaxObserver())


def _pairs(lib, observer, fake_quantize):
    """(q1, q2) pairs built the same way from torch's or jaxq's modules."""
    return [
        (lib.default_qconfig, lib.default_qconfig),
        (lib.default_qconfig, lib.default_per_channel_qconfig),
        (lib.QConfig(observer.MinMaxObserver.with_args(reduce_range=True), None),
         lib.QConfig(observer.MinMaxObserver.with_args(reduce_range=True), None)),
        (lib.QConfig(observer.MinMaxObserver.with_args(reduce_range=True), None),
         lib.QConfig(observer.MinMaxObserver.with_args(reduce_range=False), None)),
        (lib.QConfig(observer.MinMaxObserver, None), lib.QConfig(observer.MinMaxObserver, None)),
        (lib.QConfig(fake_quantize.FakeQuantize.with_args(
            observer=observer.MovingAverageMinMaxObserver.with_args(averaging_constant=0.1)),
            None),
         lib.QConfig(fake_quantize.FakeQuantize.with_args(
             observer=observer.MovingAverageMinMaxObserver.with_args(averaging_constant=0.1)),
             None)),
        (lib.get_default_qat_qconfig("x86"), lib.get_default_qat_qconfig("x86")),
        (lib.get_default_qat_qconfig("x86"), lib.get_default_qat_qconfig("qnnpack")),
        (None, None),
        (None, lib.default_qconfig),
    ]


def test_qconfig_equals_matches_torch():
    torch_pairs = _pairs(tq, torch.ao.quantization.observer, torch.ao.quantization.fake_quantize)
    jaxq_pairs = _pairs(jq, jaxq.observer, jaxq.fake_quantize)
    torch_results = [tq.qconfig_equals(a, b) for a, b in torch_pairs]
    assert [jq.qconfig_equals(a, b) for a, b in jaxq_pairs] == torch_results
    assert True in torch_results and False in torch_results


def test_private_predicates_match_torch():
    for name in QCONFIG_NAMES:
        qconfig, torch_qconfig = getattr(jq, name), getattr(tq, name)
        if torch_qconfig.activation is None:
            continue
        assert jq._activation_is_memoryless(qconfig) == tq._activation_is_memoryless(
            torch_qconfig), name
        if torch_qconfig.weight is not None:
            assert jq._is_reuse_input_qconfig(qconfig) == tq._is_reuse_input_qconfig(
                torch_qconfig), name


def test_conv_transpose_rejects_per_channel_weights():
    conv_t = nnx.ConvTranspose(2, 3, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Per channel"):
        jq._assert_valid_qconfig(jq.default_per_channel_qconfig, conv_t)
    jq._assert_valid_qconfig(jq.default_qconfig, conv_t)
    jq._assert_valid_qconfig(jq.default_per_channel_qconfig,
                             nnx.Linear(2, 3, rngs=nnx.Rngs(0)))


def test_deprecated_dict_getters():
    with pytest.warns(FutureWarning, match="get_default_qconfig_mapping"):
        as_dict = jq.get_default_qconfig_dict()
    assert set(as_dict) == set(torch.ao.quantization.QConfigMapping().to_dict())
    with pytest.warns(FutureWarning, match="get_default_qat_qconfig_mapping"):
        jq.get_default_qat_qconfig_dict("qnnpack")


def test_identity_passes_through():
    x = np.arange(3.0)
    assert jq.Identity()(x) is x
