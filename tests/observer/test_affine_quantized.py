"""AffineQuantizedMinMaxObserver vs torchao's, for every granularity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torchao.quantization import granularity as tg
from torchao.quantization import observer as tao
from torchao.quantization.quant_primitives import MappingType as TMappingType

import jaxq
from jaxq.observer import AffineQuantizedMinMaxObserver, MappingType, ZeroPointDomain

GRANULARITIES = [(jaxq.PerTensor(), tg.PerTensor()), (jaxq.PerAxis(0), tg.PerAxis(0)),
                 (jaxq.PerAxis(1), tg.PerAxis(1)), (jaxq.PerGroup(4), tg.PerGroup(4)),
                 (jaxq.PerRow(), tg.PerRow()), (jaxq.PerToken(), tg.PerToken())]
MAPPINGS = ["ASYMMETRIC", "SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR"]


def _pair(mapping, target, granularity, **kwargs):
    ours = AffineQuantizedMinMaxObserver(MappingType[mapping], getattr(jaxq, target),
                                         granularity[0], **kwargs)
    theirs = tao.AffineQuantizedMinMaxObserver(TMappingType[mapping],
                                               getattr(torch, target), granularity[1],
                                               **kwargs)
    return ours, theirs


def _compare(ours, theirs):
    scale, zero_point = ours.calculate_qparams()
    t_scale, t_zero_point = theirs.calculate_qparams()
    assert scale.shape == tuple(t_scale.shape)
    np.testing.assert_array_equal(np.asarray(scale, np.float32),
                                  t_scale.float().numpy())
    np.testing.assert_array_equal(np.asarray(zero_point, np.float32),
                                  t_zero_point.float().numpy())


@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("granularity", GRANULARITIES,
                         ids=lambda g: type(g[0]).__name__ + str(getattr(g[0], "axis", "")))
def test_matches_torchao(mapping, granularity, rng):
    ours, theirs = _pair(mapping, "int8", granularity)
    for scale in (1.0, 3.0):
        batch = (rng.standard_normal((3, 8)) * scale).astype(np.float32)
        ours(jnp.asarray(batch))
        theirs(torch.from_numpy(batch))
    np.testing.assert_array_equal(np.asarray(ours.min_val), theirs.min_val.numpy())
    assert ours.block_size == tuple(jaxq.get_block_size((3, 8), granularity[0]))
    _compare(ours, theirs)


@pytest.mark.parametrize("target, kwargs", [("uint8", {}), ("int8", {"eps": 1e-3}),
                                            ("uint8", {"quant_min": 0, "quant_max": 15})])
def test_options_and_bfloat16_match_torchao(target, kwargs, rng):
    ours, theirs = _pair("ASYMMETRIC", target, GRANULARITIES[1], **kwargs)
    batch = rng.standard_normal((4, 6)).astype(np.float32)
    ours(jnp.asarray(batch))
    theirs(torch.from_numpy(batch))
    _compare(ours, theirs)
    ours16, theirs16 = _pair("SYMMETRIC", target, GRANULARITIES[1], **kwargs)
    ours16(jnp.asarray(batch, jnp.bfloat16))
    theirs16(torch.from_numpy(batch).bfloat16())
    assert ours16.calculate_qparams()[0].dtype == jnp.bfloat16
    _compare(ours16, theirs16)


def test_presized_core_in_scan_and_keepdim(rng):
    obs = AffineQuantizedMinMaxObserver(MappingType.ASYMMETRIC, jaxq.int8, jaxq.PerGroup(4),
                                        input_shape=(3, 8), keepdim=True)
    core = obs.core
    batches = rng.standard_normal((3, 3, 8)).astype(np.float32)
    final, _ = jax.lax.scan(lambda s, b: (core.update(s, b), None), core.init(),
                            jnp.asarray(batches))
    theirs = tao.AffineQuantizedMinMaxObserver(TMappingType.ASYMMETRIC, torch.int8,
                                               tg.PerGroup(4), keepdim=True)
    for batch in batches:
        theirs(torch.from_numpy(batch))
    np.testing.assert_array_equal(final["min_val"], theirs.min_val.numpy())
    scale, _ = jax.jit(core.calculate_qparams)(final)
    np.testing.assert_array_equal(scale, theirs.calculate_qparams()[0].numpy())


def test_zero_point_domain_none_and_errors():
    with pytest.warns(DeprecationWarning):
        obs = AffineQuantizedMinMaxObserver(MappingType.SYMMETRIC, jaxq.int8,
                                            jaxq.PerTensor(),
                                            zero_point_domain=ZeroPointDomain.NONE)
    obs(jnp.array([1.0, -2.0]))
    assert obs.calculate_qparams()[1] is None
    fresh = AffineQuantizedMinMaxObserver(MappingType.SYMMETRIC, jaxq.int8, jaxq.PerTensor())
    with pytest.raises(ValueError, match="run the observer"):
        fresh.calculate_qparams()
    with pytest.raises(ValueError, match="granularity"):
        AffineQuantizedMinMaxObserver(MappingType.SYMMETRIC, jaxq.int8, None)
    with pytest.raises(ValueError, match="ZeroPointDomain.NONE"):
        AffineQuantizedMinMaxObserver(MappingType.SYMMETRIC, jaxq.int8, jaxq.PerTensor(),
                                      zero_point_domain=None)
    obs = AffineQuantizedMinMaxObserver(MappingType.SYMMETRIC, jaxq.int8, jaxq.PerAxis(0))
    obs(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="shape mismatch"):
        obs(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="not sized"):
        jax.jit(lambda x: AffineQuantizedMinMaxObserver(
            MappingType.SYMMETRIC, jaxq.int8, jaxq.PerTensor())(x))(jnp.ones(2))
