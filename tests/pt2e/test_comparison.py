"""jaxq.pt2e metrics / QuantizationComparisonResult / compare_results vs torch's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.ao.ns.fx import utils as ns_utils

import jaxq.pt2e as pt2e
from jaxq.core.qtensor import quantize_per_tensor

tao = pytest.importorskip("torchao.quantization.pt2e._numeric_debugger")

SHAPES = [(7,), (3, 5), (2, 4, 4, 3)]
DTYPES = [np.float32, np.float16, np.int8]


def _pair(rng, shape, dtype, noise=0.05):
    ref = rng.standard_normal(shape).astype(np.float32) * 4
    actual = ref + noise * rng.standard_normal(shape).astype(np.float32)
    if np.issubdtype(dtype, np.integer):
        return np.round(actual).astype(dtype), np.round(ref).astype(dtype) + 1
    return actual.astype(dtype), ref.astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_result_metrics_match_torch(rng, shape, dtype):
    actual, ref = _pair(rng, shape, dtype)
    ours = pt2e.QuantizationComparisonResult(actual=jnp.asarray(actual), ref=jnp.asarray(ref))
    theirs = tao.QuantizationComparisonResult(actual=torch.from_numpy(actual),
                                              ref=torch.from_numpy(ref))
    np.testing.assert_allclose(float(ours.sqnr), float(theirs.sqnr), rtol=1e-5)
    np.testing.assert_allclose(float(ours.mse_loss), float(theirs.mse_loss), rtol=1e-5)
    # The torch.ao.ns metrics (float32 inputs, as torch's _loss_fn casts them).
    a32, r32 = torch.from_numpy(actual.astype(np.float32)), torch.from_numpy(
        ref.astype(np.float32))
    np.testing.assert_allclose(
        float(ours.normalized_l2_error),
        float(ns_utils.compute_normalized_l2_error(a32, r32)), rtol=1e-5)
    cosine = ours.cosine_similarity
    torch_cosine = ns_utils.compute_cosine_similarity(a32, r32)
    assert cosine.shape == tuple(torch_cosine.shape) == (1,)
    np.testing.assert_allclose(np.asarray(cosine), torch_cosine.numpy(), rtol=1e-5)
    np.testing.assert_allclose(float(ours.loss(pt2e.compute_sqnr)), float(ours.sqnr))


@pytest.mark.parametrize("case", ["equal", "zeros", "zero_ref", "orthogonal"])
def test_edge_cases_match_torch(case):
    a = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    actual, ref = {"equal": (a, a), "zeros": (a * 0, a * 0), "zero_ref": (a, a * 0),
                   "orthogonal": (np.array([1, 0, 0, 0], np.float32),
                                  np.array([0, 1, 0, 0], np.float32))}[case]
    ja, jr = jnp.asarray(actual), jnp.asarray(ref)
    ta, tr = torch.from_numpy(actual), torch.from_numpy(ref)
    pairs = [(pt2e.compute_sqnr, ns_utils.compute_sqnr),
             (pt2e.compute_mse_loss, F.mse_loss),
             (pt2e.compute_normalized_l2_error, ns_utils.compute_normalized_l2_error),
             (pt2e.compute_cosine_similarity, ns_utils.compute_cosine_similarity)]
    for ours, theirs in pairs:
        np.testing.assert_allclose(np.asarray(ours(ja, jr)), theirs(ta, tr).numpy(),
                                   rtol=1e-6, atol=1e-6)


def test_quantized_values_are_dequantized_first(rng):
    ref = rng.standard_normal((4, 6)).astype(np.float32)
    scale, zero_point = 0.02, 3
    q = quantize_per_tensor(jnp.asarray(ref), scale, zero_point, "quint8")
    tq = torch.quantize_per_tensor(torch.from_numpy(ref), scale, zero_point, torch.quint8)
    np.testing.assert_array_equal(np.asarray(q.int_values()), tq.int_repr().numpy())
    tr = torch.from_numpy(ref)
    result = pt2e.QuantizationComparisonResult(actual=q, ref=jnp.asarray(ref))
    for ours, theirs in [(result.sqnr, ns_utils.compute_sqnr(tq, tr)),
                         (result.normalized_l2_error,
                          ns_utils.compute_normalized_l2_error(tq, tr)),
                         (result.cosine_similarity,
                          ns_utils.compute_cosine_similarity(tq, tr)),
                         (result.mse_loss, F.mse_loss(tq.dequantize(), tr))]:
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-5)


def test_containers_match_torch(rng):
    a = [rng.standard_normal((3,)).astype(np.float32) for _ in range(3)]
    b = [x + 0.1 for x in a]
    ours = pt2e.QuantizationComparisonResult(
        actual=(jnp.asarray(a[0]), [jnp.asarray(a[1])], {"k": jnp.asarray(a[2])}),
        ref=(jnp.asarray(b[0]), [jnp.asarray(b[1])], {"k": jnp.asarray(b[2])}))
    theirs = tao.QuantizationComparisonResult(
        actual=(torch.from_numpy(a[0]), [torch.from_numpy(a[1])],
                {"k": torch.from_numpy(a[2])}),
        ref=(torch.from_numpy(b[0]), [torch.from_numpy(b[1])],
             {"k": torch.from_numpy(b[2])}))
    s, t = ours.sqnr, theirs.sqnr
    assert isinstance(s, tuple) and isinstance(s[1], list) and isinstance(s[2], dict)
    np.testing.assert_allclose(
        [float(s[0]), float(s[1][0]), float(s[2]["k"])],
        [float(t[0]), float(t[1][0]), float(t[2]["k"])], rtol=1e-5)


def test_result_validation_like_torch():
    with pytest.raises(ValueError, match="different shapes"):
        pt2e.QuantizationComparisonResult(actual=jnp.ones(3), ref=jnp.ones(4))
    with pytest.raises(ValueError, match="different shapes"):
        tao.QuantizationComparisonResult(actual=torch.ones(3), ref=torch.ones(4))
    with pytest.raises(ValueError, match="self.actual"):
        pt2e.QuantizationComparisonResult(actual=1.0, ref=jnp.ones(1))
    with pytest.raises(ValueError, match="self.ref"):
        pt2e.QuantizationComparisonResult(actual=jnp.ones(1), ref="x")
    with pytest.raises(ValueError, match="different shapes"):
        pt2e.QuantizationComparisonResult(actual=(jnp.ones(2),), ref=(jnp.ones(2),) * 2)


def test_compare_results_skips_missing_handles_and_keeps_names():
    stack = {"": ("", "M"), "block": ("block", "B"), "block.fc": ("block.fc", "Linear")}
    ref = {1: ("fc", stack, [jnp.ones(3)]), 2: ("relu", {"": ("", "M")}, [jnp.ones(3)])}
    actual = {1: ("fc_q", stack, [jnp.full(3, 1.5)]), 9: ("x", {}, [jnp.ones(3)])}
    out = pt2e.compare_results(ref, actual)
    assert list(out) == [1]
    summary = out[1]
    assert (summary.handle, summary.ref_node_name, summary.actual_node_name) == (
        1, "fc", "fc_q")
    assert summary.ref_module_stack == summary.actual_module_stack == "block.fc"
    assert pt2e.compare_results({}, actual) == {}


def test_compare_results_bad_input():
    with pytest.raises(TypeError, match="ref_results"):
        pt2e.compare_results([1], {})
    with pytest.raises(TypeError, match=r"actual_results\[1\]"):
        pt2e.compare_results({1: ("a", {}, [jnp.ones(1)])}, {1: jnp.ones(1)})


def test_metrics_jit_and_vmap(rng):
    a = jnp.asarray(rng.standard_normal((4, 5)).astype(np.float32))
    b = a + 0.1
    per_row = jax.vmap(pt2e.compute_sqnr)(a, b)
    expected = [float(ns_utils.compute_sqnr(torch.from_numpy(np.asarray(x)),
                                            torch.from_numpy(np.asarray(y))))
                for x, y in zip(a, b)]
    np.testing.assert_allclose(np.asarray(per_row), expected, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(pt2e.compute_mse_loss)(a, b),
                               F.mse_loss(torch.from_numpy(np.asarray(a)),
                                          torch.from_numpy(np.asarray(b))).numpy(),
                               rtol=1e-5)
