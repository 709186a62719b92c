"""jaxq.nn.quantized.Embedding / EmbeddingBag vs torch.ao.nn.quantized (bit-exact lookups)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq
import jaxq.qconfig as jqconfig
import torch.ao.quantization as tq
from jaxq.nn.quantized._utils import QuantizedState
from jaxq.nn.quantized.embedding import (
    Embedding, EmbeddingBag, packed_scale_bias, quantized_embedding, quantized_embedding_bag)
from torch.ao.nn import quantized as tnnq
from tests._tracing import counting_jit

warnings.filterwarnings("ignore", category=UserWarning, module="torch")

DTYPES = {"quint8": (torch.quint8, jaxq.quint8), "quint4x2": (torch.quint4x2, jaxq.quint4x2)}


def _tables(rng, num_embeddings, embedding_dim, dtype_name, spread=3.0):
    """The same per-row quantized table in torch and jaxq (torch's observer qparams)."""
    tdtype, jdtype = DTYPES[dtype_name]
    table = (rng.normal(size=(num_embeddings, embedding_dim)) * spread).astype(np.float32)
    obs = tq.PerChannelMinMaxObserver(dtype=tdtype, ch_axis=0,
                                      qscheme=torch.per_channel_affine_float_qparams)
    obs(torch.tensor(table))
    scale, zero_point = obs.calculate_qparams()
    tweight = torch.quantize_per_channel(torch.tensor(table), scale.float(),
                                         zero_point.float(), 0, tdtype)
    jweight = jaxq.quantize_per_channel(jnp.asarray(table), jnp.asarray(scale.numpy()),
                                        jnp.asarray(zero_point.numpy()), 0, jdtype)
    return tweight, jweight


def _torch_values(tweight):
    """Unpacked integer values of a torch per-row QTensor (quint4x2 packed flat)."""
    raw = tweight.int_repr().numpy()
    if tweight.dtype == torch.quint4x2:
        return np.stack([raw & 15, raw >> 4], -1).reshape(tweight.shape)
    return raw


def _torch_modules(tweight, include_last_offset=False):
    num_embeddings, embedding_dim = tweight.shape
    emb = tnnq.Embedding(num_embeddings, embedding_dim, dtype=tweight.dtype)
    emb.set_weight(tweight)
    bag = tnnq.EmbeddingBag(num_embeddings, embedding_dim, dtype=tweight.dtype,
                            include_last_offset=include_last_offset)
    bag.set_weight(tweight)
    return emb, bag


def _bag_case(rng, num_embeddings, num_indices, num_bags):
    indices = rng.integers(0, num_embeddings, size=num_indices)
    cuts = np.sort(rng.integers(0, num_indices + 1, size=num_bags - 1))
    offsets = np.concatenate([[0], cuts])  # repeated cuts give empty bags
    return indices, offsets


def _t(values, dtype=torch.long):
    return torch.tensor(np.asarray(values), dtype=dtype)


def test_weight_quantization_matches_torch(rng):
    for name in DTYPES:
        tweight, jweight = _tables(rng, 9, 6, name)
        np.testing.assert_array_equal(np.asarray(jweight.int_values()), _torch_values(tweight))


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("shape", [(13,), (3, 5), (1,), (0,)])
def test_embedding_vs_torch(rng, dtype_name, shape):
    tweight, jweight = _tables(rng, 20, 8, dtype_name)
    temb, _ = _torch_modules(tweight)
    indices = rng.integers(0, 20, size=shape)
    mod = Embedding(20, 8, dtype=DTYPES[dtype_name][1])
    mod.set_weight(jweight)
    out = mod(jnp.asarray(indices, jnp.int32))
    expected = temb(_t(indices)).numpy()
    assert out.shape == expected.shape and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), expected)


def test_lookup_is_not_dequantize(rng):
    """torch's lookup uses prepacked fp32 (quint8) / fp16 (quint4x2) scale and bias, not
    (q - zp) * s: the test would not catch a dequantize-based implementation otherwise."""
    for name in DTYPES:
        tweight, jweight = _tables(rng, 40, 16, name)
        temb, _ = _torch_modules(tweight)
        indices = np.arange(40)
        expected = temb(_t(indices)).numpy()
        assert not np.array_equal(np.asarray(jweight.dequantize()), expected)
        np.testing.assert_array_equal(np.asarray(quantized_embedding(jweight, indices)),
                                      expected)


