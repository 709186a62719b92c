"""QTensor, quantize_per_tensor/channel and dequantize against the installed torch."""

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
# Methods: every method x dtype x qscheme against torch.
# ---------------------------------------------------------------------------
def _methods(shape):
    ndim = len(shape)
    methods = {
        "view": lambda q, o, x: q.view(-1),
        "view_trailing_one": lambda q, o, x: q.view(*shape, 1),
        "as_strided": lambda q, o, x: q.as_strided((2, 2), (1, 2), 1),
        "expand": lambda q, o, x: q.expand(2, *shape),
        "flatten": lambda q, o, x: q.flatten(),
        "select_first": lambda q, o, x: q.select(0, shape[0] - 1),
        "ne": lambda q, o, x: q.ne(o), "eq": lambda q, o, x: q.eq(o),
        "ge": lambda q, o, x: q.ge(o), "le": lambda q, o, x: q.le(o),
        "gt": lambda q, o, x: q.gt(o), "lt": lambda q, o, x: q.lt(o),
        "eq_scalar": lambda q, o, x: q.eq(0.0), "lt_float": lambda q, o, x: q.lt(x),
        "copy_quantized": lambda q, o, x: q.copy_(o),
        "copy_float": lambda q, o, x: q.copy_(x * 0.5),
        "clone": lambda q, o, x: q.clone(),
        "dequantize": lambda q, o, x: q.dequantize(),
        "equal_self": lambda q, o, x: q.equal(q), "equal_other": lambda q, o, x: q.equal(o),
        "int_repr": lambda q, o, x: q.int_repr(),
        "max": lambda q, o, x: q.max(), "max_dim": lambda q, o, x: q.max(-1),
        "min": lambda q, o, x: q.min(), "min_dim_keep": lambda q, o, x: q.min(0, keepdim=True),
        "mean": lambda q, o, x: q.mean(), "mean_last": lambda q, o, x: q.mean(-1),
        "q_scale": lambda q, o, x: q.q_scale(),
        "q_zero_point": lambda q, o, x: q.q_zero_point(),
        "q_per_channel_scales": lambda q, o, x: q.q_per_channel_scales(),
        "q_per_channel_zero_points": lambda q, o, x: q.q_per_channel_zero_points(),
        "q_per_channel_axis": lambda q, o, x: q.q_per_channel_axis(),
        "resize_": lambda q, o, x: q.resize_(2, 2),
        "sort": lambda q, o, x: q.sort(), "sort_desc_first": lambda q, o, x: q.sort(0, True),
        "topk_values": lambda q, o, x: q.topk(2).values,
    }
    if ndim >= 2:
        methods.update({
            "flatten_tail": lambda q, o, x: q.flatten(-2),
            "select_last": lambda q, o, x: q.select(-1, 1),
            "mean_first": lambda q, o, x: q.mean(0),
            "mean_trailing_keep": lambda q, o, x: q.mean((-1, -2), keepdim=True),
            "getitem": lambda q, o, x: q[1:, ..., ::2],
            "getitem_int": lambda q, o, x: q[0],
        })
    return methods


# jaxq raises NotImplementedError where torch works on the packed bytes (wrong values).
PACKED_DEVIATIONS = {"select_first", "select_last", "max", "max_dim", "min", "min_dim_keep",
                     "sort", "sort_desc_first", "getitem", "getitem_int"}


def _run(fn, *args):
    try:
        result = fn(*args)
        if isinstance(result, torch.Tensor) and result.is_quantized:
            result.int_repr(), result.dequantize()  # torch fails lazily on some views
        return result, None
    except Exception as error:  # noqa: BLE001 - the class is compared below
        return None, error


def _fresh(tq, x):
    """A factory of torch tensors equal to ``tq``: torch's ``copy_``/``resize_`` mutate."""
    def make():
        if tq.qscheme() == torch.per_tensor_affine:
            return torch.quantize_per_tensor(torch.from_numpy(x), tq.q_scale(),
                                             tq.q_zero_point(), tq.dtype)
        return torch.quantize_per_channel(torch.from_numpy(x), tq.q_per_channel_scales(),
                                          tq.q_per_channel_zero_points(),
                                          tq.q_per_channel_axis(), tq.dtype)
    return make


