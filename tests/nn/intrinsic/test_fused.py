"""jaxq.nn.intrinsic fused containers: torch's type checks with Flax modules, and the
same float outputs as torch's containers on identical weights."""

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.nn.intrinsic as tnni
from flax import nnx

from jaxq import nn as jnn
from jaxq.nn import intrinsic as nni
from tests.nn.qat._torch_ref import from_nchw, jit_apply, t, to_nchw, torch_weight

RNGS = nnx.Rngs(0)


def _conv(rank, cin=3, cout=4):
    return nnx.Conv(cin, cout, (3,) * rank, padding=1, rngs=RNGS)


def _bn(features=4):
    return nnx.BatchNorm(features, rngs=RNGS)


CONSTRUCTORS = [
    (nni.ConvReLU1d, lambda: (_conv(1), jnn.ReLU())),
    (nni.ConvReLU2d, lambda: (_conv(2), jnn.ReLU())),
    (nni.ConvReLU3d, lambda: (_conv(3), jnn.ReLU())),
    (nni.LinearReLU, lambda: (nnx.Linear(3, 4, rngs=RNGS), jnn.ReLU())),
    (nni.ConvBn1d, lambda: (_conv(1), _bn())),
    (nni.ConvBn2d, lambda: (_conv(2), _bn())),
    (nni.ConvBn3d, lambda: (_conv(3), _bn())),
    (nni.ConvBnReLU1d, lambda: (_conv(1), _bn(), jnn.ReLU())),
    (nni.ConvBnReLU2d, lambda: (_conv(2), _bn(), jnn.ReLU())),
    (nni.ConvBnReLU3d, lambda: (_conv(3), _bn(), jnn.ReLU())),
    (nni.BNReLU2d, lambda: (_bn(), jnn.ReLU())),
    (nni.BNReLU3d, lambda: (_bn(), jnn.ReLU())),
    (nni.LinearBn1d, lambda: (nnx.Linear(3, 4, rngs=RNGS), _bn())),
    (nni.LinearLeakyReLU, lambda: (nnx.Linear(3, 4, rngs=RNGS), jnn.LeakyReLU(0.2))),
    (nni.LinearTanh, lambda: (nnx.Linear(3, 4, rngs=RNGS), jnn.Tanh())),
]


@pytest.mark.parametrize("cls,children", CONSTRUCTORS, ids=lambda v: getattr(v, "__name__", ""))
def test_construct_index_and_reject_wrong_types(cls, children):
    modules = children()
    fused = cls(*modules)
    assert isinstance(fused, nni._FusedModule) and len(fused) == len(modules)
    assert all(fused[i] is m for i, m in enumerate(modules))
    assert list(fused) == list(modules)
    # Any other child type (or order) is rejected, naming the types.
    wrong = list(modules)
    wrong[0] = jnn.Sigmoid()
    with pytest.raises(TypeError, match=f"Incorrect types for input modules of {cls.__name__}"):
        cls(*wrong)
    with pytest.raises(TypeError, match="Incorrect types"):
        cls(*modules[::-1])


def test_conv_rank_and_exact_types_are_checked():
    with pytest.raises(TypeError, match=r"Conv1d \(nnx.Conv\), ReLU; expected Conv2d"):
        nni.ConvReLU2d(_conv(1), jnn.ReLU())
    with pytest.raises(TypeError, match="ConvTranspose"):
        nni.ConvReLU2d(nnx.ConvTranspose(3, 4, (3, 3), rngs=RNGS), jnn.ReLU())
    with pytest.raises(TypeError, match="LayerNorm"):
        nni.ConvBn2d(_conv(2), nnx.LayerNorm(4, rngs=RNGS))
    with pytest.raises(TypeError, match="ReLU6"):
        nni.LinearReLU(nnx.Linear(3, 4, rngs=RNGS), jnn.ReLU6())
    with pytest.raises(ValueError, match="num_features=5"):
        nni.ConvBn2d(_conv(2), _bn(5))
    # jax.nn.relu (the function) stands for torch's nn.ReLU.
    fused = nni.ConvReLU2d(_conv(2), jax.nn.relu)
    assert type(fused[1]) is jnn.ReLU
    with pytest.raises(TypeError, match="add"):
        nni.ConvAdd2d(_conv(2), "add")
    with pytest.raises(TypeError, match="relu must be"):
        nni.ConvAddReLU2d(_conv(2), operator.add, jnn.ReLU6())


def test_conv_bn_relu_matches_torch_train_and_eval(rng):
    conv, bn = _conv(2), _bn()
    bn.scale.set_value(jnp.linspace(0.5, 1.5, 4))
    fused = nni.ConvBnReLU2d(conv, bn, jnn.ReLU())
    tconv = torch.nn.Conv2d(3, 4, 3, padding=1)
    tbn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        tconv.weight.copy_(torch_weight(conv.kernel[...]))
        tconv.bias.copy_(t(conv.bias[...]))
        tbn.weight.copy_(t(bn.scale[...]))
    tfused = tnni.ConvBnReLU2d(tconv, tbn, torch.nn.ReLU())
    x = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)
    # Eval first (running statistics as initialized), then training mode (batch
    # statistics; nnx.BatchNorm's running-stat update is Flax's own, not compared).
    for mode in ("eval", "train"):
        getattr(fused, mode)()
        tfused.train(mode == "train")
        with torch.no_grad():
            np.testing.assert_allclose(jit_apply(fused, jnp.asarray(x)),
                                       from_nchw(tfused(to_nchw(x))), rtol=2e-5,
                                       atol=2e-5, err_msg=mode)


def test_conv_add_and_conv_add_relu(rng):
    conv = _conv(2)
    x1 = jnp.asarray(rng.normal(size=(1, 4, 4, 3)).astype(np.float32))
    x2 = jnp.asarray(rng.normal(size=(1, 4, 4, 4)).astype(np.float32))
    add = nni.ConvAdd2d(conv, jnp.add)
    np.testing.assert_array_equal(add(x1, x2), conv(x1) + x2)
    add_relu = nni.ConvAddReLU2d(conv, operator.add, jnn.ReLU())
    np.testing.assert_array_equal(add_relu(x1, x2), jax.nn.relu(conv(x1) + x2))
    assert len(add_relu) == 1 and add_relu[0] is conv