def test_packed_scale_bias(rng):
    for name in DTYPES:
        tweight, jweight = _tables(rng, 7, 4, name)
        scale, bias = packed_scale_bias(jweight)
        t_scale = tweight.q_per_channel_scales().float()
        t_bias = tweight.q_per_channel_zero_points().float() * t_scale * -1
        if name == "quint4x2":
            t_scale, t_bias = t_scale.half().float(), t_bias.half().float()
        np.testing.assert_array_equal(np.asarray(scale), t_scale.numpy())
        np.testing.assert_array_equal(np.asarray(bias), t_bias.numpy())


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("num_indices,num_bags", [(30, 6), (12, 1), (0, 3)])
def test_bag_vs_torch(rng, dtype_name, weighted, num_indices, num_bags):
    tweight, jweight = _tables(rng, 25, 10, dtype_name)
    _, tbag = _torch_modules(tweight)
    indices, offsets = _bag_case(rng, 25, num_indices, num_bags)
    weights = rng.random(num_indices).astype(np.float32) * 3 if weighted else None
    mod = EmbeddingBag(25, 10, dtype=DTYPES[dtype_name][1])
    mod.set_weight(jweight)
    out = mod(indices, offsets, per_sample_weights=weights)
    expected = tbag(_t(indices), _t(offsets),
                    per_sample_weights=None if weights is None else torch.tensor(weights))
    np.testing.assert_array_equal(np.asarray(out), expected.numpy())


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_bag_include_last_offset(rng, dtype_name):
    tweight, jweight = _tables(rng, 15, 6, dtype_name)
    _, tbag = _torch_modules(tweight, include_last_offset=True)
    indices, offsets = _bag_case(rng, 15, 20, 5)
    offsets = np.concatenate([offsets, [20]])
    mod = EmbeddingBag(15, 6, include_last_offset=True, dtype=DTYPES[dtype_name][1])
    mod.set_weight(jweight)
    weights = rng.random(20).astype(np.float32)
    for psw in (None, weights):
        expected = tbag(_t(indices), _t(offsets),
                        per_sample_weights=None if psw is None else torch.tensor(psw))
        np.testing.assert_array_equal(np.asarray(mod(indices, offsets, psw)),
                                      expected.numpy())
    # A last offset below len(indices) leaves the tail unused (torch's quint8 op and
    # float EmbeddingBag; torch's quint4x2 op raises): same as dropping the tail.
    short = offsets.copy()
    short[-1] = 17
    short[:-1] = np.minimum(short[:-1], 17)
    expected = tbag(_t(indices[:17]), _t(short))
    np.testing.assert_array_equal(np.asarray(mod(indices, short)), expected.numpy())
    # One offset: zero bags.
    assert mod(indices, np.array([0])).shape == (0, 6)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_bag_2d_indices(rng, dtype_name):
    tweight, jweight = _tables(rng, 12, 4, dtype_name)
    _, tbag = _torch_modules(tweight)
    indices = rng.integers(0, 12, size=(4, 3))
    weights = rng.random((4, 3)).astype(np.float32)
    mod = EmbeddingBag(12, 4, dtype=DTYPES[dtype_name][1])
    mod.set_weight(jweight)
    expected = tbag(_t(indices), per_sample_weights=torch.tensor(weights))
    np.testing.assert_array_equal(np.asarray(mod(indices, per_sample_weights=weights)),
                                  expected.numpy())
    # B bags also with include_last_offset (torch's float EmbeddingBag).
    ilo = EmbeddingBag(12, 4, include_last_offset=True, dtype=DTYPES[dtype_name][1])
    ilo.set_weight(jweight)
    np.testing.assert_array_equal(np.asarray(ilo(indices)), np.asarray(mod(indices)))


def test_bag_first_offset_must_be_zero(rng):
    """torch's float EmbeddingBag requires offsets[0] == 0; its quantized ops accept
    other values but disagree (quint8 skips the leading indices, quint4x2 shifts the
    offsets), so jaxq raises (NaN bags under jit)."""
    _, jweight = _tables(rng, 10, 4, "quint8")
    indices, offsets = np.array([1, 2, 3, 4, 5]), np.array([2, 3])
    with pytest.raises(ValueError, match=r"offsets\[0\] must be 0"):
        quantized_embedding_bag(jweight, indices, offsets)
    traced = jax.jit(lambda i, o: quantized_embedding_bag(jweight, i, o))
    assert np.isnan(np.asarray(traced(jnp.asarray(indices), jnp.asarray(offsets)))).all()
    with pytest.raises(RuntimeError, match=r"offsets\[0\] has to be 0"):
        torch.nn.EmbeddingBag(10, 4)(_t(indices), _t(offsets))


