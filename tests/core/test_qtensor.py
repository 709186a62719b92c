"""QTensor, quantize_per_tensor/channel and dequantize against the installed torch.

The QTensor methods are tested in test_qtensor_methods.py, which shares this file's helpers.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jaxq  # noqa: E402
from jaxq.core.qtensor import (QTensor, dequantize, quantize_per_channel,  # noqa: E402
                               quantize_per_tensor)

warnings.filterwarnings("ignore", message=".*quantize.*deprecated")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DTYPES = ["quint8", "qint8", "qint32", "quint4x2", "quint2x4"]
SHAPES = [(5,), (3, 4), (2, 3, 5), (2, 1, 3, 3)]
INT_ZP_CHANNEL_DTYPES = ["quint8", "qint8", "qint32"]
FLOAT_ZP_CHANNEL_DTYPES = ["quint8", "qint8", "quint4x2", "quint2x4"]
CHANNEL_CASES = [(shape, axis) for shape in SHAPES for axis in range(len(shape))]
# The full method matrix compiles a few thousand small programs; the default run keeps
# one representative case per dtype, ``-m slow`` runs every shape and axis.
FAST_SHAPE, FAST_CHANNEL_CASE = (3, 4), ((2, 3, 5), 1)


def _slow_unless(condition, *values):
    return pytest.param(*values, marks=() if condition else pytest.mark.slow)


def _range(name):
    d = getattr(jaxq, name)
    return d.quant_min, d.quant_max


def _random_params(rng, name, channels=None):
    qmin, qmax = _range(name)
    lo, hi = max(qmin, -20), min(qmax, 20)
    if channels is None:
        return float(np.float32(rng.uniform(0.02, 0.1))), int(rng.integers(lo, hi + 1))
    scales = rng.uniform(0.02, 0.1, channels).astype(np.float32)
    return scales, rng.integers(lo, hi + 1, channels)


def _unpack_torch(tq):
    """torch's int_repr of a sub-byte tensor, unpacked to the logical shape."""
    bits = 4 if tq.dtype == torch.quint4x2 else 2
    raw = tq.int_repr().numpy()
    fields = np.stack([(raw >> (bits * i)) & ((1 << bits) - 1) for i in range(8 // bits)], -1)
    return fields.reshape(-1)[:tq.numel()].reshape(tq.shape)


def _torch_values(tq):
    if tq.dtype in (torch.quint4x2, torch.quint2x4):
        return _unpack_torch(tq)
    return tq.int_repr().numpy()


def _per_tensor_pair(rng, name, shape, x=None):
    x = rng.standard_normal(shape).astype(np.float32) if x is None else x
    scale, zero_point = _random_params(rng, name)
    tq = torch.quantize_per_tensor(torch.from_numpy(x), scale, zero_point, getattr(torch, name))
    jq = quantize_per_tensor(jnp.asarray(x), scale, zero_point, getattr(jaxq, name))
    return x, jq, tq


def _per_channel_pair(rng, name, shape, axis, float_zp=False, x=None):
    x = rng.standard_normal(shape).astype(np.float32) if x is None else x
    scales, zero_points = _random_params(rng, name, shape[axis])
    if float_zp:
        zero_points = (zero_points + rng.uniform(-0.5, 0.5, shape[axis])).astype(np.float32)
    tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales),
                                    torch.from_numpy(zero_points), axis, getattr(torch, name))
    jq = quantize_per_channel(jnp.asarray(x), jnp.asarray(scales), jnp.asarray(zero_points),
                              axis, getattr(jaxq, name))
    return x, jq, tq


def assert_matches(jq, tq, dequantized=True):
    """Bit-exact agreement of a jaxq QTensor with a torch quantized tensor."""
    assert isinstance(jq, QTensor)
    assert jq.dtype.torch_name == str(tq.dtype)
    assert tuple(jq.shape) == tuple(tq.shape)
    assert jq.qscheme().torch_name == str(tq.qscheme())
    np.testing.assert_array_equal(np.asarray(jq.int_repr()), tq.int_repr().numpy())
    np.testing.assert_array_equal(np.asarray(jq.int_values()), _torch_values(tq))
    if jq.qscheme().is_per_channel:
        np.testing.assert_array_equal(np.asarray(jq.q_per_channel_scales()),
                                      tq.q_per_channel_scales().numpy().astype(np.float32))
        np.testing.assert_array_equal(np.asarray(jq.q_per_channel_zero_points()),
                                      tq.q_per_channel_zero_points().numpy())
        assert jq.q_per_channel_axis() == tq.q_per_channel_axis()
    else:
        assert jq.q_scale() == np.float32(tq.q_scale())
        assert jq.q_zero_point() == tq.q_zero_point()
    if dequantized:
        np.testing.assert_array_equal(np.asarray(jq.dequantize()), tq.dequantize().numpy())


def assert_result_matches(jres, tres):
    if isinstance(tres, torch.Tensor) and tres.is_quantized:
        assert_matches(jres, tres)
    elif isinstance(tres, torch.Tensor):
        np.testing.assert_array_equal(np.asarray(jres), tres.numpy())
    elif isinstance(tres, tuple):  # torch.return_types: (values, indices)
        assert_result_matches(jres.values, tres.values)
        assert_result_matches(jres.indices, tres.indices)
    elif isinstance(tres, float):
        assert jres == np.float32(tres)
    else:
        assert jres == tres


# ---------------------------------------------------------------------------
# Quantization.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [()])
def test_quantize_per_tensor_matches_torch(rng, name, shape):
    _, jq, tq = _per_tensor_pair(rng, name, shape)
    assert_matches(jq, tq)
    assert isinstance(jq.q_scale(), float) and isinstance(jq.q_zero_point(), int)


@pytest.mark.parametrize("name", INT_ZP_CHANNEL_DTYPES)
@pytest.mark.parametrize("shape,axis", CHANNEL_CASES)
def test_quantize_per_channel_matches_torch(rng, name, shape, axis):
    _, jq, tq = _per_channel_pair(rng, name, shape, axis)
    assert_matches(jq, tq)


@pytest.mark.parametrize("name", FLOAT_ZP_CHANNEL_DTYPES)
@pytest.mark.parametrize("shape,axis", CHANNEL_CASES)
def test_quantize_per_channel_float_qparams_matches_torch(rng, name, shape, axis):
    _, jq, tq = _per_channel_pair(rng, name, shape, axis, float_zp=True)
    assert jq.qscheme() is jaxq.per_channel_affine_float_qparams
    assert_matches(jq, tq)


def _near_ties(rng, scales, zero_points, n):
    """Values whose x/s + zp sits on, or one float32 step beside, a half-integer."""
    k = rng.integers(-30, 30, size=(n, len(scales)))
    x = ((k + 0.5 - zero_points) * scales).astype(np.float32)
    step = rng.choice([-1.0, 0.0, 1.0], size=x.shape).astype(np.float32)
    return np.nextafter(x, x + step).astype(np.float32)


@pytest.mark.parametrize("name,float_zp", [(n, False) for n in INT_ZP_CHANNEL_DTYPES]
                         + [(n, True) for n in FLOAT_ZP_CHANNEL_DTYPES])
def test_quantize_per_channel_ties_match_torch(rng, name, float_zp):
    scales = np.array([0.1, 0.37, 0.05, 0.013], np.float32)
    zero_points = np.array([3, 1, 0, 2], np.int64)
    if float_zp:
        zero_points = np.array([0.3, 2.5, 1.0, 0.75], np.float32)
    x = _near_ties(rng, scales, np.float32(np.round(zero_points)), 2000)
    tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales),
                                    torch.from_numpy(zero_points), 1, getattr(torch, name))
    jq = quantize_per_channel(x, scales, zero_points, 1, getattr(jaxq, name))
    assert_matches(jq, tq)


