"""The shared qparams rule, the functional-core design and _PartialWrapper, vs torch."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import observer as tobs

import jaxq
from jaxq.observer import (
    MinMaxObserver,
    ObserverState,
    PerChannelMinMaxObserver,
    UniformQuantizationCore,
    _PartialWrapper,
    calculate_qparams_from_min_max,
)
from tests.observer._torch_ref import assert_qparams_equal, torch_dtype, torch_qscheme

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# (dtype, qscheme, reduce_range, quant_min, quant_max, eps)
RULE_CONFIGS = [
    (jaxq.quint8, jaxq.per_tensor_affine, False, None, None, None),
    (jaxq.quint8, jaxq.per_tensor_symmetric, False, None, None, None),
    (jaxq.qint8, jaxq.per_tensor_affine, True, None, None, None),
    (jaxq.qint8, jaxq.per_channel_symmetric, False, None, None, None),
    (jaxq.quint8, jaxq.per_channel_symmetric, False, 0, 100, None),
    (jaxq.quint8, jaxq.per_tensor_symmetric, True, 0, 101, None),
    (jaxq.uint16, jaxq.per_tensor_symmetric, False, None, None, None),
    (jaxq.int16, jaxq.per_channel_affine, False, None, None, None),
    (jaxq.qint32, jaxq.per_tensor_affine, False, None, None, None),
    (jaxq.quint4x2, jaxq.per_channel_affine_float_qparams, False, None, None, None),
    (jaxq.quint8, jaxq.per_channel_affine_float_qparams, False, None, None, None),
    (jaxq.int8, jaxq.per_tensor_symmetric, False, -127, 127, 2**-12),
    (jaxq.float8_e4m3fn, jaxq.per_tensor_affine, False, None, None, None),
]


def _pair_sets(rng):
    lo = rng.standard_normal(6).astype(np.float32) * 3
    hi = lo + np.abs(rng.standard_normal(6)).astype(np.float32) * 4
    special_lo = np.array([0.0, 2.0, -3.0, np.nan, -np.inf, 1e-12, -1e30], np.float32)
    special_hi = np.array([0.0, 2.0, -1.0, np.nan, np.inf, 2e-12, 1e30], np.float32)
    return [(lo, hi), (special_lo, special_hi), (lo[:1].reshape(()), hi[:1].reshape(()))]


@pytest.mark.parametrize("config", RULE_CONFIGS, ids=lambda c: f"{c[0].name}-{c[1].value}")
def test_rule_matches_torch(config, rng):
    dtype, qscheme, reduce_range, qmin, qmax, eps = config
    kwargs = {} if eps is None else {"eps": eps}
    core = UniformQuantizationCore.create(dtype=dtype, qscheme=qscheme,
                                          reduce_range=reduce_range, quant_min=qmin,
                                          quant_max=qmax, **kwargs)
    theirs = tobs.UniformQuantizationObserverBase.__new__(tobs.MinMaxObserver)
    tobs.UniformQuantizationObserverBase.__init__(
        theirs, dtype=torch_dtype(dtype), qscheme=torch_qscheme(qscheme),
        reduce_range=reduce_range, quant_min=qmin, quant_max=qmax, **kwargs)
    assert (core.quant_min, core.quant_max) == (theirs.quant_min, theirs.quant_max)
    jitted = jax.jit(core._calculate_qparams)
    for lo, hi in _pair_sets(rng):
        expected = theirs._calculate_qparams(torch.from_numpy(lo), torch.from_numpy(hi))
        assert_qparams_equal(core._calculate_qparams(lo, hi), expected)
        assert_qparams_equal(jitted(lo, hi), expected)


def test_never_observed_matches_torch_and_warns():
    obs = MinMaxObserver(dtype=jaxq.qint8, qscheme=jaxq.per_tensor_symmetric)
    theirs = tobs.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    with pytest.warns(UserWarning, match="must run observer"):
        ours = obs.calculate_qparams()
    assert_qparams_equal(ours, theirs.calculate_qparams())
    # The jittable core gives the same values without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        core_result = jax.jit(obs.core.calculate_qparams)(obs.core.init())
    assert_qparams_equal(core_result, theirs.calculate_qparams())


def test_never_observed_per_channel_unsized_matches_torch():
    obs = PerChannelMinMaxObserver()
    with pytest.warns(UserWarning, match="must run observer"):
        ours = obs.calculate_qparams()
    assert_qparams_equal(ours, tobs.PerChannelMinMaxObserver().calculate_qparams())


def test_min_above_max_raises_eagerly():
    obs = MinMaxObserver()
    obs.state.set_value({"min_val": jnp.float32(2.0), "max_val": jnp.float32(1.0)})
    with pytest.raises(ValueError, match="min_val"):
        obs.calculate_qparams()
    theirs = tobs.MinMaxObserver()
    theirs.min_val.fill_(2.0)
    theirs.max_val.fill_(1.0)
    with pytest.raises(AssertionError):
        theirs.calculate_qparams()


def test_core_is_static_hashable_config():
    core = UniformQuantizationCore.create(dtype=jaxq.qint8, reduce_range=True)
    assert hash(core) == hash(UniformQuantizationCore.create(dtype="torch.qint8",
                                                             reduce_range=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        core.quant_min = 0


@pytest.mark.parametrize("kwargs, error", [
    ({"dtype": jaxq.float16}, TypeError),
    ({"dtype": jaxq.int4}, TypeError),
    ({"qscheme": "not_a_scheme"}, TypeError),
    ({"quant_min": 1, "quant_max": 10}, ValueError),
    ({"quant_min": 5, "quant_max": 5}, ValueError),
    ({"quant_min": -200, "quant_max": 100, "dtype": jaxq.qint8}, ValueError),
    ({"eps": 0.0}, ValueError),
])
def test_invalid_config_rejected(kwargs, error):
    with pytest.raises(error):
        UniformQuantizationCore.create(**kwargs)


def test_observer_state_is_not_a_param():
    class Net(nnx.Module):
        def __init__(self):
            self.linear = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
            self.obs = MinMaxObserver()

        def __call__(self, x):
            return self.obs(self.linear(x))

    net = Net()
    assert isinstance(net.obs.state, ObserverState)
    assert not isinstance(net.obs.state, nnx.Param)
    assert "obs" not in nnx.state(net, nnx.Param)
    assert set(nnx.state(net, ObserverState)) == {"obs"}
    grads = nnx.grad(lambda m, x: m(x).sum())(net, jnp.ones((2, 3)))
    assert "obs" not in grads
    # Observing inside grad still records statistics (stop_gradient input).
    assert float(net.obs.max_val) > -np.inf


def test_module_exposes_core_and_state():
    obs = MinMaxObserver(dtype=jaxq.qint8, reduce_range=True, eps=1e-4)
    theirs = tobs.MinMaxObserver(dtype=torch.qint8, reduce_range=True, eps=1e-4)
    for name in ("quant_min", "quant_max", "reduce_range", "has_customized_qrange",
                 "is_dynamic"):
        assert getattr(obs, name) == getattr(theirs, name), name
    assert obs.dtype is jaxq.qint8 and obs.qscheme is jaxq.per_tensor_affine
    assert np.float32(obs.eps) == theirs.eps.item()
    assert obs.min_val.shape == theirs.min_val.shape
    with pytest.raises(AttributeError):
        _ = obs.no_such_attribute


class _Counter:
    calls = 0

    @classmethod
    def make(cls):
        cls.calls += 1
        return cls.calls


@pytest.mark.parametrize("module", ["jaxq", "torch"])
def test_partial_wrapper_semantics_match_torch(module):
    cls = MinMaxObserver if module == "jaxq" else tobs.MinMaxObserver
    qint8 = jaxq.qint8 if module == "jaxq" else torch.qint8
    factory = cls.with_args(dtype=qint8).with_args(reduce_range=True)
    first, second = factory(), factory()
    assert first is not second
    assert (first.quant_min, first.quant_max) == (-64, 63)
    # Call-time keywords override bound ones.
    assert factory(reduce_range=False).quant_min == -128
    # Callable args are evaluated per construction; call-time keywords win.
    _Counter.calls = 0
    with_callable = cls.with_callable_args(eps=lambda: 2.0 ** -_Counter.make())
    a, b = with_callable(), with_callable()
    assert float(np.asarray(a.eps).ravel()[0]) == 0.5
    assert float(np.asarray(b.eps).ravel()[0]) == 0.25
    assert float(np.asarray(with_callable(eps=1.0).eps).ravel()[0]) == 1.0
    assert _Counter.calls == 2
    chained = with_callable.with_args(dtype=qint8)
    assert chained().dtype == qint8 and _Counter.calls == 3


def test_partial_wrapper_repr_and_p():
    factory = MinMaxObserver.with_args(quant_min=0, quant_max=127)
    assert isinstance(factory, _PartialWrapper)
    assert factory.p.keywords == {"quant_min": 0, "quant_max": 127}
    assert "MinMaxObserver" in repr(factory)


def test_calculate_qparams_function_direct():
    scale, zero_point = calculate_qparams_from_min_max(
        jnp.float32(-1.0), jnp.float32(1.0), dtype=jaxq.quint8,
        qscheme=jaxq.per_tensor_affine, quant_min=0, quant_max=255,
        has_customized_qrange=False)
    expected = tobs.MinMaxObserver()._calculate_qparams(torch.tensor(-1.0),
                                                        torch.tensor(1.0))
    assert_qparams_equal((scale, zero_point), expected)
    with pytest.raises(ValueError, match="same shape"):
        calculate_qparams_from_min_max(
            jnp.zeros(2), jnp.zeros(3), dtype=jaxq.quint8, qscheme=jaxq.per_tensor_affine,
            quant_min=0, quant_max=255, has_customized_qrange=False)
