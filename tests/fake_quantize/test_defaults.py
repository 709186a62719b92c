"""Every default fake-quant factory of torch's fake_quantize.py vs torch."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.ao.quantization import fake_quantize as tfq

import jaxq.fake_quantize as jfq

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FACTORIES = sorted(name for name in tfq.__all__
                   if name.startswith(("default_", "fused_")))


def test_every_name_of_torch_fake_quantize_exists():
    assert [name for name in tfq.__all__ if not hasattr(jfq, name)] == []


@pytest.mark.parametrize("name", FACTORIES)
def test_default_matches_torch(name, rng):
    ours, theirs = getattr(jfq, name)(), getattr(tfq, name)()
    assert type(ours).__name__ == type(theirs).__name__
    for attribute in ("quant_min", "quant_max", "ch_axis", "is_per_channel", "is_dynamic"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert ours.qscheme.torch_name == str(theirs.qscheme)
    for scale in (1.0, 2.0):
        batch = (rng.standard_normal((4, 3)) * scale).astype(np.float32)
        y = ours(jnp.asarray(batch))
        np.testing.assert_array_equal(np.asarray(y), theirs(torch.from_numpy(batch)).numpy())
    np.testing.assert_array_equal(np.asarray(ours.scale), theirs.scale.numpy())
    np.testing.assert_array_equal(np.asarray(ours.zero_point),
                                  theirs.zero_point.numpy().astype(ours.zero_point.dtype))