@pytest.mark.parametrize("name", ["qint32", "quint4x2", "quint2x4"])
@pytest.mark.parametrize("zero_point", [0, 1, 3])
def test_quantize_per_tensor_ties_match_torch(rng, name, zero_point):
    # qint32 adds the zero point before rounding; sub-byte dtypes after.
    x = _near_ties(rng, np.array([0.1], np.float32), np.float32([zero_point]), 3000)
    tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.1, zero_point, getattr(torch, name))
    assert_matches(quantize_per_tensor(x, 0.1, zero_point, getattr(jaxq, name)), tq)


def _xla_contracts_multiply_add():
    x = jnp.float32(np.nextafter(np.float32(1.05), np.float32(0)))
    fused = jax.jit(lambda a, b, c: a * b + c)(x, jnp.float32(1 / np.float32(0.1)),
                                               jnp.float32(3))
    exact = np.float32(np.float64(x) * np.float64(np.float32(1) / np.float32(0.1)) + 3)
    return float(fused) == float(exact)


@pytest.mark.skipif(not _xla_contracts_multiply_add(),
                    reason="this backend does not contract x * (1/s) + zp into an FMA")
@pytest.mark.parametrize("name", ["quint8", "qint8"])
def test_quantize_per_tensor_8bit_ties_match_torch_fma(rng, name):
    # torch's x86 kernel rounds fma(x, 1/s, zp) once; XLA on CPU contracts the same way.
    x = _near_ties(rng, np.array([0.1], np.float32), np.float32([3]), 3000)
    tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.1, 3, getattr(torch, name))
    jq = quantize_per_tensor(x, 0.1, 3, getattr(jaxq, name))
    assert_matches(jq, tq)
    jitted = jax.jit(lambda v: quantize_per_tensor(v, 0.1, 3, getattr(jaxq, name)))(x)
    np.testing.assert_array_equal(np.asarray(jitted.int_repr()), tq.int_repr().numpy())


