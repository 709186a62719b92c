"""QTensor methods (view, select, sort, topk, resize_, copy_, ...) on every dtype x qscheme
against the installed torch; the quantize / dequantize functions, JAX transformations and
bad input are in test_qtensor.py, whose helpers this file shares."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jaxq  # noqa: E402
from jaxq.core.qtensor import (dequantize, quantize_per_channel,  # noqa: E402
                               quantize_per_tensor)
from tests.core.test_qtensor import (  # noqa: E402
    CHANNEL_CASES,
    DTYPES,
    FAST_CHANNEL_CASE,
    FAST_SHAPE,
    FLOAT_ZP_CHANNEL_DTYPES,
    INT_ZP_CHANNEL_DTYPES,
    SHAPES,
    _per_channel_pair,
    _per_tensor_pair,
    _slow_unless,
    assert_matches,
    assert_result_matches,
)

warnings.filterwarnings("ignore", message=".*quantize.*deprecated")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

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
