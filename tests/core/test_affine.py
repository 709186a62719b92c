"""jaxq.core.affine against torchao 0.18's quant_primitives (block-wise affine)."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import torchao.quantization.granularity as tao_granularity
from torchao.quantization import quant_primitives as tao
from torchao.quantization.utils import get_block_size as tao_get_block_size

import jaxq
from jaxq.core import affine
from tests._tracing import counting_jit

SHAPE = (4, 6, 8)
GRANULARITIES = {
    "per_tensor": (jaxq.PerTensor(), tao_granularity.PerTensor()),
    "per_axis0": (jaxq.PerAxis(0), tao_granularity.PerAxis(0)),
    "per_axis1": (jaxq.PerAxis(1), tao_granularity.PerAxis(1)),
    "per_axis2": (jaxq.PerAxis(2), tao_granularity.PerAxis(2)),
    "per_group4": (jaxq.PerGroup(4), tao_granularity.PerGroup(4)),
    "per_row": (jaxq.PerRow(), tao_granularity.PerRow()),
    "per_token": (jaxq.PerToken(), tao_granularity.PerToken()),
    "per_block": (jaxq.PerBlock((2, 4)), tao_granularity.PerBlock((2, 4))),
}
# jaxq target dtype -> torch dtype.
TARGETS = {"int8": (jaxq.int8, torch.int8), "uint8": (jaxq.uint8, torch.uint8),
           "int4": (jaxq.int4, torch.int4), "int16": (jaxq.int16, torch.int16)}
INPUT_DTYPES = {"float32": (jnp.float32, torch.float32),
                "bfloat16": (jnp.bfloat16, torch.bfloat16)}
MAPPINGS = {m.name: (m, getattr(tao.MappingType, m.name)) for m in jaxq.MappingType}
DOMAINS = {d.name: (d, getattr(tao.ZeroPointDomain, d.name)) for d in jaxq.ZeroPointDomain}


def to_torch(array):
    array = np.asarray(array)
    if array.dtype == ml_dtypes.bfloat16:
        return torch.tensor(array.astype(np.float32)).to(torch.bfloat16)
    return torch.tensor(array)


def to_numpy(tensor):
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy().astype(ml_dtypes.bfloat16)
    if tensor.dtype in (torch.int4,):
        return tensor.to(torch.int8).numpy()
    return tensor.numpy()


def assert_same(actual, expected):
    actual = np.asarray(actual)
    expected = to_numpy(expected) if isinstance(expected, torch.Tensor) else expected
    assert actual.shape == tuple(expected.shape), (actual.shape, expected.shape)
    np.testing.assert_array_equal(actual.astype(np.float32), expected.astype(np.float32))


def make_input(rng, shape, dtype, offset=0.0):
    x = (rng.normal(size=shape) * 2 + offset).astype(np.float32)
    return np.array(jnp.asarray(x, dtype))


@pytest.mark.parametrize("shape", [SHAPE, (6, 8), (8,)], ids=str)
@pytest.mark.parametrize("name", list(GRANULARITIES))
def test_get_block_size_matches_torchao(shape, name):
    jaxq_granularity, tao_gran = GRANULARITIES[name]
    if name in ("per_axis1", "per_axis2") and len(shape) < 3 or (
            name == "per_block" and len(shape) < 2):
        pytest.skip("axis/block does not exist for this rank")
    assert jaxq.get_block_size(shape, jaxq_granularity) == tuple(
        tao_get_block_size(shape, tao_gran))


def _qparams_both(x, mapping, block, target, quant_min=None, quant_max=None, keepdim=False,
                  zero_point_dtype=None):
    jaxq_mapping, tao_mapping = MAPPINGS[mapping]
    jaxq_target, torch_target = TARGETS[target]
    kwargs = {} if zero_point_dtype is None else {"zero_point_dtype": zero_point_dtype[1]}
    expected = tao.choose_qparams_affine(to_torch(x), tao_mapping, block, torch_target,
                                         quant_min, quant_max, keepdim=keepdim, **kwargs)
    kwargs = {} if zero_point_dtype is None else {"zero_point_dtype": zero_point_dtype[0]}
    actual = affine.choose_qparams_affine(x, jaxq_mapping, block, jaxq_target, quant_min,
                                          quant_max, keepdim=keepdim, **kwargs)
    return actual, expected


@pytest.mark.parametrize("input_dtype", ["float32",
                                         pytest.param("bfloat16", marks=pytest.mark.slow)])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("mapping", list(MAPPINGS))
def test_qparams_quantize_dequantize_fake_quantize_match_torchao(rng, mapping, target,
                                                                 input_dtype):
    jaxq_target, torch_target = TARGETS[target]
    dtype = INPUT_DTYPES[input_dtype][0]
    x = make_input(rng, SHAPE, dtype, offset=rng.uniform(-1, 1))
    for name, (granularity, _) in GRANULARITIES.items():
        block = jaxq.get_block_size(SHAPE, granularity)
        for keepdim in (False, True):
            (scale, zero_point), (scale_t, zero_point_t) = _qparams_both(
                x, mapping, block, target, keepdim=keepdim)
            assert scale.dtype == dtype, name
            assert_same(scale, scale_t)
            assert_same(zero_point, zero_point_t)
        qmin, qmax = jaxq_target.quant_min, jaxq_target.quant_max
        if np.asarray(zero_point).max() > qmax:
            # bfloat16 rounds int16's 32767 up to 32768: torchao's zero point leaves the
            # range (and would wrap in its cast); jaxq refuses it.
            assert (target, input_dtype, mapping) == ("int16", "bfloat16", "ASYMMETRIC")
            with pytest.raises(ValueError, match="zero_point"):
                affine.quantize_affine(x, block, scale, zero_point, jaxq_target)
            continue
        q = affine.quantize_affine(x, block, scale, zero_point, jaxq_target)
        q_t = tao._quantize_affine_no_dtype_cast(to_torch(x), block, scale_t, zero_point_t,
                                                 qmin, qmax)
        assert q.dtype == jaxq_target.storage_dtype
        # bfloat16 cannot hold 32767: torchao's bf16 clamp gives 32768, which jaxq's
        # integer cast saturates to quant_max (torch's .to(int16) would wrap).
        assert_same(q, np.clip(to_numpy(q_t).astype(np.float64), qmin, qmax))
        if target != "int4" and not (target == "int16" and input_dtype == "bfloat16"):
            assert_same(q, tao.quantize_affine(to_torch(x), block, scale_t, zero_point_t,
                                               torch_target))
        y = affine.dequantize_affine(q, block, scale, zero_point, jaxq_target,
                                     output_dtype=dtype)
        y_t = tao._dequantize_affine_no_dtype_check(to_torch(q).to(torch.int32), block,
                                                    scale_t,
                                                    zero_point_t, qmin, qmax,
                                                    output_dtype=INPUT_DTYPES[input_dtype][1])
        assert y.dtype == dtype
        assert_same(y, y_t)
        fq, mask = affine.fake_quantize_affine_cachemask(x, block, scale, zero_point,
                                                         jaxq_target)
        assert_same(fq, tao._fake_quantize_affine(to_torch(x), block, scale_t, zero_point_t,
                                                  torch_target))
        assert mask.shape == SHAPE


@pytest.mark.parametrize("granularity", list(GRANULARITIES))
def test_fake_quantize_gradients_match_torchao(rng, granularity):
    block = jaxq.get_block_size(SHAPE, GRANULARITIES[granularity][0])
    x = make_input(rng, SHAPE, jnp.float32)
    (scale, zero_point), (scale_t, zero_point_t) = _qparams_both(x, "ASYMMETRIC", block,
                                                                 "int8")
    # Shrink the scale so some values clamp and exercise the masked gradient.
    scale, scale_t = scale * 0.6, scale_t * 0.6
    dy = rng.normal(size=SHAPE).astype(np.float32)
    xt = to_torch(x).requires_grad_(True)
    st = scale_t.clone().requires_grad_(True)
    out_t = tao._fake_quantize_affine(xt, block, st, zero_point_t, torch.int8)
    out_t.backward(torch.tensor(dy))
    out, vjp = jax.vjp(lambda v, s: affine.fake_quantize_affine(v, block, s, zero_point,
                                                                jaxq.int8), x, scale)
    dx, d_scale = vjp(jnp.asarray(dy))
    assert_same(out, out_t)
    assert_same(dx, xt.grad)
    np.testing.assert_allclose(d_scale, st.grad.numpy(), rtol=1e-5,
                               atol=1e-5 * float(np.abs(dy).sum()))
    # The mask marks the unclamped values outside [qmin, qmax]: exactly where dx is 0
    # although dy is not.
    _, mask = affine.fake_quantize_affine_cachemask(x, block, scale, zero_point, jaxq.int8)
    np.testing.assert_array_equal(np.asarray(mask), xt.grad.numpy() != 0)


@pytest.mark.parametrize("input_dtype", list(INPUT_DTYPES))
@pytest.mark.parametrize("domain", list(DOMAINS))
def test_zero_point_domains_match_torchao(rng, domain, input_dtype):
    jaxq_domain, tao_domain = DOMAINS[domain]
    dtype, torch_dtype = INPUT_DTYPES[input_dtype]
    for target in ("uint8", "int4"):
        jaxq_target, torch_target = TARGETS[target]
        qmin, qmax = jaxq_target.quant_min, jaxq_target.quant_max
        for granularity in ("per_group4", "per_axis0", "per_tensor"):
            block = jaxq.get_block_size(SHAPE, GRANULARITIES[granularity][0])
            x = make_input(rng, SHAPE, dtype, offset=0.5)
            if jaxq_domain is jaxq.ZeroPointDomain.FLOAT:
                scale_t, zero_point_t = tao._choose_qparams_affine_tinygemm(
                    to_torch(x), tao.MappingType.ASYMMETRIC, block, torch_target)
            else:
                scale_t, zero_point_t = tao.choose_qparams_affine(
                    to_torch(x), tao.MappingType.SYMMETRIC, block, torch_target)
            if jaxq_domain is jaxq.ZeroPointDomain.NONE:
                zero_point_t = None
            scale = to_numpy(scale_t)
            zero_point = None if zero_point_t is None else to_numpy(zero_point_t)
            fq = affine.fake_quantize_affine(x, block, scale, zero_point, jaxq_target,
                                             zero_point_domain=jaxq_domain)
            assert fq.dtype == dtype
            assert_same(fq, tao._fake_quantize_affine(
                to_torch(x), block, scale_t, zero_point_t, torch_target,
                zero_point_domain=tao_domain))
            q = affine.quantize_affine(x, block, scale, zero_point, jaxq_target,
                                       zero_point_domain=jaxq_domain)
            q_t, y_t = tao._do_fake_quantize_affine(
                to_torch(x), block, scale_t, zero_point_t, torch_target,
                zero_point_domain=tao_domain)
            assert_same(q, q_t)
            y = affine.dequantize_affine(q, block, scale, zero_point, jaxq_target,
                                         output_dtype=dtype, zero_point_domain=jaxq_domain)
            y_t = tao._do_fake_quantize_affine(to_torch(x), block, scale_t, zero_point_t,
                                               torch_target, qmin, qmax, tao_domain)[1]
            assert_same(y, y_t)


def test_jit_matches_eager_for_every_domain(rng):
    """Under jit XLA fuses multiply-adds; results must still equal the eager ones."""
    x = make_input(rng, SHAPE, jnp.float32, offset=0.5)
    block = (1, 1, 4)
    for domain, mapping in ((jaxq.ZeroPointDomain.INT, "ASYMMETRIC"),
                            (jaxq.ZeroPointDomain.FLOAT, None)):
        if mapping is None:
            scale_t, zp_t = tao._choose_qparams_affine_tinygemm(
                to_torch(x), tao.MappingType.ASYMMETRIC, block, torch.uint8)
            scale, zero_point = to_numpy(scale_t), to_numpy(zp_t)
        else:
            scale, zero_point = affine.choose_qparams_affine(x, jaxq.MappingType[mapping],
                                                             block, jaxq.uint8)

        def fake(v, s, z, domain=domain):
            return affine.fake_quantize_affine(v, block, s, z, jaxq.uint8,
                                               zero_point_domain=domain)

        np.testing.assert_array_equal(jax.jit(fake)(x, scale, zero_point),
                                      fake(x, scale, zero_point))


@pytest.mark.parametrize("quant_range", [(-8, 7), (0, 15), (-100, 50), (3, 200)])
def test_custom_ranges_match_torchao(rng, quant_range):
    quant_min, quant_max = quant_range
    x = make_input(rng, SHAPE, jnp.float32, offset=1.0)
    block = (1, 6, 8)
    target = "int16"
    for mapping in MAPPINGS:
        if mapping == "SYMMETRIC_NO_CLIPPING_ERR" and quant_min >= 0:
            continue  # torchao divides by quant_min: undefined for a range without negatives
        (scale, zp), (scale_t, zp_t) = _qparams_both(x, mapping, block, target, quant_min,
                                                     quant_max)
        assert_same(scale, scale_t)
        assert_same(zp, zp_t)
        q = affine.quantize_affine(x, block, scale, zp, jaxq.int16, quant_min, quant_max)
        assert_same(q, tao.quantize_affine(to_torch(x), block, scale_t, zp_t, torch.int16,
                                           quant_min, quant_max))


def test_choose_qparams_with_min_max_matches_torchao(rng):
    min_val = (rng.normal(size=(5, 3)) - 1).astype(np.float32)
    max_val = (min_val + rng.uniform(0, 3, size=(5, 3))).astype(np.float32)
    min_val[0, 0] = max_val[0, 0] = 0.0  # zero range
    for mapping in MAPPINGS:
        for target in ("int8", "uint8", "int4"):
            jaxq_target, torch_target = TARGETS[target]
            scale, zp = affine.choose_qparams_affine_with_min_max(
                min_val, max_val, MAPPINGS[mapping][0], (1, 1), jaxq_target)
            scale_t, zp_t = tao.choose_qparams_affine_with_min_max(
                torch.tensor(min_val), torch.tensor(max_val), MAPPINGS[mapping][1], (1, 1),
                torch_target, zero_point_dtype=torch.int32)
            assert_same(scale, scale_t)
            assert_same(zp, zp_t)


@pytest.mark.parametrize("mapping", list(MAPPINGS))
def test_zero_range_and_constant_input(mapping):
    for x in (np.zeros((2, 8), np.float32), np.full((2, 8), 3.25, np.float32),
              np.full((2, 8), -1.5, np.float32)):
        block = (1, 8)
        (scale, zp), (scale_t, zp_t) = _qparams_both(x, mapping, block, "int8")
        assert_same(scale, scale_t)
        assert_same(zp, zp_t)
        assert_same(affine.fake_quantize_affine(x, block, scale, zp, jaxq.int8),
                    tao._fake_quantize_affine(to_torch(x), block, scale_t, zp_t, torch.int8))


def test_float8_target_matches_torchao(rng):
    x = make_input(rng, (4, 8), jnp.float32)
    block = (1, 8)
    (scale, zp) = affine.choose_qparams_affine(x, jaxq.MappingType.SYMMETRIC, block,
                                               jaxq.float8_e4m3fn)
    scale_t, zp_t = tao.choose_qparams_affine(to_torch(x), tao.MappingType.SYMMETRIC, block,
                                              torch.float8_e4m3fn)
    assert_same(scale, scale_t)
    assert_same(zp, zp_t)
    qmin, qmax = jaxq.float8_e4m3fn.quant_min, jaxq.float8_e4m3fn.quant_max
    fq = affine.fake_quantize_affine(x, block, scale, zp, jaxq.float8_e4m3fn)
    assert_same(fq, tao._fake_quantize_affine(to_torch(x), block, scale_t, zp_t,
                                              torch.float8_e4m3fn))
    q = affine.quantize_affine(x, block, scale, zp, jaxq.float8_e4m3fn)
    q_t = tao._quantize_affine_no_dtype_cast(to_torch(x), block, scale_t, zp_t, qmin, qmax)
    assert q.dtype == jnp.float8_e4m3fn
    assert_same(q, to_numpy(q_t).astype(jnp.float8_e4m3fn))


def test_nan_and_inf(rng):
    x = make_input(rng, (2, 8), jnp.float32)
    x[0, :3] = [np.nan, np.inf, -np.inf]
    block = (1, 8)
    scale = np.array([0.05, 0.02], np.float32)
    zero_point = np.array([3, -2], np.int32)
    expected = tao._fake_quantize_affine(to_torch(x), block, to_torch(scale),
                                         to_torch(zero_point), torch.int8)
    assert_same(affine.fake_quantize_affine(x, block, scale, zero_point, jaxq.int8),
                expected)  # NaN stays NaN, +-inf clamp
    q = affine.quantize_affine(x, block, scale, zero_point, jaxq.int8)
    q_t = tao._quantize_affine_no_dtype_cast(to_torch(x), block, to_torch(scale),
                                             to_torch(zero_point), -128, 127)
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(np.asarray(q)[finite], q_t.numpy()[finite])
    assert np.asarray(q)[0, 0] == -128  # jaxq's documented NaN -> quant_min


def test_second_jitted_call_does_not_recompile(rng):
    block = (1, 4)
    quantize = counting_jit(lambda v, s, z: affine.quantize_affine(v, block, s, z, jaxq.int8))
    fake = counting_jit(lambda v, s, z: affine.fake_quantize_affine(v, block, s, z, jaxq.int8))
    choose = counting_jit(lambda v: affine.choose_qparams_affine(
        v, jaxq.MappingType.ASYMMETRIC, block, jaxq.int8))
    for _ in range(3):
        x = make_input(rng, (3, 8), jnp.float32)
        scale, zero_point = choose(x)
        quantize(x, scale, zero_point)
        fake(x, scale, zero_point)
    assert choose.traces == 1
    assert quantize.traces == 1
    assert fake.traces == 1


@pytest.mark.parametrize("call, error, argument", [
    (lambda x: affine.quantize_affine(x, (3, 8), np.ones(1), np.zeros(1, np.int32),
                                      jaxq.int8), ValueError, "block_size"),
    (lambda x: affine.quantize_affine(x, (4,), np.ones(1), np.zeros(1, np.int32), jaxq.int8),
     ValueError, "block_size"),
    (lambda x: affine.quantize_affine(x, (4, 8), np.ones(1), np.zeros(1, np.int32),
                                      jaxq.int8, 5, 3), ValueError, "quant_min"),
    (lambda x: affine.quantize_affine(x, (4, 8), np.ones(1), np.full(1, 300, np.int32),
                                      jaxq.int16, -128, 127), ValueError, "zero_point"),
    (lambda x: affine.fake_quantize_affine(x, (4, 8), np.ones(1), np.full(1, 200, np.int32),
                                           jaxq.int8), ValueError, "zero_point"),
    (lambda x: affine.quantize_affine(x, (4, 8), np.zeros(1), np.zeros(1, np.int32),
                                      jaxq.int8), ValueError, "scale"),
    (lambda x: affine.quantize_affine(x, (4, 8), -np.ones(1), np.zeros(1, np.int32),
                                      jaxq.int8), ValueError, "scale"),
    (lambda x: affine.quantize_affine(x, (1, 8), np.ones(3), np.zeros(3, np.int32),
                                      jaxq.int8), ValueError, "scale"),
    (lambda x: affine.quantize_affine(x.astype(np.int32), (4, 8), np.ones(1),
                                      np.zeros(1, np.int32), jaxq.int8), TypeError, "input"),
    (lambda x: affine.quantize_affine(x, (4, 8), np.ones(1), np.zeros(1, np.int32),
                                      "int9"), TypeError, "output_dtype"),
    (lambda x: affine.quantize_affine(x, (4, 8), np.ones(1), np.zeros(1, np.int32),
                                      jaxq.int8, -200), ValueError, "quant_min"),
    (lambda x: affine.dequantize_affine(x, (4, 8), np.ones(1), np.zeros(1, np.int32),
                                        jaxq.int8), TypeError, "input"),
    (lambda x: affine.dequantize_affine(np.zeros((4, 8), np.int8), (4, 8), np.ones(1),
                                        np.zeros(1, np.int32), jaxq.int8,
                                        output_dtype=jnp.int32), TypeError, "output_dtype"),
    (lambda x: affine.choose_qparams_affine(x, jaxq.MappingType.ASYMMETRIC, (3, 8),
                                            jaxq.int8), ValueError, "block_size"),
    (lambda x: affine.choose_qparams_affine(x.astype(np.int8), jaxq.MappingType.ASYMMETRIC,
                                            (4, 8), jaxq.int8), TypeError, "input"),
    (lambda x: affine.choose_qparams_affine(x, "ASYMMETRIC", (4, 8), jaxq.int8), TypeError,
     "mapping_type"),
    (lambda x: affine.fake_quantize_affine(x, (4, 8), np.ones(1), np.zeros(1, np.int32),
                                           jaxq.int8,
                                           zero_point_domain=jaxq.ZeroPointDomain.NONE),
     ValueError, "zero_point"),
    (lambda x: affine.fake_quantize_affine(x, (4, 8), np.ones(1), np.zeros(1, np.int32),
                                           jaxq.int8, zero_point_domain="INT"),
     TypeError, "zero_point_domain"),
    (lambda x: jaxq.get_block_size((4, 8), jaxq.PerGroup(3)), ValueError, "group_size"),
    (lambda x: jaxq.get_block_size((4, 8), jaxq.PerAxis(2)), ValueError, "axis"),
])
def test_bad_input_raises_naming_the_argument(call, error, argument):
    x = np.ones((4, 8), np.float32)
    with pytest.raises(error, match=argument):
        call(x)
