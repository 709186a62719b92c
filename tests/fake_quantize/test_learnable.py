"""_LearnableFakeQuantize (LSQ) vs torch's: static estimates, learned qparams, grads."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import observer as tobs
from torch.ao.quantization._learnable_fake_quantize import _LearnableFakeQuantize as TLFQ

import jaxq
from jaxq.fake_quantize import _LearnableFakeQuantize, disable_fake_quant, disable_observer
from jaxq.observer import MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONFIGS = [
    (False, dict(quant_min=0, quant_max=255, dtype=jaxq.quint8), {}),
    (False, dict(quant_min=-128, quant_max=127, dtype=jaxq.qint8,
                 qscheme=jaxq.per_tensor_symmetric), {"use_grad_scaling": True}),
    (False, dict(quant_min=0, quant_max=15, dtype=jaxq.quint8), {"scale": 0.2,
                                                                  "zero_point": 3.0}),
    (True, dict(quant_min=-128, quant_max=127, dtype=jaxq.qint8,
                qscheme=jaxq.per_channel_symmetric, ch_axis=1), {"channel_len": 3}),
    (True, dict(quant_min=0, quant_max=255, dtype=jaxq.quint8,
                qscheme=jaxq.per_channel_affine, ch_axis=1),
     {"channel_len": 3, "use_grad_scaling": True}),
]


def make_pair(per_channel, observer_kwargs, kwargs):
    ours_obs = MovingAveragePerChannelMinMaxObserver if per_channel else \
        MovingAverageMinMaxObserver
    theirs_obs = tobs.MovingAveragePerChannelMinMaxObserver if per_channel else \
        tobs.MovingAverageMinMaxObserver
    torch_kwargs = {k: (getattr(torch, v.name) if k == "dtype" else
                        getattr(torch, v.value) if k == "qscheme" else v)
                    for k, v in observer_kwargs.items()}
    return (_LearnableFakeQuantize(ours_obs, **kwargs, **observer_kwargs),
            TLFQ(theirs_obs, **kwargs, **torch_kwargs))


def step_both(ours, theirs, batch, cotangent, grad_rtol=2e-6):
    x_t = torch.from_numpy(batch).requires_grad_(True)
    y_t = theirs(x_t)
    (y_t * torch.from_numpy(cotangent)).sum().backward()

    def loss(module, x):
        y = module(x)
        return (y * jnp.asarray(cotangent)).sum(), y

    (_, y), (grads, dx) = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        ours, jnp.asarray(batch))
    np.testing.assert_array_equal(np.asarray(y), y_t.detach().numpy())
    np.testing.assert_array_equal(np.asarray(dx), x_t.grad.numpy())
    np.testing.assert_array_equal(np.asarray(ours.scale[...]), theirs.scale.detach().numpy())
    np.testing.assert_array_equal(np.asarray(ours.zero_point[...]),
                                  theirs.zero_point.detach().numpy())
    for name in ("scale", "zero_point"):
        torch_grad = getattr(theirs, name).grad
        ours_grad = np.asarray(getattr(grads, name)[...])
        if torch_grad is None:
            np.testing.assert_array_equal(ours_grad, np.zeros_like(ours_grad))
        else:
            np.testing.assert_allclose(ours_grad, torch_grad.numpy(), rtol=grad_rtol,
                                       atol=1e-6)
            getattr(theirs, name).grad = None
    return grads


@pytest.mark.parametrize("per_channel, observer_kwargs, kwargs", CONFIGS)
def test_static_then_learning_matches_torch(per_channel, observer_kwargs, kwargs, rng):
    ours, theirs = make_pair(per_channel, observer_kwargs, kwargs)
    assert ours.bitwidth == theirs.bitwidth
    shape = (4, 3)
    for _ in range(2):  # static estimates from the observer
        batch = rng.standard_normal(shape).astype(np.float32)
        step_both(ours, theirs, batch, rng.standard_normal(shape).astype(np.float32))
    ours.enable_param_learning()
    theirs.enable_param_learning()
    for _ in range(2):  # learned qparams: LSQ gradients
        batch = (rng.standard_normal(shape) * 2).astype(np.float32)
        step_both(ours, theirs, batch, rng.standard_normal(shape).astype(np.float32))
    for a, b in zip(ours.calculate_qparams(), theirs.calculate_qparams()):
        np.testing.assert_array_equal(np.asarray(a), b.detach().numpy())
    ours.enable_static_observation()
    theirs.enable_static_observation()
    batch = rng.standard_normal(shape).astype(np.float32)
    step_both(ours, theirs, batch, np.ones(shape, np.float32))


def test_flags_and_module_helpers(rng):
    ours, theirs = make_pair(*CONFIGS[0])
    for name in ("fake_quant_enabled", "static_enabled", "learning_enabled"):
        assert int(getattr(ours, name)[0]) == int(getattr(theirs, name)[0])
    disable_observer(ours)
    theirs.disable_observer()
    assert int(ours.static_enabled[0]) == int(theirs.static_enabled[0]) == 0
    disable_fake_quant(ours)
    theirs.disable_fake_quant()
    batch = rng.standard_normal((2, 3)).astype(np.float32)
    step_both(ours, theirs, batch, np.ones_like(batch))


def test_scale_clamped_to_eps_when_learning(rng):
    ours, theirs = make_pair(*CONFIGS[0])
    ours.enable_param_learning()
    theirs.enable_param_learning()
    ours.scale[...] = jnp.array([1e-12], jnp.float32)
    with torch.no_grad():
        theirs.scale.fill_(1e-12)
    batch = rng.standard_normal((2, 3)).astype(np.float32)
    step_both(ours, theirs, batch, np.ones_like(batch))


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="strictly less"):
        _LearnableFakeQuantize(MovingAverageMinMaxObserver, quant_min=5, quant_max=5)
    with pytest.raises(ValueError, match="channel_len"):
        _LearnableFakeQuantize(MovingAverageMinMaxObserver, channel_len=0)
    with pytest.raises(ValueError):
        _LearnableFakeQuantize(MovingAverageMinMaxObserver, quant_min=-1, quant_max=255)


def test_learning_step_under_nnx_jit_matches_eager(rng):
    traces = []

    @nnx.jit
    def step(module, x):
        traces.append(1)
        return nnx.grad(lambda m: (m(x) ** 2).sum())(module)

    jitted, _ = make_pair(*CONFIGS[0])
    eager, _ = make_pair(*CONFIGS[0])
    for module in (jitted, eager):
        module.enable_param_learning()
    for _ in range(3):
        batch = jnp.asarray(rng.standard_normal((4, 3)).astype(np.float32))
        grads = step(jitted, batch)
        eager_grads = nnx.grad(lambda m: (m(batch) ** 2).sum())(eager)
        np.testing.assert_allclose(grads.scale[...], eager_grads.scale[...], rtol=1e-6)
        np.testing.assert_allclose(grads.zero_point[...], eager_grads.zero_point[...],
                                   rtol=1e-6, atol=1e-7)
    disable_fake_quant(jitted)
    step(jitted, batch)
    assert len(traces) == 1
