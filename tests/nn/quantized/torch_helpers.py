"""Helpers shared by the quantized-module tests: torch <-> jaxq QTensors (NCHW <-> NHWC)
and the integer-agreement check."""

import warnings

import jax.numpy as jnp
import numpy as np
import torch

from jaxq.core.dtypes import qint8, quint8
from jaxq.core.qtensor import QTensor

warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
warnings.filterwarnings("ignore", category=UserWarning, module="torch")

TORCH_DTYPES = {"quint8": torch.quint8, "qint8": torch.qint8}
JAXQ_DTYPES = {"quint8": quint8, "qint8": qint8}


def f32(value):
    """A Python float exactly representable in float32 (torch keeps qparams in double)."""
    return float(np.float32(value))


def to_channels_last(array: np.ndarray) -> np.ndarray:
    return array.transpose((0,) + tuple(range(2, array.ndim)) + (1,))


def to_channels_first(array: np.ndarray) -> np.ndarray:
    return array.transpose((0, array.ndim - 1) + tuple(range(1, array.ndim - 1)))


def random_qtensor(rng, shape, scale, zero_point, dtype="quint8", spread=3.0,
                   channels_last=True):
    """(torch qtensor (N, C, ...), jaxq QTensor (N, ..., C)) with the same integers."""
    x = torch.tensor(rng.normal(size=shape).astype(np.float32) * spread)
    q = torch.quantize_per_tensor(x, f32(scale), zero_point, TORCH_DTYPES[dtype])
    values = q.int_repr().numpy()
    if channels_last and values.ndim > 2:
        values = to_channels_last(values)
    return q, QTensor(jnp.asarray(values), np.float32(scale), zero_point, JAXQ_DTYPES[dtype])


def jaxq_weight(wq: torch.Tensor) -> QTensor:
    """A torch qint8 weight as a jaxq QTensor (same layout, torch's)."""
    values = jnp.asarray(wq.int_repr().numpy())
    if wq.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return QTensor(values, jnp.asarray(wq.q_per_channel_scales().numpy(), jnp.float32),
                       jnp.asarray(wq.q_per_channel_zero_points().numpy(), jnp.int32), qint8,
                       "per_channel_affine", 0)
    return QTensor(values, np.float32(wq.q_scale()), wq.q_zero_point(), qint8)


def random_weight(rng, shape, per_channel, zero_points=False):
    """A torch qint8 weight, per-tensor or per-channel (axis 0), float32 scales."""
    w = torch.tensor(rng.normal(size=shape).astype(np.float32) * 0.3)
    flat = w.reshape(shape[0], -1).abs().amax(1).numpy()
    if per_channel:
        scales = torch.tensor((flat / 127 + 1e-3).astype(np.float32), dtype=torch.double)
        zps = torch.tensor(rng.integers(-3, 4, shape[0]) if zero_points
                           else np.zeros(shape[0]), dtype=torch.long)
        return torch.quantize_per_channel(w, scales, zps, 0, torch.qint8)
    return torch.quantize_per_tensor(w, f32(flat.max() / 127), 2 if zero_points else 0,
                                     torch.qint8)


def assert_qtensor_matches(got: QTensor, expected: torch.Tensor, min_equal: float = 1.0,
                           channels_last: bool = True) -> float:
    """Same qparams and integers (at least ``min_equal`` equal, others within 1).

    Returns the fraction of equal elements.
    """
    assert isinstance(got, QTensor)
    assert np.float32(np.asarray(got.scale)) == np.float32(expected.q_scale())
    assert int(got.zero_point) == expected.q_zero_point()
    values = np.asarray(got.int_repr()).astype(np.int64)
    if channels_last and values.ndim > 2:
        values = to_channels_first(values)
    ref = expected.int_repr().numpy().astype(np.int64)
    assert values.shape == ref.shape
    diff = np.abs(values - ref)
    equal = float((diff == 0).mean()) if diff.size else 1.0
    assert diff.max(initial=0) <= 1, f"max |diff| = {diff.max()}"
    assert equal >= min_equal, f"only {equal:.4%} equal"
    return equal