SPECIAL = np.array([np.inf, -np.inf, 1e30, -1e30, 3e9, -3e9, 0.0, 1e-30], np.float32)


@pytest.mark.parametrize("name", ["quint8", "qint8", "qint32"])
def test_special_values_match_torch(name):
    # torch dequantizes qint32 as int32(q - zp), which wraps at the ends of the range for
    # a non-zero zero point; jaxq subtracts in float32, so qint32 uses zero point 0 here.
    zero_point = 0 if name == "qint32" else 1
    tq = torch.quantize_per_tensor(torch.from_numpy(SPECIAL), 0.5, zero_point,
                                   getattr(torch, name))
    assert_matches(quantize_per_tensor(SPECIAL, 0.5, zero_point, getattr(jaxq, name)), tq)
    x = np.stack([SPECIAL, SPECIAL])
    tq = torch.quantize_per_channel(torch.from_numpy(x), torch.tensor([0.5, 0.25]),
                                    torch.tensor([zero_point, 0]), 0, getattr(torch, name))
    assert_matches(quantize_per_channel(x, np.float32([0.5, 0.25]), np.array([zero_point, 0]),
                                        0, getattr(jaxq, name)), tq)


@pytest.mark.parametrize("name", DTYPES)
def test_nan_quantizes_to_quant_min(name):
    # torch: qint32 gives quant_min too; quint8/qint8 per-tensor give quant_max and
    # per-channel 0 (documented deviation); sub-byte values are arbitrary.
    qdtype = getattr(jaxq, name)
    x = np.array([np.nan, 1.0], np.float32)
    assert int(quantize_per_tensor(x, 0.5, 0, qdtype).int_values()[0]) == qdtype.quant_min
    if name == "qint32":
        tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.5, 0, torch.qint32)
        assert tq.int_repr()[0].item() == qdtype.quant_min
    zero_points = np.float32([0.0]) if qdtype.is_packed else np.array([0])
    qc = quantize_per_channel(x[None], np.float32([0.5]), zero_points, 0, qdtype)
    assert int(qc.int_values()[0, 0]) == qdtype.quant_min


@pytest.mark.parametrize("name", DTYPES)
def test_zero_range_and_out_of_range_values(rng, name):
    qmin, qmax = _range(name)
    constant = np.full((2, 4), 0.0, np.float32)
    _, jq, tq = _per_tensor_pair(rng, name, (2, 4), x=constant)
    assert_matches(jq, tq)
    assert np.all(np.asarray(jq.int_values()) == jq.q_zero_point())
    wide = np.float32(np.linspace(-1e12, 1e12, 8)).reshape(2, 4)
    _, jq, tq = _per_tensor_pair(rng, name, (2, 4), x=wide)
    # torch dequantizes qint32 as int32(q - zp), which wraps at the ends of the range.
    assert_matches(jq, tq, dequantized=name != "qint32")
    assert int(jq.int_values().min()) == qmin and int(jq.int_values().max()) == qmax


def test_quantize_list_input_matches_torch(rng):
    xs = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2)]
    scales, zero_points = np.float32([0.1, 0.2]), np.array([1, 2])
    tqs = torch.quantize_per_tensor([torch.from_numpy(x) for x in xs],
                                    torch.from_numpy(scales), torch.from_numpy(zero_points),
                                    torch.quint8)
    jqs = quantize_per_tensor(xs, scales, zero_points, jaxq.quint8)
    assert isinstance(jqs, tuple) and len(jqs) == 2
    for jq, tq in zip(jqs, tqs):
        assert_matches(jq, tq)
    deq = dequantize(list(jqs))
    for d, tq in zip(deq, torch.dequantize(list(tqs))):
        np.testing.assert_array_equal(np.asarray(d), tq.numpy())
    np.testing.assert_array_equal(np.asarray(dequantize(xs[0])), xs[0])


