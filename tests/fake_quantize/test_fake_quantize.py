"""FakeQuantize / FixedQParamsFakeQuantize vs torch: outputs, gradients, state, flags."""

import functools

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
    FakeQuantize,
    FixedQParamsFakeQuantize,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
)
from jaxq.observer import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    ObserverState,
    PerChannelMinMaxObserver,
    default_fixed_qparams_range_0to1_observer,
    get_observer_state_dict,
    load_observer_state_dict,
)
from tests.observer._torch_ref import edge_batches, torch_dtype, torch_qscheme

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

OBSERVERS = {
    "movavg": (MovingAverageMinMaxObserver, tobs.MovingAverageMinMaxObserver),
    "minmax": (MinMaxObserver, tobs.MinMaxObserver),
    "movavg_pc": (MovingAveragePerChannelMinMaxObserver,
                  tobs.MovingAveragePerChannelMinMaxObserver),
    "minmax_pc": (PerChannelMinMaxObserver, tobs.PerChannelMinMaxObserver),
}
CONFIGS = [
    ("movavg", dict(quant_min=0, quant_max=255, dtype=jaxq.quint8,
                    qscheme=jaxq.per_tensor_affine, reduce_range=True)),
    ("movavg", dict(quant_min=-128, quant_max=127, dtype=jaxq.qint8,
                    qscheme=jaxq.per_tensor_symmetric)),
    ("minmax", dict(quant_min=0, quant_max=15, dtype=jaxq.quint8)),
    ("movavg", dict(dtype=jaxq.quint8, qscheme=jaxq.per_tensor_symmetric,
                    averaging_constant=0.5)),
    ("movavg_pc", dict(quant_min=-128, quant_max=127, dtype=jaxq.qint8,
                       qscheme=jaxq.per_channel_symmetric, ch_axis=0)),
    ("minmax_pc", dict(dtype=jaxq.quint8, qscheme=jaxq.per_channel_affine, ch_axis=1)),
    ("minmax_pc", dict(dtype=jaxq.qint8, qscheme=jaxq.per_channel_affine, ch_axis=2)),
    ("movavg_pc", dict(dtype=jaxq.quint8, qscheme=jaxq.per_channel_affine_float_qparams,
                       ch_axis=0, averaging_constant=1)),
]


def make_pair(observer, config, num_channels=None):
    ours_obs, theirs_obs = OBSERVERS[observer]
    torch_config = {k: (torch_dtype(v) if k == "dtype" else
                        torch_qscheme(v) if k == "qscheme" else v)
                    for k, v in config.items()}
    extra = {} if num_channels is None else {"num_channels": num_channels}
    return (FakeQuantize(observer=ours_obs, **config, **extra),
            tfq.FakeQuantize(observer=theirs_obs, **torch_config))


@functools.partial(jax.jit, static_argnums=0)
def core_step(core, state, observer_state, x, cotangent):
    """One jitted FakeQuantize step with its input gradient (traced flags)."""
    def forward(x):
        y, state_out, observer_out = core.apply(state, observer_state, x)
        return y, (state_out, observer_out)

    y, vjp, (state, observer_state) = jax.vjp(forward, x, has_aux=True)
    return y, vjp(cotangent)[0], state, observer_state


def torch_step(theirs, batch, cotangent):
    x_t = torch.from_numpy(batch).requires_grad_(True)
    y_t = theirs(x_t)
    (y_t * torch.from_numpy(cotangent)).sum().backward()
    return y_t.detach().numpy(), x_t.grad.numpy()


def assert_step_equal(y, dx, scale, zero_point, theirs, y_t, dx_t):
    np.testing.assert_array_equal(np.asarray(y), y_t)
    np.testing.assert_array_equal(np.asarray(dx), dx_t)
    np.testing.assert_array_equal(np.asarray(scale), theirs.scale.numpy())
    zero_point = np.asarray(zero_point)
    np.testing.assert_array_equal(zero_point,
                                  theirs.zero_point.numpy().astype(zero_point.dtype))


def step_both(ours, theirs, batch, cotangent):
    x_t = torch.from_numpy(batch).requires_grad_(True)
    y_t = theirs(x_t)
    (y_t * torch.from_numpy(cotangent)).sum().backward()
    def weighted(module, x):
        y = module(x)
        return (y * jnp.asarray(cotangent)).sum(), y

    (_, y), dx = nnx.value_and_grad(weighted, argnums=1, has_aux=True)(
        ours, jnp.asarray(batch))
    np.testing.assert_array_equal(np.asarray(y), y_t.detach().numpy())
    np.testing.assert_array_equal(np.asarray(dx), x_t.grad.numpy())
    np.testing.assert_array_equal(np.asarray(ours.scale), theirs.scale.numpy())
    np.testing.assert_array_equal(np.asarray(ours.zero_point),
                                  theirs.zero_point.numpy().astype(np.asarray(
                                      ours.zero_point).dtype))


