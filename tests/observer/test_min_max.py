"""MinMaxObserver and MovingAverageMinMaxObserver vs torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import observer as tobs

import jaxq
from jaxq.observer import MinMaxObserver, MovingAverageMinMaxObserver
from tests.observer._torch_ref import (
    assert_qparams_equal,
    edge_batches,
    to_torch,
    torch_dtype,
    torch_qscheme,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONFIGS = [
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_tensor_affine),
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_tensor_symmetric),
    dict(dtype=jaxq.qint8, qscheme=jaxq.per_tensor_affine),
    dict(dtype=jaxq.qint8, qscheme=jaxq.per_tensor_symmetric),
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_tensor_affine, reduce_range=True),
    dict(dtype=jaxq.qint8, qscheme=jaxq.per_tensor_symmetric, reduce_range=True),
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_tensor_affine, quant_min=0, quant_max=15),
    dict(dtype=jaxq.qint8, qscheme=jaxq.per_tensor_affine, quant_min=-8, quant_max=7,
         reduce_range=True),
    dict(dtype=jaxq.quint8, qscheme=jaxq.per_tensor_symmetric, quant_min=0,
         quant_max=100),
    dict(dtype=jaxq.uint16, qscheme=jaxq.per_tensor_symmetric),
    dict(dtype=jaxq.int16, qscheme=jaxq.per_tensor_affine),
    dict(dtype=jaxq.qint32, qscheme=jaxq.per_tensor_affine),
    dict(dtype=jaxq.int8, qscheme=jaxq.per_tensor_symmetric, quant_min=-127,
         quant_max=127, eps=2**-12),
]
CLASSES = [(MinMaxObserver, tobs.MinMaxObserver, {}),
           (MovingAverageMinMaxObserver, tobs.MovingAverageMinMaxObserver,
            {"averaging_constant": 0.3})]
EDGE_NAMES = list(edge_batches(np.random.default_rng(0)))


def _pair(ours_cls, theirs_cls, extra, config):
    torch_config = {**config, "dtype": torch_dtype(config["dtype"]),
                    "qscheme": torch_qscheme(config["qscheme"])}
    return ours_cls(**extra, **config), theirs_cls(**extra, **torch_config)


def _observe_both(ours, theirs, batches):
    for batch in batches:
        out = ours(jnp.asarray(batch))
        theirs(to_torch(batch))
        np.testing.assert_array_equal(np.asarray(out), batch)


def _assert_state_equal(ours, theirs):
    np.testing.assert_array_equal(np.asarray(ours.min_val), theirs.min_val.numpy())
    np.testing.assert_array_equal(np.asarray(ours.max_val), theirs.max_val.numpy())


@pytest.mark.parametrize("classes", CLASSES, ids=["minmax", "movavg0.3"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(
    str(v.name if hasattr(v, "name") else v) for v in c.values()))
def test_matches_torch_on_edge_cases(classes, config, rng):
    for name, batches in edge_batches(rng).items():
        ours, theirs = _pair(*classes, config)
        _observe_both(ours, theirs, batches)
        _assert_state_equal(ours, theirs)
        assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())


@pytest.mark.parametrize("classes", CLASSES[:2], ids=["minmax", "movavg"])
@pytest.mark.parametrize("special", ["nan", "inf", "-inf", "both_inf", "nan_then_data"])
def test_special_values_match_torch(classes, special, rng):
    data = rng.standard_normal((3, 5)).astype(np.float32)
    batches = {"nan": [np.where(data > 1, np.nan, data).astype(np.float32)],
               "inf": [np.append(data.ravel(), np.inf).astype(np.float32)],
               "-inf": [np.append(data.ravel(), -np.inf).astype(np.float32)],
               "both_inf": [np.array([-np.inf, np.inf], np.float32)],
               "nan_then_data": [np.array([np.nan], np.float32), data]}[special]
    for config in CONFIGS[:4]:
        ours, theirs = _pair(*classes, config)
        _observe_both(ours, theirs, batches)
        _assert_state_equal(ours, theirs)
        assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())


@pytest.mark.parametrize("classes", CLASSES[:2], ids=["minmax", "movavg"])
def test_empty_and_integer_inputs_match_torch(classes, rng):
    ours, theirs = _pair(*classes, CONFIGS[0])
    empty = np.zeros((0, 3), np.float32)
    ours(jnp.asarray(empty))
    theirs(to_torch(empty))
    _assert_state_equal(ours, theirs)
    ints = rng.integers(-50, 50, (4, 4)).astype(np.int32)
    ours(jnp.asarray(ints))
    theirs(torch.from_numpy(ints))
    _assert_state_equal(ours, theirs)
    assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())


def test_reset_min_max_vals_matches_torch(rng):
    ours, theirs = _pair(MinMaxObserver, tobs.MinMaxObserver, {}, CONFIGS[2])
    _observe_both(ours, theirs, [rng.standard_normal(5).astype(np.float32)])
    ours.reset_min_max_vals()
    theirs.reset_min_max_vals()
    _assert_state_equal(ours, theirs)
    _observe_both(ours, theirs, [rng.standard_normal(5).astype(np.float32) + 4])
    assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())


@pytest.mark.parametrize("kwargs, torch_error", [
    (dict(qscheme=jaxq.per_channel_affine), NotImplementedError),
    (dict(qscheme=jaxq.per_tensor_symmetric, reduce_range=True), NotImplementedError),
    (dict(quant_min=3, quant_max=10), AssertionError),
    (dict(dtype=jaxq.float16), AssertionError),
])
def test_invalid_configs_rejected_like_torch(kwargs, torch_error):
    with pytest.raises((ValueError, TypeError)):
        MinMaxObserver(**kwargs)
    torch_kwargs = {k: (torch_dtype(v) if k == "dtype" else
                        torch_qscheme(v) if k == "qscheme" else v)
                    for k, v in kwargs.items()}
    with pytest.raises(torch_error):
        tobs.MinMaxObserver(**torch_kwargs)


def test_moving_average_dynamic_requires_constant_one():
    with pytest.raises(ValueError, match="averaging_constant"):
        MovingAverageMinMaxObserver(is_dynamic=True)
    with pytest.raises(NotImplementedError):
        tobs.MovingAverageMinMaxObserver(is_dynamic=True)
    assert MovingAverageMinMaxObserver(averaging_constant=1, is_dynamic=True).is_dynamic


def test_bad_inputs_rejected():
    obs = MinMaxObserver()
    with pytest.raises(TypeError, match="x must be"):
        obs(jnp.array([True, False]))
    with pytest.raises(ValueError, match="factory_kwargs"):
        MinMaxObserver(factory_kwargs={"dtype": "torch.float64"})
    MinMaxObserver(factory_kwargs={"device": "cpu"})


def test_core_in_scan_and_vmap_matches_eager(rng):
    obs = MovingAverageMinMaxObserver(averaging_constant=0.1, dtype=jaxq.qint8)
    core = obs.core
    batches = rng.standard_normal((5, 4, 3)).astype(np.float32)

    def step(state, batch):
        return core.update(state, batch), None

    final, _ = jax.lax.scan(step, core.init(), jnp.asarray(batches))
    eager = MovingAverageMinMaxObserver(averaging_constant=0.1, dtype=jaxq.qint8)
    for batch in batches:
        eager(jnp.asarray(batch))
    np.testing.assert_array_equal(final["min_val"], eager.min_val)
    np.testing.assert_array_equal(final["max_val"], eager.max_val)
    # vmap: independent observers, one per stream.
    states = jax.vmap(lambda b: core.update(core.init(), b))(jnp.asarray(batches))
    scales, zero_points = jax.vmap(core.calculate_qparams)(states)
    for i, batch in enumerate(batches):
        one = MovingAverageMinMaxObserver(averaging_constant=0.1, dtype=jaxq.qint8)
        one(jnp.asarray(batch))
        expected = one.calculate_qparams()
        np.testing.assert_array_equal(scales[i], expected[0])
        np.testing.assert_array_equal(zero_points[i], expected[1])


def test_nnx_jit_does_not_recompile(rng):
    traces = []

    class Net(nnx.Module):
        def __init__(self):
            self.obs = MovingAverageMinMaxObserver()

        def __call__(self, x):
            return self.obs(x * 2.0)

    @nnx.jit
    def step(net, x):
        traces.append(1)
        out = net(x)
        return out, net.obs.calculate_qparams()

    net = Net()
    theirs = tobs.MovingAverageMinMaxObserver()
    for _ in range(4):
        batch = rng.standard_normal((3, 4)).astype(np.float32)
        _, qparams = step(net, jnp.asarray(batch))
        theirs(to_torch(batch * 2.0))
    assert len(traces) == 1
    assert_qparams_equal(qparams, theirs.calculate_qparams())


def test_sharded_input():
    mesh = jax.make_mesh((1,), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    x = jax.device_put(jnp.arange(8.0) - 3.0, sharding)
    core = MinMaxObserver().core
    state = jax.jit(core.update)(core.init(), x)
    assert float(state["min_val"]) == -3.0 and float(state["max_val"]) == 4.0