def test_bag_int32_and_float16_weights(rng):
    tweight, jweight = _tables(rng, 10, 4, "quint4x2")
    _, tbag = _torch_modules(tweight)
    indices, offsets = np.array([1, 2, 3, 4], np.int32), np.array([0, 1], np.int32)
    weights = rng.random(4).astype(np.float16)
    expected = tbag(_t(indices, torch.int32), _t(offsets, torch.int32),
                    per_sample_weights=torch.tensor(weights))
    out = quantized_embedding_bag(jweight, jnp.asarray(indices), jnp.asarray(offsets),
                                  jnp.asarray(weights))
    np.testing.assert_array_equal(np.asarray(out), expected.numpy())


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_bag_padding_idx(rng, dtype_name):
    """jaxq extension: entries equal to padding_idx are left out (torch's float
    EmbeddingBag meaning); checked against torch's op on the filtered input."""
    tweight, jweight = _tables(rng, 10, 4, dtype_name)
    _, tbag = _torch_modules(tweight)
    indices = np.array([3, 1, 3, 3, 2, 3, 5])
    offsets = np.array([0, 2, 4])
    weights = rng.random(7).astype(np.float32)
    keep = indices != 3
    kept_offsets = np.array([keep[:o].sum() for o in offsets])
    expected = tbag(_t(indices[keep]), _t(kept_offsets),
                    per_sample_weights=torch.tensor(weights[keep]))
    mod = EmbeddingBag(10, 4, dtype=DTYPES[dtype_name][1], padding_idx=-7)
    mod.set_weight(jweight)
    assert mod.padding_idx == 3
    np.testing.assert_array_equal(np.asarray(mod(indices, offsets, weights)),
                                  expected.numpy())


def test_embedding_padding_idx_from_float(rng):
    """Embedding's padding_idx does not change lookups (torch, float and quantized); the
    zero padding row of a float table quantizes to an exact zero row."""
    table = rng.normal(size=(8, 6)).astype(np.float32)
    table[2] = 0.0
    tfloat = torch.nn.Embedding(8, 6, padding_idx=2)
    with torch.no_grad():
        tfloat.weight.copy_(torch.tensor(table))
    tfloat.qconfig = tq.float_qparams_weight_only_qconfig
    tmod = tnnq.Embedding.from_float(tfloat)
    jfloat = nnx.Embed(8, 6, rngs=nnx.Rngs(0))
    jfloat.embedding.set_value(jnp.asarray(table))
    jfloat.qconfig = jqconfig.float_qparams_weight_only_qconfig
    jmod = Embedding.from_float(jfloat)
    indices = np.array([2, 0, 2, 7])
    out = np.asarray(jmod(indices))
    np.testing.assert_array_equal(out, tmod(_t(indices)).numpy())
    assert not out[0].any() and not out[2].any()
    assert Embedding(8, 6, padding_idx=-1).padding_idx == 7


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_from_float_vs_torch(rng, dtype_name):
    table = (rng.normal(size=(11, 8)) * 2).astype(np.float32)
    qconfig_name = ("float_qparams_weight_only_qconfig" if dtype_name == "quint8" else
                    "float_qparams_weight_only_qconfig_4bit")
    # torch's Embedding.from_float is broken for quint4x2 (it builds a quint8 module);
    # its EmbeddingBag.from_float is not.
    tfloat = torch.nn.EmbeddingBag(11, 8, mode="sum")
    with torch.no_grad():
        tfloat.weight.copy_(torch.tensor(table))
    tfloat.qconfig = getattr(tq, qconfig_name)
    tbag = tnnq.EmbeddingBag.from_float(tfloat)
    jfloat = nnx.Embed(11, 8, rngs=nnx.Rngs(0))
    jfloat.embedding.set_value(jnp.asarray(table))
    jfloat.qconfig = getattr(jqconfig, qconfig_name)
    jemb = Embedding.from_float(jfloat)
    jbag = EmbeddingBag.from_float(jfloat)
    tw, jw = tbag.weight(), jemb.weight()
    assert jw.dtype is DTYPES[dtype_name][1]
    assert jw.qscheme() is jaxq.per_channel_affine_float_qparams
    np.testing.assert_array_equal(np.asarray(jw.int_values()), _torch_values(tw))
    np.testing.assert_array_equal(np.asarray(jw.q_per_channel_scales()),
                                  tw.q_per_channel_scales().float().numpy())
    np.testing.assert_array_equal(np.asarray(jw.q_per_channel_zero_points()),
                                  tw.q_per_channel_zero_points().float().numpy())
    indices, offsets = np.array([1, 4, 10, 0, 3]), np.array([0, 2, 2])
    np.testing.assert_array_equal(np.asarray(jbag(indices, offsets)),
                                  tbag(_t(indices), _t(offsets)).numpy())
    if dtype_name == "quint8":
        tfloat_emb = torch.nn.Embedding(11, 8)
        with torch.no_grad():
            tfloat_emb.weight.copy_(torch.tensor(table))
        tfloat_emb.qconfig = tq.float_qparams_weight_only_qconfig
        np.testing.assert_array_equal(
            np.asarray(jemb(indices)),
            tnnq.Embedding.from_float(tfloat_emb)(_t(indices)).numpy())