@pytest.mark.parametrize("observer, config", CONFIGS,
                         ids=[f"{o}-{c.get('qscheme', jaxq.per_tensor_affine).value}-"
                              f"{c.get('ch_axis', '')}" for o, c in CONFIGS])
def test_outputs_gradients_and_state_match_torch(observer, config, rng):
    shape = (3, 4, 2)
    channels = shape[config["ch_axis"]] if "ch_axis" in config else None
    for batches in edge_batches(rng, shape=shape).values():
        ours, theirs = make_pair(observer, config, channels)
        state = ours.state.get_value()
        observer_state = ours.activation_post_process.state.get_value()
        for batch in batches:
            cotangent = rng.standard_normal(batch.shape).astype(np.float32)
            y, dx, state, observer_state = core_step(
                ours.core, state, observer_state, jnp.asarray(batch), jnp.asarray(cotangent))
            y_t, dx_t = torch_step(theirs, batch, cotangent)
            assert_step_equal(y, dx, state["scale"], state["zero_point"], theirs, y_t, dx_t)


@pytest.mark.parametrize("index", [0, 5, 7])
def test_eager_module_matches_torch(index, rng):
    ours, theirs = make_pair(*CONFIGS[index])  # per-channel observers sized lazily
    for _ in range(2):
        batch = rng.standard_normal((3, 4, 2)).astype(np.float32)
        step_both(ours, theirs, batch, rng.standard_normal(batch.shape).astype(np.float32))


def test_flag_sequence_matches_torch(rng):
    ours, theirs = make_pair(*CONFIGS[0])
    toggles = [None, "disable_observer", None, "disable_fake_quant", "enable_observer",
               None, "enable_fake_quant", None]
    for toggle in toggles:
        if toggle is not None:
            globals()[toggle](ours)
            getattr(tfq, toggle)(theirs)
        batch = (rng.standard_normal((4, 3)) * 2).astype(np.float32)
        step_both(ours, theirs, batch, np.ones_like(batch))
        assert int(ours.fake_quant_enabled[0]) == int(theirs.fake_quant_enabled[0])
        assert int(ours.observer_enabled[0]) == int(theirs.observer_enabled[0])
        np.testing.assert_array_equal(ours.activation_post_process.min_val,
                                      theirs.activation_post_process.min_val.numpy())


def test_attributes_match_torch():
    for observer, config in CONFIGS:
        ours, theirs = make_pair(observer, config)
        for name in ("quant_min", "quant_max", "ch_axis", "is_per_channel", "is_dynamic"):
            assert getattr(ours, name) == getattr(theirs, name), name
        assert ours.dtype.torch_name == str(theirs.dtype)
        assert ours.qscheme.torch_name == str(theirs.qscheme)
        assert ours.fake_quant_enabled.dtype == np.uint8
        assert ours.scale.shape == tuple(theirs.scale.shape)


class QATNet(nnx.Module):
    def __init__(self):
        self.linear = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
        self.weight_fake_quant = FakeQuantize(
            observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
            dtype=jaxq.qint8, qscheme=jaxq.per_channel_symmetric, ch_axis=1,
            num_channels=3)
        self.activation_post_process = FakeQuantize(quant_min=0, quant_max=255,
                                                    reduce_range=True)

    def __call__(self, x):
        kernel = self.weight_fake_quant(self.linear.kernel[...])
        return self.activation_post_process(x @ kernel + self.linear.bias[...])


def test_qat_step_under_nnx_jit_does_not_recompile(rng):
    traces = []
    net = QATNet()

    @nnx.jit
    def train_step(net, x):
        traces.append(1)

        def loss_fn(net):
            return (net(x) ** 2).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(net)
        params = nnx.state(net, nnx.Param)
        nnx.update(net, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads))
        return loss

    eager = QATNet()
    for step in range(6):
        batch = jnp.asarray(rng.standard_normal((5, 4)).astype(np.float32))
        if step == 2:
            disable_observer(net)
            disable_observer(eager)
        if step == 4:
            enable_observer(net)
            disable_fake_quant(net)
            enable_observer(eager)
            disable_fake_quant(eager)
        loss = train_step(net, batch)
        eager_loss, grads = nnx.value_and_grad(lambda m: (m(batch) ** 2).mean())(eager)
        nnx.update(eager, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g,
                                                 nnx.state(eager, nnx.Param), grads))
        np.testing.assert_allclose(loss, eager_loss, rtol=1e-5)
    assert len(traces) == 1
    # Parameters are trained, observer statistics are not parameters.
    assert "min_val" not in str(jax.tree_util.tree_structure(nnx.state(net, nnx.Param)))
    assert set(nnx.state(net, ObserverState)) == {"weight_fake_quant",
                                                  "activation_post_process"}