def _check_method(method, jq, make_tq, jo, to, x):
    """Runs ``method`` on both; returns a description of a disagreement, or None."""
    fn = _methods(tuple(jq.shape))[method]
    jres, jerr = _run(fn, jq, jo, jnp.asarray(x))
    tres, terr = _run(fn, make_tq(), to, torch.from_numpy(x))
    if jq.dtype.is_packed and method in PACKED_DEVIATIONS and jq.qscheme().is_per_tensor:
        if not isinstance(jerr, NotImplementedError):
            return f"{method}: expected NotImplementedError, got {jerr!r}"
        return None
    if terr is not None:
        if jerr is None:
            return f"{method}: torch raised {terr!r}, jaxq returned a result"
        if type(jerr) is not type(terr):
            return f"{method}: jaxq raised {jerr!r}, torch {terr!r}"
        return None
    if jerr is not None:
        return f"{method}: jaxq raised {jerr!r}, torch returned a result"
    try:
        assert_result_matches(jres, tres)
    except AssertionError as error:
        return f"{method}: {str(error)[:300]}"
    return None


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("shape", [_slow_unless(s == FAST_SHAPE, s) for s in SHAPES])
def test_methods_per_tensor(rng, name, shape):
    x, jq, tq = _per_tensor_pair(rng, name, shape)
    _, jo, to = _per_tensor_pair(rng, name, shape)
    failures = [f for method in _methods(shape)
                if (f := _check_method(method, jq, _fresh(tq, x), jo, to, x))]
    assert not failures, "\n".join(failures)


FLOAT_QPARAMS_DEVIATIONS = {"select_first", "select_last", "getitem", "getitem_int"}


# Per-channel views that break the channel grouping: torch builds them and then fails
# (or scales the wrong elements) on use; jaxq raises at once.
def _breaks_channels(method, shape, axis):
    if method == "view":
        return len(shape) > 1 or False
    if method == "flatten":
        return len(shape) > 1
    if method == "flatten_tail":
        return axis >= len(shape) - 2
    return False


@pytest.mark.parametrize("name,float_zp", [(n, False) for n in INT_ZP_CHANNEL_DTYPES]
                         + [(n, True) for n in FLOAT_ZP_CHANNEL_DTYPES])
@pytest.mark.parametrize("shape,axis", [_slow_unless(case == FAST_CHANNEL_CASE, *case)
                                        for case in CHANNEL_CASES])
def test_methods_per_channel(rng, name, float_zp, shape, axis):
    x, jq, tq = _per_channel_pair(rng, name, shape, axis, float_zp)
    _, jo, to = _per_channel_pair(rng, name, shape, axis, float_zp)
    failures = []
    for method in _methods(shape):
        if float_zp and method in FLOAT_QPARAMS_DEVIATIONS:
            # torch either fails or truncates the float zero point of the selected part.
            with pytest.raises(RuntimeError, match="float_qparams"):
                _methods(shape)[method](jq, jo, jnp.asarray(x))
            continue
        if _breaks_channels(method, shape, axis):
            with pytest.raises(RuntimeError, match="channel"):
                _methods(shape)[method](jq, jo, jnp.asarray(x))
            continue
        if (method == "select_last" and not float_zp and axis < len(shape) - 1
                and shape[axis] > 1):
            # torch decrements the channel axis after selecting a later dimension and then
            # cannot dequantize; compare with the float selection instead.
            out = jq.select(-1, 1)
            assert out.q_per_channel_axis() == axis
            np.testing.assert_array_equal(np.asarray(out.dequantize()),
                                          tq.dequantize().select(-1, 1).numpy())
            continue
        failures.append(_check_method(method, jq, _fresh(tq, x), jo, to, x))
    failures = [f for f in failures if f]
    assert not failures, "\n".join(failures)