def test_from_float_custom_range_and_default_qconfig(rng):
    table = rng.normal(size=(5, 4)).astype(np.float32)
    tobs = tq.PerChannelMinMaxObserver.with_args(
        dtype=torch.quint8, qscheme=torch.per_channel_affine_float_qparams, quant_min=0,
        quant_max=100)
    jobs = jaxq.observer.PerChannelMinMaxObserver.with_args(
        dtype=jaxq.quint8, qscheme=jaxq.per_channel_affine_float_qparams, quant_min=0,
        quant_max=100)
    tfloat = torch.nn.Embedding(5, 4)
    with torch.no_grad():
        tfloat.weight.copy_(torch.tensor(table))
    tfloat.qconfig = tq.QConfig(activation=tq.PlaceholderObserver, weight=tobs)
    jfloat = nnx.Embed(5, 4, rngs=nnx.Rngs(0))
    jfloat.embedding.set_value(jnp.asarray(table))
    jfloat.qconfig = jqconfig.QConfig(activation=jaxq.observer.PlaceholderObserver,
                                      weight=jobs)
    np.testing.assert_array_equal(
        np.asarray(Embedding.from_float(jfloat).weight().int_values()),
        tnnq.Embedding.from_float(tfloat).weight().int_repr().numpy())
    # qconfig=None: float_qparams_weight_only_qconfig's observer, as torch.
    jfloat.qconfig = None
    tfloat.qconfig = None
    np.testing.assert_array_equal(
        np.asarray(Embedding.from_float(jfloat).weight().int_values()),
        tnnq.Embedding.from_float(tfloat).weight().int_repr().numpy())


