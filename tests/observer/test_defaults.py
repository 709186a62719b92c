"""Every default_* observer of torch's observer.py, constructed and compared."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.ao.quantization import observer as tobs

import jaxq.observer as jobs
from tests.observer._torch_ref import assert_qparams_equal

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DEFAULTS = sorted(name for name in tobs.__all__ if name.startswith(("default_", "per_",
                                                                    "weight_")))
COMPARED_ATTRIBUTES = ("quant_min", "quant_max", "reduce_range", "is_dynamic", "ch_axis",
                       "has_customized_qrange")


def test_every_name_of_torch_observer_exists():
    missing = [name for name in tobs.__all__ if not hasattr(jobs, name)]
    assert missing == []


@pytest.mark.parametrize("name", DEFAULTS)
def test_default_matches_torch(name, rng):
    ours, theirs = getattr(jobs, name)(), getattr(tobs, name)()
    assert type(ours).__name__ == type(theirs).__name__
    assert str(ours.dtype.torch_name) == str(theirs.dtype)
    if hasattr(theirs, "qscheme") and theirs.qscheme is not None:
        assert ours.qscheme.torch_name == str(theirs.qscheme)
    for attribute in COMPARED_ATTRIBUTES:
        if hasattr(theirs, attribute):
            assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    if hasattr(theirs, "eps") and theirs.eps is not None:
        assert np.float32(ours.eps) == np.float32(np.asarray(theirs.eps).ravel()[0])
    try:
        theirs.calculate_qparams()
    except Exception:  # noqa: BLE001 - torch raises for placeholder-like observers
        return
    batch = rng.standard_normal((4, 3)).astype(np.float32)
    ours(jnp.asarray(batch))
    theirs(torch.from_numpy(batch))
    assert_qparams_equal(ours.calculate_qparams(), theirs.calculate_qparams())