def test_sort_topk_max_indices_match_torch(rng):
    # Distinct values: torch leaves the order of tied topk indices unspecified.
    x = (rng.permutation(24).reshape(4, 6) * 0.1).astype(np.float32)
    _, jq, tq = _per_tensor_pair(rng, "qint8", (4, 6), x=x)
    for fn in (lambda q: q.topk(3), lambda q: q.topk(2, 0, largest=False),
               lambda q: q.sort(1, descending=True),
               lambda q: q.max(0), lambda q: q.min(1, keepdim=True)):
        assert_result_matches(fn(jq), fn(tq))
    # sorted=False: torch's order is unspecified, jaxq's is sorted; the sets agree.
    np.testing.assert_array_equal(
        np.sort(np.asarray(jq.topk(3, sorted=False).values.int_repr()), -1),
        np.sort(tq.topk(3, sorted=False).values.int_repr().numpy(), -1))
    # With ties: stable sort indices agree with torch's CPU sort; topk values agree.
    _, jq, tq = _per_tensor_pair(rng, "quint8", (3, 8),
                                 x=rng.integers(0, 3, (3, 8)).astype(np.float32) * 0.1)
    assert_result_matches(jq.sort(), tq.sort())
    assert_result_matches(jq.sort(0, descending=True), tq.sort(0, descending=True))
    assert_result_matches(jq.topk(4).values, tq.topk(4).values)


def test_resize_grow_keeps_prefix_and_fills_zero_point(rng):
    x, jq, tq = _per_tensor_pair(rng, "qint8", (2, 3))
    grown = jq.resize_(3, 3)
    assert grown.shape == (3, 3)
    np.testing.assert_array_equal(np.asarray(grown.int_values()).reshape(-1)[:6],
                                  tq.int_repr().numpy().reshape(-1))
    assert np.all(np.asarray(grown.int_values()).reshape(-1)[6:] == jq.q_zero_point())


def test_per_channel_select_and_getitem_on_channel_axis(rng):
    _, jq, tq = _per_channel_pair(rng, "qint8", (3, 4, 2), 1)
    assert_matches(jq.select(1, 2), tq.select(1, 2))
    assert_matches(jq[:, 1], tq[:, 1])
    assert_matches(jq[:, 1:3], tq[:, 1:3])
    assert_matches(jq[None, 0], tq[None, 0])
    assert_matches(jq.view(3, 4, 1, 2), tq.view(3, 4, 1, 2))


def test_per_channel_copy_broadcasts_src(rng):
    _, jq, tq = _per_channel_pair(rng, "quint8", (2, 3, 4), 2)
    _, jo, to = _per_channel_pair(rng, "quint8", (3, 4), 1)
    copied = jq.copy_(jo)
    # torch keeps src's axis (1) on the 3-d result, which then fails to dequantize; the
    # channels of src are jaxq's axis 2.
    assert copied.q_per_channel_axis() == 2
    np.testing.assert_array_equal(np.asarray(copied.dequantize()),
                                  np.broadcast_to(to.dequantize().numpy(), (2, 3, 4)))
    np.testing.assert_array_equal(np.asarray(copied.q_per_channel_scales()),
                                  to.q_per_channel_scales().numpy().astype(np.float32))


def test_method_errors_name_the_problem(rng):
    _, jq, _ = _per_tensor_pair(rng, "quint8", (2, 3))
    with pytest.raises(RuntimeError, match="same qscheme"):
        jq.copy_(quantize_per_channel(np.ones((2, 3), np.float32), np.ones(3, np.float32),
                                      np.zeros(3, np.int32), 1, jaxq.quint8))
    with pytest.raises(RuntimeError, match="dtype"):
        jq.copy_(quantize_per_tensor(np.ones((2, 3), np.float32), 0.1, 0, jaxq.qint8))
    with pytest.raises(TypeError, match="float32"):
        jq.copy_(np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match="shape"):
        jq.copy_(np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        jq.mean(dtype=jnp.float32)
    with pytest.raises(RuntimeError, match="k=4"):
        jq.topk(4)
    with pytest.raises(IndexError):
        jq.select(2, 0)
    with pytest.raises(RuntimeError, match="invalid"):
        jq.view(4, 2)


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
