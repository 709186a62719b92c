"""Running a torch constructor and its jaxq conversion on the same data."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import torch

from jaxq.core.qscheme import QScheme
from jaxq.nn import layout

_STATELESS = ("PlaceholderObserver", "NoopObserver", "RecordingObserver",
              "ReuseInputObserver", "Identity")


def _qparams_of(module):
    return module.calculate_qparams()


def _is_float_qparams(module) -> bool:
    return getattr(module, "qscheme", None) in (
        QScheme.per_channel_affine_float_qparams, torch.per_channel_affine_float_qparams)


_CHECKED: set[str] = set()


def assert_same_qparams(torch_ctor, jaxq_ctor, role: str, rng) -> None:
    """Builds both, feeds both the same two batches, compares calculate_qparams().

    Weights are torch ``(out, in, kh, kw)``; the jaxq observer is built for the Flax
    kernel (``jaxq.nn.layout``), so per-channel ``ch_axis`` translation is exercised.
    Stateless constructors (placeholders, Identity) compare their configuration instead.
    """
    if torch_ctor is None or jaxq_ctor is None:
        assert torch_ctor is None and jaxq_ctor is None
        return
    # Many defaults share constructors; run each distinct pair once per session.
    key = f"{role}:{torch_ctor!r}:{jaxq_ctor!r}"
    if key in _CHECKED:
        return
    _CHECKED.add(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch_ctor()
    name = type(theirs).__name__
    if name in _STATELESS:
        ours = jaxq_ctor()
        assert type(ours).__name__ == name
        for attribute in ("dtype", "is_dynamic"):
            if hasattr(theirs, attribute):
                assert str(getattr(ours, attribute)).replace("jaxq.", "") == str(
                    getattr(theirs, attribute)).replace("torch.", "").replace(
                    "float", "float32" if str(getattr(theirs, attribute)) == "torch.float"
                    else "float"), attribute
        return
    batches = [rng.normal(0.3, 2.0, size=(6, 4, 3, 3)).astype(np.float32) for _ in range(2)]
    if role == "weight" and not _is_float_qparams(theirs):
        kernel_shape = layout.kernel_from_torch(batches[0]).shape
        if hasattr(theirs, "activation_post_process"):
            ours = layout.weight_fake_quant_for_kernel(jaxq_ctor, kernel_shape)
        else:
            ours = layout.weight_observer_for_kernel(jaxq_ctor, kernel_shape)
        ours_batches = [layout.kernel_from_torch(b) for b in batches]
    else:
        if role == "activation":
            batches = [b.reshape(12, 18) for b in batches]
        else:  # embedding weights (num_embeddings, dim): same layout in Flax
            batches = [b.reshape(24, 9) for b in batches]
        ours = jaxq_ctor()
        ours_batches = batches
    assert type(ours).__name__ == name
    # Fake-quantize modules: feed their observers (the qparams come from them; running the
    # fake-quant op itself is tested in tests/fake_quantize and would only add compiles).
    theirs_obs = getattr(theirs, "activation_post_process", theirs)
    ours_obs = getattr(ours, "activation_post_process", ours)
    for theirs_batch, ours_batch in zip(batches, ours_batches):
        theirs_obs(torch.from_numpy(theirs_batch))
        ours_obs(jnp.asarray(ours_batch))
    t_scale, t_zero_point = (v.detach().numpy() for v in _qparams_of(theirs))
    scale, zero_point = (np.asarray(v) for v in _qparams_of(ours))
    np.testing.assert_array_equal(scale.reshape(-1), t_scale.astype(np.float32).reshape(-1))
    np.testing.assert_array_equal(zero_point.reshape(-1).astype(np.float64),
                                  t_zero_point.reshape(-1).astype(np.float64))
