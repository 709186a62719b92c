"""Fixed-qparams, placeholder, noop, reuse-input and recording observers vs torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.ao.quantization import observer as tobs

import jaxq
from jaxq.observer import (
    FixedQParamsObserver,
    NoopObserver,
    PlaceholderObserver,
    RecordingObserver,
    ReuseInputObserver,
)
from tests.observer._torch_ref import assert_qparams_equal


@pytest.mark.parametrize("scale, zero_point", [(1.0 / 256.0, 0), (2.0 / 256.0, 128),
                                               (0.1, 3)])
def test_fixed_qparams_match_torch(scale, zero_point):
    ours = FixedQParamsObserver(scale, zero_point)
    theirs = tobs.FixedQParamsObserver(scale, zero_point)
    x = jnp.arange(4.0)
    assert ours(x) is x
    assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())
    assert (ours.quant_min, ours.quant_max) == (theirs.quant_min, theirs.quant_max)
    assert ours.qscheme is jaxq.per_tensor_affine and ours.dtype is jaxq.quint8


@pytest.mark.parametrize("kwargs", [dict(scale=0.0, zero_point=0),
                                    dict(scale=float("nan"), zero_point=0),
                                    dict(scale=0.1, zero_point=300),
                                    dict(scale=0.1, zero_point=0.5),
                                    dict(scale=0.1, zero_point=0, is_dynamic=True),
                                    dict(scale=0.1, zero_point=0,
                                         qscheme=jaxq.per_channel_affine)])
def test_fixed_qparams_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        FixedQParamsObserver(**kwargs)


def test_placeholder_matches_torch_attributes():
    ours = PlaceholderObserver(dtype=jaxq.quint8, quant_min=0, quant_max=255,
                               is_dynamic=True)
    theirs = tobs.PlaceholderObserver(dtype=torch.quint8, quant_min=0, quant_max=255,
                                      is_dynamic=True)
    for name in ("quant_min", "quant_max", "is_dynamic", "custom_op"):
        assert getattr(ours, name) == getattr(theirs, name)
    assert np.float32(ours.eps) == np.float32(theirs.eps)
    assert ours.qscheme is jaxq.per_tensor_affine
    assert PlaceholderObserver().dtype is jaxq.float32
    assert NoopObserver().dtype is jaxq.float16
    with pytest.warns(UserWarning, match="is_dynamic"):
        deprecated = PlaceholderObserver(compute_dtype=jaxq.quint8)
    assert deprecated.is_dynamic == tobs.PlaceholderObserver(
        compute_dtype=torch.quint8).is_dynamic


@pytest.mark.parametrize("ours, theirs", [
    (PlaceholderObserver, tobs.PlaceholderObserver), (NoopObserver, tobs.NoopObserver),
    (ReuseInputObserver, tobs.ReuseInputObserver),
    (RecordingObserver, tobs.RecordingObserver)])
def test_calculate_qparams_raises_like_torch(ours, theirs):
    obs = ours()
    x = jnp.ones(3)
    assert obs(x) is x
    with pytest.raises(NotImplementedError, match="should not be called"):
        obs.calculate_qparams()
    with pytest.raises(Exception, match="should not be called"):
        theirs().calculate_qparams()


def test_stateless_observers_work_under_jit():
    obs = PlaceholderObserver()
    np.testing.assert_array_equal(jax.jit(lambda x: obs.core.update({}, x) or x)(
        jnp.ones(2)), jnp.ones(2))


def test_recording_observer_keeps_copies():
    obs = RecordingObserver()
    theirs = tobs.RecordingObserver()
    batches = [np.arange(3.0, dtype=np.float32), np.ones((2, 2), np.float32)]
    for batch in batches:
        obs(jnp.asarray(batch))
        theirs(torch.from_numpy(batch))
    assert len(obs.get_tensor_value()) == len(theirs.get_tensor_value()) == 2
    for ours_value, their_value in zip(obs.get_tensor_value(), theirs.get_tensor_value()):
        np.testing.assert_array_equal(ours_value, their_value.numpy())
    with pytest.raises(TypeError, match="outside"):
        jax.jit(lambda x: obs(x))(jnp.ones(2))