def test_from_float_errors(rng):
    with pytest.raises(TypeError, match="nnx.Embed"):
        Embedding.from_float(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    emb = nnx.Embed(4, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="qconfig"):
        Embedding.from_float(emb)
    emb.qconfig = jqconfig.default_qconfig
    with pytest.raises(ValueError, match="float_qparams_weight_only_qconfig"):
        Embedding.from_float(emb)
    emb = nnx.Embed(4, 3, rngs=nnx.Rngs(0))
    emb.qconfig = jqconfig.float_qparams_weight_only_qconfig_4bit
    with pytest.raises(ValueError, match="embedding_dim=3 must be even"):
        EmbeddingBag.from_float(emb)


def test_from_reference(rng):
    _, jweight = _tables(rng, 6, 4, "quint4x2")

    class Ref:
        num_embeddings, embedding_dim, padding_idx = 6, 4, None
        weight_dtype = jaxq.quint4x2
        mode, include_last_offset = "sum", True

        def get_quantized_weight(self):
            return jweight

    emb, bag = Embedding.from_reference(Ref()), EmbeddingBag.from_reference(Ref())
    assert bag.include_last_offset and emb.weight().dtype is jaxq.quint4x2
    np.testing.assert_array_equal(np.asarray(emb.weight().int_values()),
                                  np.asarray(jweight.int_values()))
    np.testing.assert_array_equal(
        np.asarray(bag(np.array([1, 2]), np.array([0, 1, 2]))),
        np.asarray(quantized_embedding(jweight, np.array([1, 2]))))


def test_jit_no_recompile_vmap(rng):
    for name in DTYPES:
        tweight, jweight = _tables(rng, 16, 8, name)
        temb, tbag = _torch_modules(tweight)
        bag_fn = counting_jit(lambda w, i, o, p: quantized_embedding_bag(w, i, o, p))
        emb_fn = counting_jit(lambda w, i: quantized_embedding(w, i))
        for _ in range(2):
            indices, offsets = _bag_case(rng, 16, 9, 4)
            weights = rng.random(9).astype(np.float32)
            out = bag_fn(jweight, jnp.asarray(indices, jnp.int32),
                         jnp.asarray(offsets, jnp.int32), jnp.asarray(weights))
            np.testing.assert_array_equal(
                np.asarray(out),
                tbag(_t(indices), _t(offsets), per_sample_weights=torch.tensor(weights)))
            np.testing.assert_array_equal(np.asarray(emb_fn(jweight, jnp.asarray(indices))),
                                          temb(_t(indices)).numpy())
        assert bag_fn.traces == 1 and emb_fn.traces == 1
        batch = rng.integers(0, 16, size=(3, 2, 4))
        mapped = jax.vmap(lambda i: quantized_embedding_bag(jweight, i))(jnp.asarray(batch))
        for b in range(3):
            np.testing.assert_array_equal(np.asarray(mapped[b]), tbag(_t(batch[b])).numpy())


def test_module_under_nnx_jit_and_state(rng):
    _, jweight = _tables(rng, 10, 4, "quint8")
    mod = EmbeddingBag(10, 4)
    mod.set_weight(jweight)
    state = nnx.state(mod, QuantizedState)
    assert len(jax.tree_util.tree_leaves(state)) == 3
    assert not jax.tree_util.tree_leaves(nnx.state(mod, nnx.Param))
    call = nnx.jit(lambda m, i, o: m(i, o))
    indices, offsets = jnp.array([1, 2, 3]), jnp.array([0, 1])
    np.testing.assert_array_equal(np.asarray(call(mod, indices, offsets)),
                                  np.asarray(mod(indices, offsets)))


def test_traced_bad_input_gives_nan(rng):
    """Under jit values cannot be checked: bad bags / rows become NaN, never an
    out-of-bounds read."""
    _, jweight = _tables(rng, 6, 4, "quint4x2")
    bag = jax.jit(lambda i, o: quantized_embedding_bag(jweight, i, o))
    out = np.asarray(bag(jnp.array([1, 6, 2, -1]), jnp.array([0, 1, 2, 3])))
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    assert np.isfinite(out[2]).all() and np.isnan(out[3]).all()
    out = np.asarray(bag(jnp.array([1, 2, 3, 4]), jnp.array([0, 3, 1, 9])))
    assert np.isnan(out[1]).all() and np.isnan(out[3]).all() and np.isfinite(out[0]).all()
    emb = np.asarray(jax.jit(quantized_embedding)(jweight, jnp.array([0, 7])))
    assert np.isfinite(emb[0]).all() and np.isnan(emb[1]).all()


def test_errors(rng):
    _, jweight = _tables(rng, 6, 4, "quint8")
    bag = EmbeddingBag(6, 4)
    bag.set_weight(jweight)
    idx = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="indices must lie in"):
        bag(np.array([1, 6]), np.array([0]))
    with pytest.raises(ValueError, match="indices must lie in"):
        bag(np.array([1, -1]), np.array([0]))
    with pytest.raises(ValueError, match="indices must lie in"):
        Embedding(6, 4)(np.array([6]))
    with pytest.raises(TypeError, match="indices must be an int32 or int64"):
        bag(np.array([1.0, 2.0]), np.array([0]))
    with pytest.raises(TypeError, match="offsets must be an int32 or int64"):
        bag(idx, np.array([0.0]))
    with pytest.raises(ValueError, match="non-decreasing"):
        bag(idx, np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="must not exceed"):
        bag(idx, np.array([0, 5]))
    with pytest.raises(ValueError, match="offsets is required"):
        bag(idx)
    with pytest.raises(ValueError, match="offsets must be None"):
        bag(idx.reshape(1, 3), np.array([0]))
    with pytest.raises(ValueError, match="1-d or 2-d"):
        Embedding(6, 4)(np.array(1))
    with pytest.raises(ValueError, match="per_sample_weights must have the shape"):
        bag(idx, np.array([0]), per_sample_weights=np.ones(2, np.float32))
    with pytest.raises(TypeError, match="per_sample_weights must be float32"):
        bag(idx, np.array([0]), per_sample_weights=np.ones(3, np.float16))
    with pytest.raises(ValueError, match="compressed_indices_mapping"):
        bag(idx, np.array([0]), compressed_indices_mapping=np.arange(6))
    with pytest.raises(ValueError, match="at least one entry"):
        EmbeddingBag(6, 4, include_last_offset=True)(idx, np.array([], np.int64))
    with pytest.raises(ValueError, match="mode='mean'"):
        EmbeddingBag(6, 4, mode="mean")
    with pytest.raises(ValueError, match="embedding_dim=5 must be even"):
        Embedding(6, 5, dtype=jaxq.quint4x2)
    with pytest.raises(ValueError, match="quint8 and quint4x2"):
        Embedding(6, 4, dtype=jaxq.qint8)
    with pytest.raises(ValueError, match="max_norm"):
        Embedding(6, 4, max_norm=1.0)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(6, 4, padding_idx=6)
    with pytest.raises(ValueError, match="Shape of weight"):
        Embedding(5, 4).set_weight(jweight)
    with pytest.raises(TypeError, match="dtype quint8 but the module was built"):
        Embedding(6, 4, dtype=jaxq.quint4x2).set_weight(jweight)
    per_tensor = jaxq.quantize_per_tensor(jnp.ones((6, 4)), 0.1, 0, jaxq.quint8)
    with pytest.raises(ValueError, match="per_channel_affine_float_qparams"):
        bag.set_weight(per_tensor)
    with pytest.raises(TypeError, match="QTensor"):
        bag.set_weight(jnp.ones((6, 4)))


