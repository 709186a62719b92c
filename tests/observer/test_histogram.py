"""HistogramObserver against torch.ao.quantization.observer.HistogramObserver.

Histograms and min/max are compared bit for bit after every batch (jaxq reproduces
torch's float32 summation orders, so no tolerance is needed); scale and zero point are
compared exactly. Most tests share bins=2048 and one batch size so that the jitted
update and search compile once.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.quantization import observer as torch_observer

import jaxq
from jaxq.observer import histogram as jh
from jaxq.observer.histogram import (
    HistogramCore,
    HistogramObserver,
    default_histogram_observer,
)
from tests._tracing import counting_jit
from tests.observer._torch_ref import (
    assert_qparams_equal,
    to_torch,
    torch_dtype,
    torch_qscheme,
)

N = 4096  # one batch size for (nearly) every test: one compilation of the update


def _configs():
    return {
        "quint8_affine": {},
        "qint8_symmetric": {"dtype": jaxq.qint8, "qscheme": jaxq.per_tensor_symmetric},
        "qint8_affine": {"dtype": jaxq.qint8},
        "quint8_symmetric": {"qscheme": jaxq.per_tensor_symmetric},
        "reduce_range": {"reduce_range": True},
        "qint8_reduce_range": {"dtype": jaxq.qint8, "reduce_range": True},
        "custom_range": {"quant_min": 0, "quant_max": 127},
        "custom_range_reduced": {"dtype": jaxq.qint8, "quant_min": -100, "quant_max": 100,
                                 "reduce_range": True},
    }


def _scenarios(rng):
    normal = lambda scale=1.0, shift=0.0: (  # noqa: E731
        rng.standard_normal(N) * scale + shift).astype(np.float32)
    with_inf = normal()
    with_inf[[3, 77, 1000]] = [np.inf, -np.inf, np.inf]
    return {
        "random": [normal()],
        "growing_and_shrinking": [normal(s) for s in (1.0, 2.0, 0.5, 3.0, 1.0, 6.0)],
        "shifting": [normal(1.0, m) for m in (0.0, 1.5, -2.0, 4.0, 0.3)],
        "constant": [np.full(N, 3.0, np.float32)] * 2,
        "constant_then_spread": [np.full(N, -0.7, np.float32), normal(), normal(2.0)],
        "zeros": [np.zeros(N, np.float32)],
        "positive": [rng.uniform(1.0, 5.0, N).astype(np.float32) for _ in range(3)],
        "negative": [rng.uniform(-5.0, -1.0, N).astype(np.float32) for _ in range(3)],
        "heavy_tail": [(rng.standard_t(2.0, N) * s).astype(np.float32) for s in (1, 4, 2)],
        "outliers": [np.concatenate([rng.standard_normal(N - 4), [40.0, -35.0, 60.0, 80.0]]
                                    ).astype(np.float32), normal()],
        "inf_in_batch": [normal(), with_inf, normal(0.5)],
        "tiny": [normal(1e-6)],
    }


def _torch_observer(bins=2048, **config):
    kwargs = dict(config)
    if "dtype" in kwargs:
        kwargs["dtype"] = torch_dtype(kwargs["dtype"])
    if "qscheme" in kwargs:
        kwargs["qscheme"] = torch_qscheme(kwargs["qscheme"])
    return torch_observer.HistogramObserver(bins=bins, **kwargs)


def _assert_state_equal(state, torch_obs):
    np.testing.assert_array_equal(np.asarray(state["min_val"]), torch_obs.min_val.numpy())
    np.testing.assert_array_equal(np.asarray(state["max_val"]), torch_obs.max_val.numpy())
    np.testing.assert_array_equal(np.asarray(state["histogram"]),
                                  torch_obs.histogram.numpy())


def _run_both(batches, bins=2048, **config):
    """Feeds the batches to torch and to the jaxq module; checks state after each."""
    ours = HistogramObserver(bins=bins, **config)
    theirs = _torch_observer(bins=bins, **config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for batch in batches:
            ours(jnp.asarray(batch))
            theirs(to_torch(batch))
            _assert_state_equal(ours.state.get_value(), theirs)
        assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())
    return ours, theirs


@pytest.mark.parametrize("scenario", list(_scenarios(np.random.default_rng(0))))
def test_scenarios_match_torch(scenario, rng):
    _run_both(_scenarios(rng)[scenario])


@pytest.mark.parametrize("config", list(_configs()))
@pytest.mark.parametrize("scenario", ["growing_and_shrinking", "positive", "heavy_tail"])
def test_configs_match_torch(config, scenario, rng):
    _run_both(_scenarios(rng)[scenario], **_configs()[config])


@pytest.mark.parametrize("bins", [100, 5])
def test_other_bin_counts_match_torch(bins, rng):
    batches = [(rng.standard_normal(N) * s).astype(np.float32) for s in (1.0, 3.0, 0.5)]
    _run_both(batches, bins=bins)


def test_large_batches_match_torch(rng):
    # Above 2**16 values histc scatters a few slices separately (uneven sizes here).
    size = (1 << 16) + 3
    batches = [(rng.standard_normal(size) * s).astype(np.float32) for s in (1.0, 2.0)]
    batches[1][[0, size - 1]] = [np.inf, -np.inf]
    _run_both(batches)


def test_many_range_changes_keep_histogram_exact(rng):
    # Each widening divides carried counts by 16, so after a few of them the float32
    # sums are no longer exact and torch's summation order shows in the last bits.
    batches = [(rng.standard_normal(N) * 1.3**k + 0.2 * k).astype(np.float32)
               for k in range(12)]
    _run_both(batches)


def test_never_observed_matches_torch():
    ours, theirs = HistogramObserver(), _torch_observer()
    with pytest.warns(UserWarning, match="must run observer"):
        ours_qparams = ours.calculate_qparams()
    with pytest.warns(UserWarning):
        theirs_qparams = theirs.calculate_qparams()
    assert_qparams_equal(ours_qparams, theirs_qparams)
    _assert_state_equal(ours.state.get_value(), theirs)


def test_inf_is_dropped_with_a_warning(rng):
    batch = rng.standard_normal(N).astype(np.float32)
    batch[5] = np.inf
    obs = HistogramObserver()
    with pytest.warns(UserWarning, match="torch.inf detected"):
        obs(jnp.asarray(batch))
    reference = HistogramObserver()
    reference(jnp.asarray(batch[np.isfinite(batch)]))
    np.testing.assert_array_equal(obs.histogram, reference.histogram)


def test_all_inf_batch_leaves_state_unchanged(rng):
    ours, theirs = _run_both([rng.standard_normal(N).astype(np.float32)])
    before = jax.tree.map(np.asarray, ours.state.get_value())
    batch = np.full(N, np.inf, np.float32)
    batch[::2] = -np.inf
    with pytest.warns(UserWarning):
        ours(jnp.asarray(batch))
    with pytest.warns(UserWarning):
        theirs(to_torch(batch))
    jax.tree.map(np.testing.assert_array_equal, ours.state.get_value(), before)
    _assert_state_equal(ours.state.get_value(), theirs)


def test_nan_raises_eagerly_and_propagates_under_jit(rng):
    batch = rng.standard_normal(N).astype(np.float32)
    batch[9] = np.nan
    with pytest.raises(RuntimeError):  # torch.histc rejects the NaN range
        _torch_observer()(to_torch(batch))
    obs = HistogramObserver()
    with pytest.raises(ValueError, match="NaN"):
        obs(jnp.asarray(batch))
    assert np.isinf(obs.min_val)  # state unchanged
    core = obs.core
    state = jax.jit(core.update)(core.init(), batch)
    assert np.isnan(state["min_val"]) and np.isnan(state["max_val"])
    scale, _ = jax.jit(core.calculate_qparams)(state)
    assert np.isnan(scale).all()


def test_jit_does_not_recompile_and_matches_eager(rng):
    core = HistogramCore.create(dtype=jaxq.qint8, qscheme=jaxq.per_tensor_symmetric)
    update = counting_jit(core.update)
    qparams = jax.jit(core.calculate_qparams)
    theirs = _torch_observer(dtype=jaxq.qint8, qscheme=jaxq.per_tensor_symmetric)
    state = core.init()
    for scale in (1.0, 2.5, 0.5):
        batch = (rng.standard_normal(N) * scale).astype(np.float32)
        state = update(state, batch)
        theirs(to_torch(batch))
        _assert_state_equal(state, theirs)
    assert update.traces == 1
    assert_qparams_equal(qparams(state), theirs.calculate_qparams())
    qparams(state)
    # Counted as traces: the C++ fast-path cache of this bound method was seen empty once
    # in a full parallel run (other tests in the worker), never when run alone.
    traces = []

    def counted(state):
        traces.append(None)
        return core.calculate_qparams(state)

    counted_jit = jax.jit(counted)
    counted_jit(state)
    counted_jit(state)
    assert len(traces) == 1


def test_lax_scan_over_batches_matches_torch(rng):
    core = HistogramCore.create()
    batches = np.stack([(rng.standard_normal(N) * s + 0.1 * s).astype(np.float32)
                        for s in (1.0, 2.0, 0.7, 3.0)])

    @jax.jit
    def observe_all(state, xs):
        return jax.lax.scan(lambda s, x: (core.update(s, x), None), state, xs)[0]

    state = observe_all(core.init(), batches)
    theirs = _torch_observer()
    for batch in batches:
        theirs(to_torch(batch))
    _assert_state_equal(state, theirs)
    assert_qparams_equal(jax.jit(core.calculate_qparams)(state), theirs.calculate_qparams())


def test_vmap_over_stacked_observers(rng):
    # e.g. one observer per layer of a scanned model: a leading axis on the state.
    core = HistogramCore.create(bins=256)
    batches = np.stack([rng.standard_normal(N) * s for s in (1.0, 3.0)]).astype(np.float32)
    state = jax.tree.map(lambda v: jnp.stack([v, v]), core.init())
    update = jax.jit(jax.vmap(core.update))
    state = update(update(state, batches), batches * 1.7)
    scales, zero_points = jax.jit(jax.vmap(core.calculate_qparams))(state)
    for i in range(2):
        theirs = _torch_observer(bins=256)
        theirs(to_torch(batches[i]))
        theirs(to_torch(batches[i] * np.float32(1.7)))
        _assert_state_equal(jax.tree.map(lambda v: v[i], state), theirs)
        assert_qparams_equal((scales[i], zero_points[i]), theirs.calculate_qparams())


def test_nnx_jit_module(rng):
    obs = HistogramObserver(reduce_range=True)

    @nnx.jit
    def observe(module, x):
        module(x)

    theirs = _torch_observer(reduce_range=True)
    for scale in (1.0, 4.0):
        batch = (rng.standard_normal(N) * scale).astype(np.float32)
        observe(obs, jnp.asarray(batch))
        theirs(to_torch(batch))
    _assert_state_equal(obs.state.get_value(), theirs)
    assert_qparams_equal(obs.calculate_qparams(), theirs.calculate_qparams())


def test_default_histogram_observer_matches_torch(rng):
    batch = (rng.standard_normal(N) * 2.0).astype(np.float32)
    ours = default_histogram_observer()
    theirs = torch_observer.default_histogram_observer()
    assert (ours.quant_min, ours.quant_max) == (theirs.quant_min, theirs.quant_max)
    ours(jnp.asarray(batch))
    theirs(to_torch(batch))
    assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())


def test_attributes_mirror_torch():
    ours, theirs = HistogramObserver(dtype=jaxq.qint8), _torch_observer(dtype=jaxq.qint8)
    assert ours.bins == theirs.bins
    assert ours.upsample_rate == theirs.upsample_rate
    assert ours.dst_nbins == theirs.dst_nbins
    assert ours.histogram.shape == tuple(theirs.histogram.shape)
    assert ours.histogram.dtype == jnp.float32


def test_empty_batch_is_skipped():
    obs = HistogramObserver()
    x = jnp.zeros((0, 3))
    assert obs(x) is x
    assert np.isinf(obs.min_val)


@pytest.mark.parametrize("kwargs, error", [
    ({"qscheme": jaxq.per_channel_affine}, ValueError),
    ({"is_dynamic": True}, ValueError),
    ({"bins": 0}, ValueError),
    ({"bins": 2.5}, ValueError),
    ({"qscheme": jaxq.per_tensor_symmetric, "reduce_range": True}, ValueError),
    ({"quant_min": 5, "quant_max": 100}, ValueError),
    ({"dtype": "float32"}, TypeError),
    ({"factory_kwargs": {"dtype": torch.float64}}, ValueError),
])
def test_bad_arguments_raise(kwargs, error):
    with pytest.raises(error):
        HistogramObserver(**kwargs)


def test_torch_histc_matches_torch(rng):
    histc = jax.jit(jh.torch_histc, static_argnums=1)
    for _ in range(10):
        x = (rng.standard_normal(N) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
        lo, hi = np.sort(np.array([x.min() * rng.uniform(0.5, 1.5),
                                   x.max() * rng.uniform(0.5, 1.5)], np.float32))
        for bounds in ((lo, hi), (x.min(), x.max())):
            expected = torch.histc(to_torch(x), 2048, min=float(bounds[0]),
                                   max=float(bounds[1])).numpy()
            np.testing.assert_array_equal(histc(x, 2048, *bounds), expected)
    point = np.full(N, 2.5, np.float32)
    np.testing.assert_array_equal(
        histc(point, 2048, point.min(), point.max()),
        torch.histc(to_torch(point), 2048, min=2.5, max=2.5).numpy())


def test_torch_linspace_matches_torch(rng):
    linspace = jax.jit(jh.torch_linspace, static_argnums=2)
    for _ in range(20):
        start, end = np.sort((rng.standard_normal(2) * 10.0 ** rng.uniform(-3, 3)
                              ).astype(np.float32))
        for steps in (2049, 32769):
            np.testing.assert_array_equal(
                linspace(start, end, steps),
                torch.linspace(float(start), float(end), steps).numpy())


@pytest.mark.parametrize("n", [3, 7, 16, 100, 2048, 4099])
def test_torch_float32_sum_matches_torch(n, rng):
    total = jax.jit(jh.torch_float32_sum)
    for _ in range(10):
        x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(np.float32)
        assert float(total(x)) == to_torch(x).sum().item()
