"""PerChannelMinMaxObserver and MovingAveragePerChannelMinMaxObserver vs torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import observer as tobs

import jaxq
from jaxq.observer import MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver
from tests.observer._torch_ref import (
    assert_qparams_equal,
    edge_batches,
    to_torch,
    torch_dtype,
    torch_qscheme,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONFIGS = [
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_channel_affine),
    dict(dtype=jaxq.qint8, qscheme=jaxq.per_channel_symmetric),
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_channel_symmetric),
    dict(dtype=jaxq.qint8, qscheme=jaxq.per_channel_affine, reduce_range=True),
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_channel_affine_float_qparams),
    dict(dtype=jaxq.quint4x2, qscheme=jaxq.per_channel_affine_float_qparams),
    dict(dtype=jaxq.qint8, qscheme=jaxq.per_channel_symmetric, quant_min=-127,
         quant_max=127, eps=2**-12),
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_channel_symmetric, quant_min=0,
         quant_max=63),
]
CLASSES = [(PerChannelMinMaxObserver, tobs.PerChannelMinMaxObserver, {}),
           (MovingAveragePerChannelMinMaxObserver,
            tobs.MovingAveragePerChannelMinMaxObserver, {"averaging_constant": 0.25})]


def _pair(ours_cls, theirs_cls, extra, config, **kwargs):
    torch_config = {**config, "dtype": torch_dtype(config["dtype"]),
                    "qscheme": torch_qscheme(config["qscheme"])}
    return (ours_cls(**extra, **config, **kwargs),
            theirs_cls(**extra, **torch_config, **kwargs))


def _observe_and_compare(ours, theirs, batches):
    for batch in batches:
        ours(jnp.asarray(batch))
        theirs(to_torch(batch))
    np.testing.assert_array_equal(np.asarray(ours.min_val), theirs.min_val.numpy())
    np.testing.assert_array_equal(np.asarray(ours.max_val), theirs.max_val.numpy())
    assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())


@pytest.mark.parametrize("classes", CLASSES, ids=["minmax", "movavg"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(
    str(v.name if hasattr(v, "name") else v) for v in c.values()))
def test_matches_torch_on_edge_cases(classes, config, rng):
    for batches in edge_batches(rng, shape=(3, 5)).values():
        _observe_and_compare(*_pair(*classes, config, ch_axis=1), batches)


@pytest.mark.parametrize("classes", CLASSES, ids=["minmax", "movavg"])
@pytest.mark.parametrize("ch_axis", [0, 1, 2, 3, -1, -3])
def test_every_axis_matches_torch(classes, ch_axis, rng):
    batches = [rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * s for s in (1, 2)]
    _observe_and_compare(*_pair(*classes, CONFIGS[0], ch_axis=ch_axis), batches)


@pytest.mark.parametrize("classes", CLASSES, ids=["minmax", "movavg"])
def test_special_values_match_torch(classes, rng):
    data = rng.standard_normal((4, 3)).astype(np.float32)
    data[0, 0], data[1, 1], data[2, 2] = np.nan, np.inf, -np.inf
    for config in CONFIGS[:2] + CONFIGS[4:5]:
        _observe_and_compare(*_pair(*classes, config, ch_axis=1),
                             [data, rng.standard_normal((4, 3)).astype(np.float32)])


@pytest.mark.parametrize("classes", CLASSES, ids=["minmax", "movavg"])
def test_presized_matches_lazily_sized(classes, rng):
    batches = [rng.standard_normal((6, 4)).astype(np.float32) for _ in range(3)]
    lazy, theirs = _pair(*classes, CONFIGS[1])
    sized = classes[0](**classes[2], **CONFIGS[1], num_channels=6)
    assert sized.min_val.shape == (6,)
    for batch in batches:
        sized(jnp.asarray(batch))
    _observe_and_compare(lazy, theirs, batches)
    np.testing.assert_array_equal(sized.min_val, lazy.min_val)
    np.testing.assert_array_equal(sized.max_val, lazy.max_val)
    assert_qparams_equal(sized.calculate_qparams(), theirs.calculate_qparams())


def test_presized_never_observed_channels_get_default_qparams():
    obs = PerChannelMinMaxObserver(num_channels=3)
    scale, zero_point = jax.jit(obs.core.calculate_qparams)(obs.core.init())
    np.testing.assert_array_equal(scale, np.ones(3, np.float32))
    np.testing.assert_array_equal(zero_point, np.zeros(3, np.int32))


def test_bad_inputs_rejected():
    obs = PerChannelMinMaxObserver(ch_axis=2)
    with pytest.raises(ValueError, match="ch_axis=2"):
        obs(jnp.ones((3, 4)))
    with pytest.raises(IndexError):
        tobs.PerChannelMinMaxObserver(ch_axis=2)(torch.ones(3, 4))
    obs = PerChannelMinMaxObserver()
    with pytest.raises(ValueError, match="scalar"):
        obs(jnp.float32(1.0))
    obs(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="channels"):
        obs(jnp.ones((5, 4)))
    with pytest.raises(RuntimeError):
        theirs = tobs.PerChannelMinMaxObserver()
        theirs(torch.ones(3, 4))
        theirs(torch.ones(5, 4))
    # Empty batches are skipped, as in torch.
    obs(jnp.ones((0, 4)))
    assert obs.min_val.shape == (3,)
    with pytest.raises(ValueError, match="num_channels"):
        PerChannelMinMaxObserver(num_channels=0)
    with pytest.raises(TypeError, match="ch_axis"):
        PerChannelMinMaxObserver(ch_axis=1.0)


@pytest.mark.parametrize("kwargs", [
    dict(qscheme=jaxq.per_tensor_affine), dict(is_dynamic=True),
    dict(qscheme=jaxq.per_channel_symmetric, reduce_range=True)])
def test_invalid_configs_rejected_like_torch(kwargs):
    with pytest.raises(ValueError):
        PerChannelMinMaxObserver(**kwargs)
    torch_kwargs = {k: torch_qscheme(v) if k == "qscheme" else v for k, v in kwargs.items()}
    with pytest.raises(NotImplementedError):
        tobs.PerChannelMinMaxObserver(**torch_kwargs)


def test_one_dimensional_input_each_element_a_channel():
    # torch raises IndexError (flatten(start_dim=1) of a 1-D tensor); jaxq accepts it.
    obs = PerChannelMinMaxObserver()
    obs(jnp.array([1.0, -2.0, 3.0]))
    np.testing.assert_array_equal(obs.min_val, [1.0, -2.0, 3.0])


def test_reset_min_max_vals_matches_torch(rng):
    ours, theirs = _pair(*CLASSES[0], CONFIGS[0])
    _observe_and_compare(ours, theirs, [rng.standard_normal((3, 2)).astype(np.float32)])
    ours.reset_min_max_vals()
    theirs.reset_min_max_vals()
    assert ours.min_val.shape == tuple(theirs.min_val.shape) == (0,)
    _observe_and_compare(ours, theirs, [rng.standard_normal((4, 2)).astype(np.float32)])
    ours.set_num_channels(4)
    assert ours.min_val.shape == (4,) and ours.core.num_channels == 4


def test_core_in_scan_and_vmap(rng):
    obs = MovingAveragePerChannelMinMaxObserver(ch_axis=1, num_channels=3,
                                                dtype=jaxq.qint8,
                                                qscheme=jaxq.per_channel_symmetric)
    core = obs.core
    batches = rng.standard_normal((4, 5, 3)).astype(np.float32)
    final, _ = jax.lax.scan(lambda s, b: (core.update(s, b), None), core.init(),
                            jnp.asarray(batches))
    theirs = tobs.MovingAveragePerChannelMinMaxObserver(
        ch_axis=1, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    for batch in batches:
        theirs(to_torch(batch))
    assert_qparams_equal(jax.jit(core.calculate_qparams)(final), theirs.calculate_qparams())
    states = jax.vmap(lambda b: core.update(core.init(), b))(jnp.asarray(batches))
    scales, _ = jax.vmap(core.calculate_qparams)(states)
    for i, batch in enumerate(batches):
        one = tobs.PerChannelMinMaxObserver(ch_axis=1, dtype=torch.qint8,
                                            qscheme=torch.per_channel_symmetric)
        one(to_torch(batch))
        np.testing.assert_array_equal(scales[i], one.calculate_qparams()[0].numpy())


def test_nnx_jit_recompiles_only_for_lazy_sizing(rng):
    traces = []

    @nnx.jit
    def step(obs, x):
        traces.append(1)
        obs(x)
        return obs.calculate_qparams()

    sized = PerChannelMinMaxObserver(num_channels=4, ch_axis=1)
    lazy = PerChannelMinMaxObserver(ch_axis=1)
    theirs = tobs.PerChannelMinMaxObserver(ch_axis=1)
    for _ in range(3):
        batch = rng.standard_normal((2, 4)).astype(np.float32)
        step(sized, jnp.asarray(batch))
        theirs(to_torch(batch))
    assert len(traces) == 1
    assert_qparams_equal(step(sized, jnp.zeros((2, 4))), theirs.calculate_qparams())
    traces.clear()
    for _ in range(3):
        step(lazy, jnp.ones((2, 4)))
    assert len(traces) == 2  # the state grows from [0] to [4] once