@pytest.mark.parametrize("name", ["quint4x2", "quint2x4"])
def test_packed_dtypes_hold_fewer_bytes(rng, name):
    x = rng.standard_normal((16, 32)).astype(np.float32)
    eight_bit = quantize_per_tensor(x, 0.1, 3, jaxq.quint8)
    packed = quantize_per_tensor(x, 0.1, 3, getattr(jaxq, name))
    assert packed.data.nbytes * getattr(jaxq, name).values_per_byte == eight_bit.data.nbytes
    assert packed.shape == (16, 32) and packed.data.shape[-1] < 32


# ---------------------------------------------------------------------------
# JAX transformations.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", DTYPES)
def test_jit_round_trip_without_recompiling(rng, name):
    traces = []

    @jax.jit
    def requantize(q, x):
        traces.append(1)
        fresh = quantize_per_tensor(x, q.scale, q.zero_point, q.dtype)
        return fresh, q.dequantize()

    for _ in range(2):
        x, jq, tq = _per_tensor_pair(rng, name, (3, 4))
        out, deq = requantize(jq, jnp.asarray(x))
        assert_matches(out, tq)
        np.testing.assert_array_equal(np.asarray(deq), tq.dequantize().numpy())
    assert len(traces) == 1


def test_jit_per_channel_and_traced_qparams(rng):
    x, jq, tq = _per_channel_pair(rng, "qint8", (3, 4), 0)
    out = jax.jit(lambda q: q)(jq)
    assert_matches(out, tq)
    scale, zero_point = jax.jit(lambda q: (q.select(0, 1).q_scale(),
                                           q.select(0, 1).q_zero_point()))(jq)
    assert float(scale) == np.float32(tq.q_per_channel_scales()[1].item())
    assert int(zero_point) == tq.q_per_channel_zero_points()[1].item()
    same = jax.jit(lambda a, b: a.equal(b))(jq, jq)
    assert bool(same)


@pytest.mark.parametrize("name", DTYPES)
def test_vmap_dequantize(rng, name):
    x, jq, tq = _per_tensor_pair(rng, name, (4, 6))
    out = jax.vmap(dequantize, in_axes=(jq.vmap_axes(),))(jq)
    np.testing.assert_array_equal(np.asarray(out), tq.dequantize().numpy())
    # A QTensor stacked by vmap (one scale per row) dequantizes inside and outside vmap.
    scales = rng.uniform(0.02, 0.1, 4).astype(np.float32)
    stacked = jax.vmap(lambda r, s: quantize_per_tensor(r, s, 1, getattr(jaxq, name)))(
        jnp.asarray(x), jnp.asarray(scales))
    for row in range(4):
        tr = torch.quantize_per_tensor(torch.from_numpy(x[row]), float(scales[row]), 1,
                                       getattr(torch, name))
        np.testing.assert_array_equal(np.asarray(jax.vmap(dequantize)(stacked))[row],
                                      tr.dequantize().numpy())
        np.testing.assert_array_equal(np.asarray(dequantize(stacked))[row],
                                      tr.dequantize().numpy())


def test_vmap_per_channel(rng):
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    scales = rng.uniform(0.02, 0.1, 4).astype(np.float32)
    stacked = jax.vmap(lambda r: quantize_per_channel(r, scales, np.arange(4), 1,
                                                      jaxq.qint8))(jnp.asarray(x))
    tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales),
                                    torch.arange(4), 2, torch.qint8)
    np.testing.assert_array_equal(np.asarray(dequantize(stacked)), tq.dequantize().numpy())
    np.testing.assert_array_equal(np.asarray(jax.vmap(dequantize)(stacked)),
                                  tq.dequantize().numpy())


def test_pytree_structure(rng):
    _, jq, _ = _per_tensor_pair(rng, "quint4x2", (3, 5))
    leaves, treedef = jax.tree_util.tree_flatten(jq)
    assert len(leaves) == 3 and leaves[0].dtype == jnp.uint8
    doubled = jax.tree_util.tree_map(lambda a: a, jq)
    assert isinstance(doubled, QTensor) and doubled.equal(jq)
    assert jax.tree_util.tree_unflatten(treedef, leaves).shape == (3, 5)
    assert "quint4x2" in repr(jq) and jq.numel() == 15 and jq.size(1) == 5
    assert jq.ndim == 2 and jq.is_quantized and len(jq) == 3


# ---------------------------------------------------------------------------
# Bad input: the error names the argument, as torch rejects it (or should).
# ---------------------------------------------------------------------------
X = np.ones((2, 3), np.float32)