def test_core_apply_in_scan(rng):
    fq = FakeQuantize(quant_min=0, quant_max=255)
    theirs = tfq.FakeQuantize(quant_min=0, quant_max=255)
    core = fq.core
    batches = rng.standard_normal((4, 3, 2)).astype(np.float32)

    def step(carry, x):
        state, observer_state = carry
        y, state, observer_state = core.apply(state, observer_state, x)
        return (state, observer_state), y

    (state, observer_state), ys = jax.lax.scan(
        step, (fq.state.get_value(), fq.activation_post_process.state.get_value()),
        jnp.asarray(batches))
    for batch, y in zip(batches, ys):
        np.testing.assert_array_equal(y, theirs(torch.from_numpy(batch)).numpy())
    np.testing.assert_array_equal(state["scale"], theirs.scale.numpy())


def test_fixed_qparams_fake_quantize_matches_torch(rng):
    ours = FixedQParamsFakeQuantize(default_fixed_qparams_range_0to1_observer)
    theirs = tfq.FixedQParamsFakeQuantize(tobs.default_fixed_qparams_range_0to1_observer)
    batch = rng.uniform(-0.5, 1.5, (3, 4)).astype(np.float32)
    step_both(ours, theirs, batch, np.ones_like(batch))
    for a, b in zip(ours.calculate_qparams(), theirs.calculate_qparams()):
        np.testing.assert_array_equal(np.asarray(a), b.numpy())
    with pytest.raises(TypeError, match="FixedQParamsObserver"):
        FixedQParamsFakeQuantize(MinMaxObserver)
    with pytest.raises(AssertionError):
        tfq.FixedQParamsFakeQuantize(tobs.MinMaxObserver)


@pytest.mark.parametrize("kwargs", [dict(quant_min=10, quant_max=0),
                                    dict(quant_min=-1, quant_max=255),
                                    dict(quant_min=0, quant_max=300),
                                    dict(quant_min=-200, quant_max=0, dtype=jaxq.qint8)])
def test_bad_ranges_rejected_like_torch(kwargs):
    with pytest.raises(ValueError):
        FakeQuantize(**kwargs)
    torch_kwargs = {k: torch_dtype(v) if k == "dtype" else v for k, v in kwargs.items()}
    with pytest.raises(AssertionError):
        tfq.FakeQuantize(**torch_kwargs)


def test_bad_inputs_rejected():
    fq = FakeQuantize(observer=PerChannelMinMaxObserver, ch_axis=3)
    with pytest.raises(ValueError, match="ch_axis"):
        fq(jnp.ones((2, 3)))
    fq = FakeQuantize()
    with pytest.raises(TypeError):
        fq(jnp.ones((2, 3), jnp.int32) > 0)
    pc = FakeQuantize(observer=PerChannelMinMaxObserver)
    pc(jnp.ones((2, 3)))
    with pytest.raises(ValueError):
        pc(jnp.ones((4, 3)))
    lazy = FakeQuantize(observer=PerChannelMinMaxObserver)
    with pytest.raises(ValueError, match="not sized|different shapes"):
        nnx.jit(lambda m, x: m(x))(lazy, jnp.ones((2, 3)))


def test_state_dict_round_trip_with_fake_quants(rng):
    net = QATNet()
    net(jnp.asarray(rng.standard_normal((3, 4)).astype(np.float32)))
    disable_fake_quant(net.activation_post_process)
    saved = get_observer_state_dict(net)
    assert {"activation_post_process.scale", "activation_post_process.fake_quant_enabled",
            "activation_post_process.activation_post_process.min_val",
            "weight_fake_quant.zero_point"} <= set(saved)
    fresh = QATNet()
    load_observer_state_dict(fresh, saved)
    for key, value in get_observer_state_dict(fresh).items():
        assert value.dtype == saved[key].dtype
        np.testing.assert_array_equal(value, saved[key])
    # torch FakeQuantize state dicts load into the jaxq module.
    theirs = tfq.FakeQuantize(quant_min=0, quant_max=255)
    theirs(torch.randn(4, 3))
    ours = FakeQuantize(quant_min=0, quant_max=255)
    load_observer_state_dict(ours, theirs.state_dict())
    np.testing.assert_array_equal(ours.scale, theirs.scale.numpy())
    np.testing.assert_array_equal(ours.activation_post_process.max_val,
                                  theirs.activation_post_process.max_val.numpy())
