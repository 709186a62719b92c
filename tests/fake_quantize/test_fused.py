"""FusedMovingAvgObsFakeQuantize (torch's C++ kernel rules) vs torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import fake_quantize as tfq
from torch.ao.quantization import observer as tobs

import jaxq
from jaxq.fake_quantize import (
    FusedMovingAvgObsFakeQuantize,
    choose_quantization_params,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
)
from jaxq.observer import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
)
from tests.observer._torch_ref import edge_batches, torch_dtype, torch_qscheme

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONFIGS = [
    (False, dict(quant_min=0, quant_max=255, dtype=jaxq.quint8)),
    (False, dict(quant_min=-128, quant_max=127, dtype=jaxq.qint8,
                 qscheme=jaxq.per_tensor_symmetric)),
    (False, dict(quant_min=-127, quant_max=127, dtype=jaxq.qint8,
                 qscheme=jaxq.per_tensor_symmetric, eps=2**-12)),
    (False, dict(quant_min=0, quant_max=255, dtype=jaxq.quint8,
                 qscheme=jaxq.per_tensor_symmetric, averaging_constant=0.3)),
    (True, dict(quant_min=-128, quant_max=127, dtype=jaxq.qint8,
                qscheme=jaxq.per_channel_symmetric)),
    (True, dict(quant_min=0, quant_max=15, dtype=jaxq.quint8,
                qscheme=jaxq.per_channel_affine)),
]


def make_pair(per_channel, config):
    ours_obs = MovingAveragePerChannelMinMaxObserver if per_channel else \
        MovingAverageMinMaxObserver
    theirs_obs = tobs.MovingAveragePerChannelMinMaxObserver if per_channel else \
        tobs.MovingAverageMinMaxObserver
    torch_config = {k: (torch_dtype(v) if k == "dtype" else
                        torch_qscheme(v) if k == "qscheme" else v)
                    for k, v in config.items()}
    return (FusedMovingAvgObsFakeQuantize(observer=ours_obs, **config),
            tfq.FusedMovingAvgObsFakeQuantize(observer=theirs_obs, **torch_config))


def step_both(ours, theirs, batch, compare_qparams=True):
    cotangent = np.linspace(-1, 1, batch.size, dtype=np.float32).reshape(batch.shape)
    x_t = torch.from_numpy(batch).requires_grad_(True)
    y_t = theirs(x_t)
    (y_t * torch.from_numpy(cotangent)).sum().backward()
    (_, y), dx = nnx.value_and_grad(
        lambda m, x: ((m(x) * cotangent).sum(), m.state.get_value()["scale"]),
        argnums=1, has_aux=True)(ours, jnp.asarray(batch))
    y = ours.core.fake_quantize(jnp.asarray(batch), ours.scale, ours.zero_point) \
        if int(ours.fake_quant_enabled[0]) else jnp.asarray(batch)
    np.testing.assert_array_equal(np.asarray(y), y_t.detach().numpy())
    np.testing.assert_array_equal(np.asarray(dx), x_t.grad.numpy())
    obs, t_obs = ours.activation_post_process, theirs.activation_post_process
    np.testing.assert_array_equal(np.asarray(obs.min_val), t_obs.min_val.numpy())
    np.testing.assert_array_equal(np.asarray(obs.max_val), t_obs.max_val.numpy())
    if compare_qparams:
        np.testing.assert_array_equal(np.asarray(ours.scale), theirs.scale.numpy())
        np.testing.assert_array_equal(np.asarray(ours.zero_point),
                                      theirs.zero_point.numpy())


@pytest.mark.parametrize("per_channel, config", CONFIGS)
def test_matches_torch_on_edge_cases(per_channel, config, rng):
    for batches in edge_batches(rng, shape=(3, 4)).values():
        ours, theirs = make_pair(per_channel, config)
        for batch in batches:
            step_both(ours, theirs, batch)


@pytest.mark.parametrize("per_channel, config", [CONFIGS[0], CONFIGS[1], CONFIGS[4]])
def test_infinite_values_and_flags_match_torch(per_channel, config, rng):
    ours, theirs = make_pair(per_channel, config)
    data = rng.standard_normal((3, 4)).astype(np.float32)
    with_inf = data.copy()
    with_inf[0, 0], with_inf[1, 1] = np.inf, -np.inf
    with pytest.raises(ValueError, match="not finite"):
        ours(jnp.asarray(with_inf))
    theirs(torch.from_numpy(with_inf))
    assert not np.all(np.isfinite(theirs.scale.numpy()))  # torch: inf scale
    ours, theirs = make_pair(per_channel, config)
    disable_fake_quant(ours)
    tfq.disable_fake_quant(theirs)
    # Observe only: running values become infinite. torch's per-channel kernel leaves
    # scale/zero_point uninitialized (resize_ without fill) until fake-quant runs.
    step_both(ours, theirs, with_inf, compare_qparams=not per_channel)
    enable_fake_quant(ours)
    tfq.enable_fake_quant(theirs)
    step_both(ours, theirs, data)  # the C++ rule replaces infinite running values
    disable_fake_quant(ours)
    tfq.disable_fake_quant(theirs)
    step_both(ours, theirs, data * 3)  # observes, but scale is not recomputed
    enable_fake_quant(ours)
    tfq.enable_fake_quant(theirs)
    disable_observer(ours)
    tfq.disable_observer(theirs)
    step_both(ours, theirs, data * 5)


def test_symmetric_differs_from_python_observer_like_torch():
    ours, theirs = make_pair(*CONFIGS[1])
    batch = np.array([[0.5, 1.0, 2.0]], np.float32)
    step_both(ours, theirs, batch)
    assert int(ours.zero_point[0]) == -128  # C++ rule on one-sided data
    python_rule = ours.calculate_qparams()
    torch_python_rule = theirs.calculate_qparams()
    np.testing.assert_array_equal(np.asarray(python_rule[1]), torch_python_rule[1].numpy())
    assert int(python_rule[1][0]) == 0


def test_choose_quantization_params_matches_torch_kernel(rng):
    lows = np.concatenate([rng.standard_normal(60) * 10 ** rng.uniform(-8, 3, 60),
                           [0.0, 0.0, -1e-7, 5.0, -3.0]]).astype(np.float32)
    highs = np.concatenate([lows[:60] + np.abs(rng.standard_normal(60)) *
                            10 ** rng.uniform(-8, 3, 60),
                            [0.0, 1e-8, 0.0, 7.0, -1.0]]).astype(np.float32)
    for qmin, qmax in [(0, 255), (-128, 127), (-127, 127), (0, 15)]:
        for symmetric in (False, True):
            scales, zero_points = jax.jit(choose_quantization_params, static_argnums=(2, 3, 4))(
                lows, highs, qmin, qmax, symmetric)
            for i in range(lows.size):
                running_min = torch.tensor([lows[i]])
                running_max = torch.tensor([highs[i]])
                scale = torch.tensor([1.0])
                zero_point = torch.tensor([0], dtype=torch.int32)
                torch.fused_moving_avg_obs_fake_quant(
                    torch.zeros(1), torch.tensor([0]), torch.tensor([1]), running_min,
                    running_max, scale, zero_point, 0.01, qmin, qmax, 0, False, symmetric)
                assert scales[i] == scale.item(), (i, lows[i], highs[i], qmin, qmax)
                assert zero_points[i] == zero_point.item(), (i, lows[i], highs[i])


def test_jit_step_does_not_recompile_when_toggling(rng):
    traces = []
    _, theirs = make_pair(*CONFIGS[4])

    @nnx.jit
    def step(fq, x):
        traces.append(1)
        return fq(x)

    sized = FusedMovingAvgObsFakeQuantize(
        observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
        dtype=jaxq.qint8, qscheme=jaxq.per_channel_symmetric, num_channels=3)
    for i in range(4):
        batch = rng.standard_normal((3, 4)).astype(np.float32)
        if i == 2:
            disable_observer(sized)
            tfq.disable_observer(theirs)
        y = step(sized, jnp.asarray(batch))
        np.testing.assert_array_equal(np.asarray(y), theirs(torch.from_numpy(batch)).numpy())
    assert len(traces) == 1


def test_bad_configs_rejected():
    with pytest.raises(TypeError, match="MovingAverage"):
        FusedMovingAvgObsFakeQuantize(observer=MinMaxObserver)
    fq = FusedMovingAvgObsFakeQuantize(observer=MovingAveragePerChannelMinMaxObserver,
                                       ch_axis=1)
    with pytest.raises(ValueError, match="axis == 0"):
        fq(jnp.ones((2, 3)))
