"""jaxq.nn.quantized.reference.Conv1d/2d/3d vs torch's reference convolutions.

Channels-last inputs (torch: channels-first, transposed for the comparison). Weights are
bit-exact; the float convolution is compared with rtol/atol 1e-5 (XLA and MKL-DNN sum in
different orders).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.nn.quantized import reference as tref_modules

from jaxq.nn.layout import kernel_from_torch
from jaxq.nn.quantized import Conv2d as QuantizedConv2d
from jaxq.nn.quantized.reference import Conv1d, Conv2d, Conv3d
from tests.nn.quantized.reference._helpers import random_weight_qparams

CLASSES = {1: (Conv1d, tref_modules.Conv1d, torch.nn.Conv1d),
           2: (Conv2d, tref_modules.Conv2d, torch.nn.Conv2d),
           3: (Conv3d, tref_modules.Conv3d, torch.nn.Conv3d)}
SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 4, 4)}

# (rank, qscheme, dtype, stride, padding, dilation, groups, bias)
CASES = [
    (1, "per_channel", "qint8", 2, 1, 1, 1, True),
    (1, "per_tensor", "quint8", 1, 0, 2, 2, False),
    (2, "per_channel", "qint8", (2, 1), (1, 0), (1, 2), 2, True),
    (2, "per_channel", "quint8", 1, "same", 1, 1, False),
    (2, "float_qparams", "quint8", 2, 0, 1, 1, True),
    (3, "per_tensor", "quint8", 2, (0, 1, 1), 1, 2, True),
]

_forward = nnx.jit(lambda m, x: m(x))


def _twins(rng, rank, qscheme, dtype, stride, padding, dilation, groups, bias):
    jcls, tcls, tfloat = CLASSES[rank]
    in_channels, out_channels = 4, 6
    tconv = tfloat(in_channels, out_channels, 3, stride=stride, padding=padding,
                   dilation=dilation, groups=groups, bias=bias)
    qparams = random_weight_qparams(rng, tconv.weight.detach().numpy(), qscheme, dtype)
    n = rank
    flax_padding = padding.upper() if isinstance(padding, str) else [
        (p, p) for p in ((padding,) * n if isinstance(padding, int) else padding)]
    conv = nnx.Conv(in_channels, out_channels, (3,) * n, strides=stride,
                    padding=flax_padding, kernel_dilation=dilation,
                    feature_group_count=groups, use_bias=bias, rngs=nnx.Rngs(0))
    conv.kernel.set_value(jnp.asarray(kernel_from_torch(tconv.weight.detach().numpy())))
    if bias:
        conv.bias.set_value(jnp.asarray(tconv.bias.detach().numpy()))
    return tcls.from_float(tconv, qparams), jcls.from_float(conv, qparams)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_matches_torch(rng, case):
    rank = case[0]
    tref, ref = _twins(rng, *case)
    np.testing.assert_array_equal(np.asarray(ref.get_weight()),
                                  tref.get_weight().detach().numpy())
    np.testing.assert_array_equal(np.asarray(ref.get_quantized_weight().int_repr()),
                                  tref.get_quantized_weight().int_repr().numpy())
    assert ref._get_name() == tref._get_name()
    assert (ref.stride, ref.dilation, ref.groups) == (tref.stride, tref.dilation,
                                                      tref.groups)
    x = rng.normal(size=(2,) + SPATIAL[rank] + (4,)).astype(np.float32)
    got = np.asarray(_forward(ref, jnp.asarray(x)))
    expected = tref(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).detach().numpy()
    np.testing.assert_allclose(got, np.moveaxis(expected, 1, -1), rtol=1e-5, atol=1e-5)


def test_unbatched_input(rng):
    tref, ref = _twins(rng, *CASES[3])
    x = rng.normal(size=(7, 6, 4)).astype(np.float32)
    expected = tref(torch.from_numpy(np.moveaxis(x, -1, 0).copy())).detach().numpy()
    np.testing.assert_allclose(np.asarray(ref(jnp.asarray(x))), np.moveaxis(expected, 0, -1),
                               rtol=1e-5, atol=1e-5)


def test_from_reference_gives_torch_quantized_conv(rng):
    tref, ref = _twins(rng, *CASES[2])
    tq = torch.ao.nn.quantized.Conv2d.from_reference(tref, 0.05, 10)
    q = QuantizedConv2d.from_reference(ref, 0.05, 10)
    np.testing.assert_array_equal(np.asarray(q.weight().int_repr()),
                                  tq.weight().int_repr().numpy())
    assert (q.stride, q.dilation, q.groups) == (tq.stride, tq.dilation, tq.groups)


def test_errors():
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="groups"):
        Conv2d(3, 2, 3, groups=2)
    with pytest.raises(TypeError, match="2-d"):
        Conv2d.from_float(nnx.Conv(2, 2, (3,), rngs=nnx.Rngs(0)), None)
    with pytest.raises(ValueError, match="padding"):
        Conv1d.from_float(nnx.Conv(2, 2, (3,), padding="CIRCULAR", rngs=nnx.Rngs(0)), None)
    with pytest.raises(ValueError, match="spatial"):
        Conv2d(2, 2, 3)(jnp.ones((1, 2, 5, 5, 2)))
