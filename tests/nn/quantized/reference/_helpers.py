"""Shared pieces of the reference-module tests: torch-style weight qparams."""

from __future__ import annotations

import numpy as np
import torch

QSCHEMES = {
    "per_tensor": torch.per_tensor_affine,
    "per_channel": torch.per_channel_affine,
    "float_qparams": torch.per_channel_affine_float_qparams,
}
DTYPES = {"quint8": torch.quint8, "qint8": torch.qint8, "qint32": torch.qint32}
BOUNDS = {torch.quint8: (0, 255), torch.qint8: (-128, 127), torch.qint32: (-2**31, 2**31 - 1)}


def random_weight_qparams(rng: np.random.Generator, weight: np.ndarray, qscheme: str,
                          dtype: str, axis: int = 0) -> dict:
    """torch's ``weight_qparams`` dict (torch tensors and dtypes) for ``weight``.

    Scales are chosen so that some values clamp; zero points are random inside the
    dtype's range (near its middle for qint32, where ``x/s`` stays within float32's
    exact integers).
    """
    tdtype = DTYPES[dtype]
    lo, hi = BOUNDS[tdtype]
    tqscheme = QSCHEMES[qscheme]
    span = float(np.abs(weight).max())
    levels = {torch.quint8: 200.0, torch.qint8: 200.0, torch.qint32: 2.0**20}[tdtype]
    if tqscheme is torch.per_tensor_affine:
        scale = torch.tensor(span / levels * rng.uniform(0.5, 1.5), dtype=torch.float32)
        if tdtype is torch.qint32:
            zero_point = torch.tensor(int(rng.integers(-1000, 1000)), dtype=torch.int64)
        else:
            zero_point = torch.tensor(int(rng.integers(lo + 50, hi - 50)), dtype=torch.int64)
        return {"qscheme": tqscheme, "dtype": tdtype, "scale": scale,
                "zero_point": zero_point}
    channels = weight.shape[axis]
    scale = torch.from_numpy(
        (span / levels * rng.uniform(0.5, 1.5, channels)).astype(np.float32))
    if tqscheme is torch.per_channel_affine_float_qparams:
        zero_point = torch.from_numpy(rng.normal(0, span / 4, channels).astype(np.float32))
    elif tdtype is torch.qint32:
        zero_point = torch.from_numpy(rng.integers(-1000, 1000, channels))
    else:
        zero_point = torch.from_numpy(rng.integers(lo + 50, hi - 50, channels))
    return {"qscheme": tqscheme, "dtype": tdtype, "scale": scale,
            "zero_point": zero_point, "axis": axis}


def cases(include_qint32: bool = True) -> list[tuple[str, str]]:
    """(qscheme, dtype) pairs torch's reference modules support."""
    out = [("per_tensor", "quint8"), ("per_tensor", "qint8"), ("per_channel", "quint8"),
           ("per_channel", "qint8"), ("float_qparams", "quint8")]
    if include_qint32:
        out += [("per_tensor", "qint32"), ("per_channel", "qint32")]
    return out
