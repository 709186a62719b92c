"""Helpers that run torch beside jaxq (shared by the observer and fake-quant tests)."""

from __future__ import annotations

import numpy as np
import torch

import jaxq


def torch_dtype(dtype):
    """The torch dtype named like a jaxq QuantDType."""
    return getattr(torch, jaxq.as_quant_dtype(dtype).name)


def torch_qscheme(qscheme):
    return getattr(torch, jaxq.as_qscheme(qscheme).value)


def to_torch(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32, copy=True))


def assert_qparams_equal(ours, theirs, *, exact_scale: bool = True):
    """scale bit-equal (or to float32 rounding), zero point exactly equal."""
    scale, zero_point = (np.asarray(v) for v in ours)
    t_scale, t_zero_point = (v.detach().numpy() for v in theirs)
    assert scale.shape == t_scale.shape, (scale.shape, t_scale.shape)
    assert scale.dtype == np.float32
    if exact_scale:
        np.testing.assert_array_equal(scale, t_scale)
    else:
        np.testing.assert_allclose(scale, t_scale, rtol=2e-7, atol=0)
    assert zero_point.shape == t_zero_point.shape
    if t_zero_point.dtype.kind == "f":
        np.testing.assert_array_equal(zero_point, t_zero_point.astype(np.float32))
    else:
        assert zero_point.dtype == np.int32
        np.testing.assert_array_equal(zero_point.astype(np.int64), t_zero_point)


def edge_batches(rng, shape=(4, 6)):
    """name -> list of float32 batches covering the observer edge cases."""
    normal = lambda: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {
        "random": [normal()],
        "several_batches": [normal() * s for s in (1.0, 3.0, 0.5)],
        "constant": [np.full(shape, 3.0, np.float32)],
        "zeros": [np.zeros(shape, np.float32)],
        "positive": [rng.uniform(1.0, 5.0, shape).astype(np.float32)],
        "negative": [rng.uniform(-5.0, -1.0, shape).astype(np.float32)],
        "tiny": [(rng.standard_normal(shape) * 1e-9).astype(np.float32)],
    }