@pytest.mark.parametrize("call,error,match", [
    (lambda: quantize_per_tensor(X, 0.1, 0, jaxq.int8), TypeError, "dtype"),
    (lambda: quantize_per_tensor(X, 0.1, 0, torch.uint8), TypeError, "dtype"),
    (lambda: quantize_per_tensor(X, 0.1, 0, "float32"), TypeError, "dtype"),
    (lambda: quantize_per_tensor(X, 0.1, 300, jaxq.quint8), ValueError, "zero_point"),
    (lambda: quantize_per_tensor(X, 0.1, -1, jaxq.quint8), ValueError, "zero_point"),
    (lambda: quantize_per_tensor(X, 0.1, 2.5, jaxq.quint8), TypeError, "zero_point"),
    (lambda: quantize_per_tensor(X, 0.0, 0, jaxq.quint8), ValueError, "scale"),
    (lambda: quantize_per_tensor(X, -1.0, 0, jaxq.quint8), ValueError, "scale"),
    (lambda: quantize_per_tensor(X, np.nan, 0, jaxq.quint8), ValueError, "scale"),
    (lambda: quantize_per_tensor(X, np.ones(2), 0, jaxq.quint8), ValueError, "scale"),
    (lambda: quantize_per_tensor(X.astype(np.int32), 0.1, 0, jaxq.quint8), TypeError, "input"),
    (lambda: quantize_per_tensor([X, X], np.ones(1), np.zeros(1, int), jaxq.quint8),
     ValueError, "scale"),
    (lambda: quantize_per_channel(X, np.ones(3), np.zeros(3, int), 2, jaxq.qint8),
     ValueError, "axis"),
    (lambda: quantize_per_channel(X, np.ones(2), np.zeros(2, int), 1, jaxq.qint8),
     ValueError, "scales"),
    (lambda: quantize_per_channel(X, np.ones(3), np.zeros(2, int), 1, jaxq.qint8),
     ValueError, "zero_points"),
    (lambda: quantize_per_channel(X, np.ones((3, 1)), np.zeros(3, int), 1, jaxq.qint8),
     ValueError, "scales"),
    (lambda: quantize_per_channel(X, np.ones(3), np.full(3, 200), 1, jaxq.qint8),
     ValueError, "zero_points"),
    (lambda: quantize_per_channel(X, np.array([1.0, 0.0, 1.0]), np.zeros(3, int), 1,
                                  jaxq.qint8), ValueError, "scales"),
    (lambda: quantize_per_channel(X.astype(np.int8), np.ones(3), np.zeros(3, int), 1,
                                  jaxq.qint8), TypeError, "input"),
    (lambda: quantize_per_channel(X, np.ones(3), np.zeros(3, int), 1, jaxq.quint4x2),
     TypeError, "zero_points"),
    (lambda: quantize_per_channel(X, np.ones(3), np.zeros(3, np.float32), 1, jaxq.qint32),
     TypeError, "qint32"),
    (lambda: quantize_per_channel(X, np.ones(3), np.zeros(3, int), 1, jaxq.int8),
     TypeError, "dtype"),
    (lambda: quantize_per_channel(np.float32(1.0), np.ones(1), np.zeros(1, int), 0,
                                  jaxq.qint8), ValueError, "axis"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_torch_rejects_the_same_input():
    # The cases above where torch raises too (it accepts scale <= 0 and NaN silently).
    x = torch.ones(2, 3)
    for call in (lambda: torch.quantize_per_tensor(x, 0.1, 0, torch.int8),
                 lambda: torch.quantize_per_tensor(x, 0.1, 300, torch.quint8),
                 lambda: torch.quantize_per_tensor(x.int(), 0.1, 0, torch.quint8),
                 lambda: torch.quantize_per_channel(x, torch.ones(3), torch.zeros(3).long(), 2,
                                                    torch.qint8),
                 lambda: torch.quantize_per_channel(x, torch.ones(2), torch.zeros(2).long(), 1,
                                                    torch.qint8),
                 lambda: torch.quantize_per_channel(x, torch.ones(3), torch.zeros(3).long(), 1,
                                                    torch.quint4x2)):
        with pytest.raises((RuntimeError, TypeError, NotImplementedError)):
            call()


def test_accepts_negative_axis_and_torch_dtypes(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    scales, zero_points = np.float32([0.1, 0.2, 0.3]), np.array([0, 1, 2])
    a = quantize_per_channel(x, scales, zero_points, -1, torch.qint8)
    b = quantize_per_channel(x, scales, zero_points, 1, "qint8")
    assert a.equal(b) and a.q_per_channel_axis() == 1