def test_random_stress_vs_torch(rng):
    """Wide value ranges, constant and zero rows (scale 1.0 fallback), negative
    per-sample weights; one compiled function per dtype for all rounds."""
    for name in DTYPES:
        tdtype, jdtype = DTYPES[name]
        bag_fn = counting_jit(lambda w, i, o, p: quantized_embedding_bag(w, i, o, p))
        for round_ in range(3):
            table = (rng.normal(size=(32, 12)) * 10.0 ** rng.uniform(-3, 3, (32, 1)))
            table[3] = 0.0
            table[5] = rng.normal()
            table = table.astype(np.float32)
            obs = tq.PerChannelMinMaxObserver(dtype=tdtype, ch_axis=0,
                                              qscheme=torch.per_channel_affine_float_qparams)
            obs(torch.tensor(table))
            scale, zero_point = obs.calculate_qparams()
            tweight = torch.quantize_per_channel(torch.tensor(table), scale.float(),
                                                 zero_point.float(), 0, tdtype)
            jweight = jaxq.quantize_per_channel(jnp.asarray(table),
                                                jnp.asarray(scale.numpy()),
                                                jnp.asarray(zero_point.numpy()), 0, jdtype)
            _, tbag = _torch_modules(tweight)
            indices, offsets = _bag_case(rng, 32, 64, 8)
            indices[:4] = [3, 5, 3, 5]
            weights = rng.normal(size=64).astype(np.float32) * 4
            out = bag_fn(jweight, jnp.asarray(indices, jnp.int32),
                         jnp.asarray(offsets, jnp.int32), jnp.asarray(weights))
            expected = tbag(_t(indices), _t(offsets), per_sample_weights=torch.tensor(weights))
            np.testing.assert_array_equal(np.asarray(out), expected.numpy(),
                                          err_msg=f"{name} round {round_}")
        assert bag_fn.traces == 1


def test_eager_quantize_dynamic_vs_torch(rng):
    """jaxq.quantize_dynamic(dtype=quint8) swaps nnx.Embed (the mapping is given here;
    the default mappings pick the module up once jaxq.nn.quantized exports it)."""
    table = rng.normal(size=(10, 4)).astype(np.float32)

    class Model(nnx.Module):
        def __init__(self):
            self.emb = nnx.Embed(10, 4, rngs=nnx.Rngs(0))
            self.emb.embedding.set_value(jnp.asarray(table))

    tmodel = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    with torch.no_grad():
        tmodel[0].weight.copy_(torch.tensor(table))
    tq_model = tq.quantize_dynamic(tmodel, {torch.nn.Embedding}, dtype=torch.quint8)
    jq_model = jaxq.quantize_dynamic(Model(), dtype=jaxq.quint8,
                                     mapping={nnx.Embed: Embedding})
    assert isinstance(jq_model.emb, Embedding)
    indices = np.array([0, 9, 4, 4])
    np.testing.assert_array_equal(np.asarray(jq_model.emb(indices)),
                                  tq_model[0](_t(indices)).numpy())
    bag_model = jaxq.quantize_dynamic(
        Model(), {nnx.Embed: jqconfig.float_qparams_weight_only_qconfig_4bit},
        mapping={nnx.Embed: EmbeddingBag})
    assert bag_model.emb.dtype is jaxq.quint4x2
    assert bag_model.emb(indices.reshape(2, 2)).shape == (2, 4)
