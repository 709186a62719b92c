"""The numeric debugger through jaxq's graph-mode prepare_fx / convert_fx."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.ao.ns.fx.utils import compute_sqnr as torch_compute_sqnr

import jaxq.pt2e as pt2e
from jaxq.core.qtensor import QTensor
from jaxq.fx.graph import capture
from jaxq.qconfig import default_per_channel_qconfig
from jaxq.qconfig_mapping import get_default_qconfig_mapping
from jaxq.quantize_fx import convert_fx, prepare_fx
from tests.pt2e._models import ResidualNet, make_pair


def _qconfig_mapping():
    # MinMax activation observers calibrate faster than the x86 default's histograms.
    return get_default_qconfig_mapping("x86").set_global(default_per_channel_qconfig)


def _run(model, x):
    logged = pt2e.prepare_for_propagation_comparison(model)
    logged(x)
    logged(x * 0.5)
    return pt2e.extract_results_from_loggers(logged)


@pytest.fixture(scope="module")
def flow():
    _, flax_model = make_pair()
    x = jax.random.normal(jax.random.key(0), (8, 6, 6, 3))
    prepared = prepare_fx(flax_model, _qconfig_mapping(), (x,))
    pt2e.generate_numeric_debug_handle(prepared)
    prepared(x)
    prepared(x * 0.5)
    converted = convert_fx(prepared)
    return dict(model=flax_model, x=x, prepared=prepared, converted=converted)


def _torch_qtensor(q: QTensor) -> torch.Tensor:
    return torch._make_per_tensor_quantized_tensor(
        torch.from_numpy(np.asarray(q.int_values()).astype(np.uint8)),
        float(q.scale), int(q.zero_point))


def test_handles_survive_convert(flow):
    prepared, converted = flow["prepared"].graph, flow["converted"].graph
    before = {n.id: pt2e.numeric_debug_handle(n) for n in prepared.nodes}
    float_nodes = [n for n in converted.nodes if n.id in before and not any(
        n.meta.get(k) for k in ("observer", "quantize", "dequantize"))]
    assert float_nodes
    for node in float_nodes:
        assert pt2e.numeric_debug_handle(node) == before[node.id], node
    # Quantized modules carry the handle of the float module they replace.
    swapped = [n for n in float_nodes if "float_module_type" in n.meta]
    assert swapped and all(pt2e.numeric_debug_handle(n) is not None for n in swapped)
    # Observers inherited the handle of the node they observe.
    by_id = prepared.by_id()
    for node in prepared.nodes:
        if node.meta.get("observer") and by_id[node.input_ids[0]].op != "placeholder":
            assert pt2e.numeric_debug_handle(node) == pt2e.numeric_debug_handle(
                by_id[node.input_ids[0]])


def test_compare_float_and_quantized(flow):
    ref = _run(flow["prepared"], flow["x"])
    actual = _run(flow["converted"], flow["x"])
    comparison = pt2e.compare_results(ref, actual)
    float_handles = {pt2e.numeric_debug_handle(n) for n in flow["prepared"].graph.nodes
                     if n.op not in ("placeholder", "output")} - {None}
    assert set(comparison) == float_handles
    saw_qtensor = False
    for handle, summary in comparison.items():
        assert len(summary.results) == 2
        for result in summary.results:
            sqnr = float(result.sqnr)
            assert 15.0 < sqnr < 80.0, (summary, sqnr)
            actual_value = result.actual
            if isinstance(actual_value, QTensor):
                saw_qtensor = True
                # torch's compute_sqnr dequantizes a quantized tensor itself.
                expected = torch_compute_sqnr(_torch_qtensor(actual_value),
                                              torch.from_numpy(np.asarray(result.ref)))
            else:
                expected = torch_compute_sqnr(torch.from_numpy(np.asarray(actual_value)),
                                              torch.from_numpy(np.asarray(result.ref)))
            np.testing.assert_allclose(sqnr, float(expected), rtol=1e-5)
    assert saw_qtensor


def test_transfer_from_float_capture(flow):
    """The torch-style flow: handle a float capture, then quantize the same model."""
    x = flow["x"]
    float_gm = capture(flow["model"], (x,))
    pt2e.generate_numeric_debug_handle(float_gm)
    prepared = prepare_fx(flow["model"], _qconfig_mapping(), (x,))
    prepared(x)
    converted = convert_fx(prepared)
    pt2e.transfer_numeric_debug_handles(float_gm, converted)
    handles = {n.name: pt2e.numeric_debug_handle(n) for n in float_gm.graph.nodes}
    conv = converted.graph.find(path="conv")[0]
    # conv + relu were fused: the fused node computes relu's output.
    assert conv.meta["fused_from"] and pt2e.numeric_debug_handle(conv) == handles["relu"]
    assert pt2e.numeric_debug_handle(converted.graph.find(path="fc2")[0]) == handles["fc2"]
    comparison = pt2e.compare_results(_run(float_gm, x), _run(converted, x))
    assert handles["relu"] in comparison and handles["fc2"] in comparison
    assert handles["conv"] not in comparison  # the pre-relu conv output no longer exists
    for summary in comparison.values():
        assert all(float(r.sqnr) > 15.0 for r in summary.results)
    with pytest.raises(ValueError, match="no numeric debug handles"):
        pt2e.transfer_numeric_debug_handles(capture(flow["model"], (x,)), converted)


def test_mismatched_models_raise(flow):
    x = flow["x"]
    ref = _run(flow["prepared"], x)
    other = {handle + 1000: value for handle, value in ref.items()}
    with pytest.raises(ValueError, match="share no numeric debug handle"):
        pt2e.compare_results(ref, other)
    fewer = {h: (name, stack, stats[:1]) for h, (name, stack, stats) in ref.items()}
    with pytest.raises(ValueError, match="recorded 2 outputs, actual 1"):
        pt2e.compare_results(ref, fewer)
    handle, (name, stack, stats) = next(iter(ref.items()))
    reshaped = {handle: (name, stack, [jnp.ravel(s) for s in stats])}
    with pytest.raises(ValueError, match=f"handle={handle}.*different shapes"):
        pt2e.compare_results(ref, reshaped)


def test_add_fused_with_relu_answers_for_the_relu():
    """convert_fx folds relu into a quantized add: the add node computes relu's output."""
    x = jax.random.normal(jax.random.key(1), (8, 6, 6, 3))
    prepared = prepare_fx(ResidualNet(), _qconfig_mapping(), (x,))
    pt2e.generate_numeric_debug_handle(prepared)
    prepared(x)
    converted = convert_fx(prepared)
    handles = {n.name: pt2e.numeric_debug_handle(n) for n in prepared.graph.nodes}
    fused = [n for n in converted.graph.nodes if "fused_relu" in n.meta]
    assert len(fused) == 1
    comparison = pt2e.compare_results(_run(prepared, x), _run(converted, x))
    assert handles["relu"] in comparison and handles["add"] not in comparison
    assert comparison[handles["relu"]].actual_node_name == "add"
    for summary in comparison.values():
        assert all(float(r.sqnr) > 15.0 for r in summary.results), summary
