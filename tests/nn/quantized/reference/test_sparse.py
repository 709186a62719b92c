"""jaxq.nn.quantized.reference.Embedding / EmbeddingBag vs torch's reference modules.

The lookup is a gather of the quantize-dequantized table, so Embedding is bit-exact; the
bag reductions are compared with rtol/atol 1e-6 (summation order).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx
from torch.ao.nn.quantized.reference import Embedding as TorchRefEmbedding
from torch.ao.nn.quantized.reference import EmbeddingBag as TorchRefEmbeddingBag
from torch.ao.quantization.utils import get_qparam_dict

from jaxq.nn.quantized import Embedding as QuantizedEmbedding
from jaxq.nn.quantized.reference import Embedding, EmbeddingBag
from tests.nn.quantized.reference._helpers import random_weight_qparams

OBSERVERS = {"float_qparams_quint8": tq.default_float_qparams_observer,
             "float_qparams_quint4x2": tq.default_float_qparams_observer_4bit}

_forward = nnx.jit(lambda m, x: m(x))
_bag_forward = nnx.jit(lambda m, x, offsets, weights: m(x, offsets, weights))


def _qparams(rng, table, kind):
    if kind in OBSERVERS:
        observer = OBSERVERS[kind]()
        observer(torch.from_numpy(table))
        return get_qparam_dict(observer)
    qscheme, dtype = kind.split("-")
    return random_weight_qparams(rng, table, qscheme, dtype, axis=0)


@pytest.mark.parametrize("kind", ["float_qparams_quint8", "float_qparams_quint4x2",
                                  "per_tensor-quint8", "per_channel-qint8"])
def test_matches_torch(rng, kind):
    table = rng.normal(size=(12, 6)).astype(np.float32)
    qparams = _qparams(rng, table, kind)
    tembedding = torch.nn.Embedding(12, 6, padding_idx=3, _weight=torch.from_numpy(table))
    tref = TorchRefEmbedding.from_float(tembedding, qparams)
    embed = nnx.Embed(12, 6, rngs=nnx.Rngs(0))
    embed.embedding.set_value(jnp.asarray(table))
    ref = Embedding.from_float(embed, qparams)
    np.testing.assert_array_equal(np.asarray(ref.get_weight()),
                                  tref.get_weight().detach().numpy())
    np.testing.assert_array_equal(np.asarray(ref.get_quantized_weight().int_repr()),
                                  tref.get_quantized_weight().int_repr().numpy())
    indices = rng.integers(0, 12, size=(3, 4))
    np.testing.assert_array_equal(np.asarray(_forward(ref, jnp.asarray(indices))),
                                  tref(torch.from_numpy(indices)).detach().numpy())
    assert ref._get_name() == tref._get_name()
    if kind.startswith("float_qparams"):
        tq_embedding = torch.ao.nn.quantized.Embedding.from_reference(tref)
        q_embedding = QuantizedEmbedding.from_reference(ref)
        np.testing.assert_array_equal(np.asarray(q_embedding(jnp.asarray(indices))),
                                      tq_embedding(torch.from_numpy(indices)).numpy())


def test_constructor_like_torch(rng):
    table = rng.normal(size=(5, 3)).astype(np.float32)
    tref = TorchRefEmbedding(5, 3, _weight=torch.from_numpy(table))
    ref = Embedding(5, 3, _weight=jnp.asarray(table))
    np.testing.assert_array_equal(np.asarray(ref.get_weight()),
                                  tref.get_weight().detach().numpy())
    assert float(Embedding(5, 3, padding_idx=-1).weight[4].sum()) == 0.0
    assert float(TorchRefEmbedding(5, 3, padding_idx=-1).weight[4].sum()) == 0.0


def test_errors():
    with pytest.raises(ValueError, match="max_norm"):
        Embedding(5, 3, max_norm=1.0)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(5, 3, padding_idx=5)
    with pytest.raises(TypeError, match="integer indices"):
        Embedding(5, 3)(jnp.ones((2,)))
    with pytest.raises(TypeError, match="nnx.Embed"):
        Embedding.from_float(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), None)


# (mode, 2-d input, include_last_offset, per_sample_weights, padding_idx)
BAG_CASES = [("sum", False, False, False, None), ("mean", False, True, False, 2),
             ("max", False, False, False, None), ("sum", True, False, True, None),
             ("mean", True, False, False, None), ("max", False, True, False, 4),
             ("sum", False, False, True, 1)]


@pytest.mark.parametrize("case", BAG_CASES, ids=lambda c: "-".join(map(str, c)))
def test_embedding_bag_matches_torch(rng, case):
    mode, two_d, include_last_offset, weighted, padding_idx = case
    table = rng.normal(size=(12, 5)).astype(np.float32)
    qparams = _qparams(rng, table, "float_qparams_quint8")
    tbag = torch.nn.EmbeddingBag(12, 5, mode=mode, _weight=torch.from_numpy(table),
                                 include_last_offset=include_last_offset,
                                 padding_idx=padding_idx)
    tref = TorchRefEmbeddingBag.from_float(tbag, qparams)
    ref = EmbeddingBag(12, 5, mode=mode, _weight=jnp.asarray(table),
                       include_last_offset=include_last_offset, padding_idx=padding_idx,
                       weight_qparams=qparams)
    if two_d:
        indices, offsets = rng.integers(0, 12, size=(3, 4)), None
    else:
        indices = rng.integers(0, 12, size=(9,))
        indices[:3] = [1, 2, 4]  # hits padding_idx in some cases
        offsets = np.array([0, 3, 3, 7] + ([9] if include_last_offset else []))
    weights = rng.uniform(0.5, 2, size=indices.shape).astype(np.float32) if weighted \
        else None
    expected = tref(torch.from_numpy(indices),
                    None if offsets is None else torch.from_numpy(offsets),
                    None if weights is None else torch.from_numpy(weights))
    got = _bag_forward(ref, jnp.asarray(indices),
                       None if offsets is None else jnp.asarray(offsets),
                       None if weights is None else jnp.asarray(weights))
    np.testing.assert_array_equal(np.asarray(ref.get_weight()),
                                  tref.get_weight().detach().numpy())
    np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), rtol=1e-6,
                               atol=1e-6)
    assert ref._get_name() == tref._get_name()


def test_embedding_bag_errors():
    bag = EmbeddingBag(5, 3, mode="max")
    with pytest.raises(ValueError, match="per_sample_weights"):
        bag(jnp.array([[1, 2]]), None, jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="mode"):
        EmbeddingBag(5, 3, mode="median")
    with pytest.raises(ValueError, match="offsets"):
        bag(jnp.array([1, 2]))
