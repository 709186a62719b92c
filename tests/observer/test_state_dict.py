"""get_observer_state_dict / load_observer_state_dict round trips and torch dicts."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import observer as tobs

import jaxq
from jaxq.observer import (
    FixedQParamsObserver,
    MinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    get_observer_state_dict,
    load_observer_state_dict,
)


class Net(nnx.Module):
    def __init__(self):
        self.linear = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
        self.act = MinMaxObserver()
        self.weight_obs = PerChannelMinMaxObserver(ch_axis=1, dtype=jaxq.qint8,
                                                   qscheme=jaxq.per_channel_symmetric)
        self.blocks = nnx.List([MovingAveragePerChannelMinMaxObserver(),
                                FixedQParamsObserver(0.5, 3)])

    def __call__(self, x):
        self.weight_obs(self.linear.kernel[...])
        y = self.act(self.linear(x))
        self.blocks[0](y)
        return y


def test_round_trip_unchanged(rng):
    net = Net()
    net(jnp.asarray(rng.standard_normal((2, 4)).astype(np.float32)))
    saved = get_observer_state_dict(net)
    assert set(saved) == {"act.min_val", "act.max_val", "weight_obs.min_val",
                          "weight_obs.max_val", "blocks.0.min_val", "blocks.0.max_val",
                          "blocks.1.scale", "blocks.1.zero_point"}
    fresh = Net()
    load_observer_state_dict(fresh, saved)
    reloaded = get_observer_state_dict(fresh)
    for key, value in saved.items():
        assert reloaded[key].dtype == value.dtype and reloaded[key].shape == value.shape
        np.testing.assert_array_equal(reloaded[key], value)
    for a, b in zip(net.weight_obs.calculate_qparams(), fresh.weight_obs.calculate_qparams()):
        np.testing.assert_array_equal(a, b)
    # Parameters are not part of it.
    assert not any("kernel" in key for key in saved)


def test_missing_unexpected_and_shape_errors(rng):
    net = Net()
    net(jnp.ones((2, 4)))
    saved = dict(get_observer_state_dict(net))
    with pytest.raises(ValueError, match="Missing"):
        load_observer_state_dict(Net(), {k: v for k, v in saved.items() if k != "act.min_val"})
    with pytest.raises(ValueError, match="Unexpected"):
        load_observer_state_dict(Net(), {**saved, "act.bogus": np.zeros(())})
    sized = Net()
    sized(jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="shape"):
        load_observer_state_dict(sized, {**saved, "weight_obs.min_val": np.zeros(5)})


def test_loads_torch_observer_state_dict(rng):
    theirs = tobs.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
                                           qscheme=torch.per_channel_symmetric)
    theirs(torch.randn(3, 5))
    ours = PerChannelMinMaxObserver(ch_axis=0, dtype=jaxq.qint8,
                                    qscheme=jaxq.per_channel_symmetric)
    load_observer_state_dict(ours, theirs.state_dict())
    np.testing.assert_array_equal(ours.min_val, theirs.min_val.numpy())
    np.testing.assert_array_equal(ours.calculate_qparams()[0],
                                  theirs.calculate_qparams()[0].numpy())
    with pytest.raises(ValueError, match="eps"):
        other = tobs.MinMaxObserver(eps=1e-3)
        load_observer_state_dict(MinMaxObserver(), other.state_dict())
