"""jaxq.nn.quantized.reference.ConvTranspose1d/2d/3d vs torch's reference modules.

Weights are bit-exact; the float transposed convolution is compared with rtol/atol 1e-5
(XLA and MKL-DNN sum in different orders). Channels-last here, channels-first in torch.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.ao.nn.quantized import reference as tref_modules

from jaxq.nn.layout import kernel_from_torch
from jaxq.nn.quantized.reference import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from tests.nn.quantized.reference._helpers import random_weight_qparams

CLASSES = {1: (ConvTranspose1d, tref_modules.ConvTranspose1d, torch.nn.ConvTranspose1d),
           2: (ConvTranspose2d, tref_modules.ConvTranspose2d, torch.nn.ConvTranspose2d),
           3: (ConvTranspose3d, tref_modules.ConvTranspose3d, torch.nn.ConvTranspose3d)}
SPATIAL = {1: (6,), 2: (5, 4), 3: (3, 4, 3)}

# (rank, qscheme, dtype, axis, stride, padding, output_padding, groups, dilation, bias)
CASES = [
    (1, "per_channel", "qint8", 1, 1, 0, 0, 2, 2, False),
    (2, "per_tensor", "quint8", 0, 2, 1, 1, 1, 1, True),
    (2, "per_channel", "qint8", 0, (2, 1), (1, 0), (1, 0), 2, (1, 2), True),
    (2, "per_channel", "quint8", 1, 3, 2, 0, 1, 1, True),
    (3, "per_tensor", "qint8", 0, 2, 1, 0, 1, 1, True),
]

_forward = nnx.jit(lambda m, x: m(x))


def _torch_ref(rng, rank, qscheme, dtype, axis, stride, padding, output_padding, groups,
               dilation, bias):
    _, tcls, tfloat = CLASSES[rank]
    tconv = tfloat(4, 6, 3, stride=stride, padding=padding, output_padding=output_padding,
                   groups=groups, bias=bias, dilation=dilation)
    qparams = random_weight_qparams(rng, tconv.weight.detach().numpy(), qscheme, dtype,
                                    axis)
    return tconv, tcls.from_float(tconv, qparams), qparams


def _compare(rng, tref, ref, rank):
    np.testing.assert_array_equal(np.asarray(ref.get_weight()),
                                  tref.get_weight().detach().numpy())
    np.testing.assert_array_equal(np.asarray(ref.get_quantized_weight().int_repr()),
                                  tref.get_quantized_weight().int_repr().numpy())
    x = rng.normal(size=(2,) + SPATIAL[rank] + (4,)).astype(np.float32)
    got = np.asarray(_forward(ref, jnp.asarray(x)))
    expected = tref(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).detach().numpy()
    np.testing.assert_allclose(got, np.moveaxis(expected, 1, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_matches_torch(rng, case):
    rank, *_, stride, padding, output_padding, groups, dilation, bias = case
    tconv, tref, qparams = _torch_ref(rng, *case)
    ref = CLASSES[rank][0](4, 6, 3, stride, padding, output_padding, groups, bias,
                           dilation, weight_qparams=qparams)
    ref.kernel.set_value(jnp.asarray(kernel_from_torch(tconv.weight.detach().numpy())))
    if bias:
        ref.bias.set_value(jnp.asarray(tconv.bias.detach().numpy()))
    assert ref._get_name() == tref._get_name()
    assert (ref.stride, ref.padding, ref.output_padding, ref.dilation, ref.groups) == (
        tref.stride, tref.padding, tref.output_padding, tref.dilation, tref.groups)
    _compare(rng, tref, ref, rank)


@pytest.mark.parametrize("transpose_kernel", [False])  # True: tests/eager
def test_from_float_flax_conv_transpose(rng, transpose_kernel):
    k, s, p, op, d = 3, 2, 1, 1, 1
    tconv, tref, qparams = _torch_ref(rng, 2, "per_channel", "qint8", 0, s, p, op, 1, d,
                                      True)
    reach = d * (k - 1)
    conv = nnx.ConvTranspose(4, 6, (k, k), strides=s,
                             padding=((reach - p, reach - p + op),) * 2,
                             kernel_dilation=d, transpose_kernel=transpose_kernel,
                             rngs=nnx.Rngs(0))
    w = tconv.weight.detach().numpy()
    kernel = (w.transpose(2, 3, 1, 0) if transpose_kernel
              else np.flip(w, axis=(2, 3)).transpose(2, 3, 0, 1))
    conv.kernel.set_value(jnp.asarray(np.ascontiguousarray(kernel)))
    conv.bias.set_value(jnp.asarray(tconv.bias.detach().numpy()))
    ref = ConvTranspose2d.from_float(conv, qparams)
    assert (ref.padding, ref.output_padding) == (tref.padding, tref.output_padding)
    _compare(rng, tref, ref, 2)


def test_errors():
    with pytest.raises(ValueError, match="output padding"):
        ConvTranspose2d(2, 2, 3, stride=1, output_padding=1)
    with pytest.raises(ValueError, match="output_size"):
        ConvTranspose1d(2, 2, 3)(jnp.ones((1, 4, 2)), output_size=[6])
    with pytest.raises(TypeError, match="nnx.ConvTranspose"):
        ConvTranspose2d.from_float(nnx.Conv(2, 2, (3, 3), rngs=nnx.Rngs(0)), None)
    with pytest.raises(ValueError, match="padding_mode"):
        ConvTranspose2d(2, 2, 3, padding_mode="circular")
