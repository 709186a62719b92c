"""jaxq.pt2e numeric debugger vs torch's (torchao.quantization.pt2e) on the same model."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.pt2e as pt2e
from jaxq.fx.graph import GraphModule, capture
from jaxq.pt2e import numeric_debugger
from tests.pt2e._models import (
    FlaxNet,
    copy_weights,
    fake_quantize_weights,
    make_pair,
    quantized_copy,
    to_flax_activation,
)

tao = pytest.importorskip("torchao.quantization.pt2e")


def _handles(graph) -> list:
    return [pt2e.numeric_debug_handle(n) for n in graph.nodes]


@pytest.fixture(scope="module")
def setup():
    """torch's flow (float vs fake-quantized weights) and the captured Flax twin."""
    torch_model, flax_model = make_pair()
    x_torch = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    x = jnp.asarray(to_flax_activation(x_torch))

    ep = torch.export.export(torch_model, (x_torch,))
    tao.generate_numeric_debug_handle(ep)
    torch_ref_model = ep.module()
    torch_actual_model = copy.deepcopy(torch_ref_model)
    torch_actual_model.load_state_dict(
        fake_quantize_weights(torch_actual_model.state_dict()), strict=False)
    torch_ref = tao.prepare_for_propagation_comparison(torch_ref_model)
    torch_actual = tao.prepare_for_propagation_comparison(torch_actual_model)
    for _ in range(2):
        torch_ref(x_torch)
        torch_actual(x_torch)
    torch_ref_results = tao.extract_results_from_loggers(torch_ref)
    torch_actual_results = tao.extract_results_from_loggers(torch_actual)
    torch_comparison = tao.compare_results(torch_ref_results, torch_actual_results)

    gm = capture(flax_model, (x,))
    pt2e.generate_numeric_debug_handle(gm)
    # The "quantized" model: the same handled graph over fake-quantized weights.
    quantized_flax = FlaxNet()
    copy_weights(quantized_copy(torch_model), quantized_flax)
    gm_actual = GraphModule(nnx.clone(quantized_flax), gm.graph.copy())
    return dict(ep=ep, x=x, gm=gm, gm_actual=gm_actual, torch_ref_results=torch_ref_results,
                torch_actual_results=torch_actual_results,
                torch_comparison=torch_comparison)


def test_keys_match_torch():
    assert pt2e.CUSTOM_KEY == tao.CUSTOM_KEY
    assert pt2e.NUMERIC_DEBUG_HANDLE_KEY == tao.NUMERIC_DEBUG_HANDLE_KEY


def test_handles_like_torch(setup):
    torch_handles = [n.meta[tao.CUSTOM_KEY][tao.NUMERIC_DEBUG_HANDLE_KEY]
                     for n in setup["ep"].graph.nodes if n.op == "call_function"]
    graph = setup["gm"].graph
    handles = [h for h in _handles(graph) if h is not None]
    assert handles == torch_handles
    for node, handle in zip(graph.nodes, _handles(graph)):
        assert (handle is None) == (node.op in ("placeholder", "get_attr", "output"))


def test_logged_outputs_match_torch(setup):
    logged = pt2e.prepare_for_propagation_comparison(setup["gm"])
    for _ in range(2):
        logged(setup["x"])
    results = pt2e.extract_results_from_loggers(logged)
    torch_results = list(setup["torch_ref_results"].values())
    assert len(results) == len(torch_results)
    for (handle, (name, stack, stats)), (t_name, t_stack, t_stats) in zip(
            results.items(), torch_results):
        assert len(stats) == len(t_stats) == 2
        # The module owning the node is the same as torch's (its path and the class name).
        assert list(stack.values())[-1][0] == list(t_stack.values())[-1][0]
        for value, t_value in zip(stats, t_stats):
            np.testing.assert_allclose(np.asarray(value), to_flax_activation(t_value),
                                       rtol=1e-5, atol=1e-5)


def test_compare_results_match_torch(setup):
    ref = pt2e.prepare_for_propagation_comparison(setup["gm"])
    actual = pt2e.prepare_for_propagation_comparison(setup["gm_actual"])
    for _ in range(2):
        ref(setup["x"])
        actual(setup["x"])
    comparison = pt2e.compare_results(pt2e.extract_results_from_loggers(ref),
                                      pt2e.extract_results_from_loggers(actual))
    torch_comparison = list(setup["torch_comparison"].values())
    assert len(comparison) == len(torch_comparison) > 0
    for (handle, summary), t_summary in zip(comparison.items(), torch_comparison):
        assert summary.handle == handle
        assert summary.ref_module_stack == t_summary.ref_module_stack
        assert summary.actual_module_stack == t_summary.actual_module_stack
        assert len(summary.results) == len(t_summary.results) == 2
        for result, t_result in zip(summary.results, t_summary.results):
            # Quantization noise dominates the float differences between the frameworks.
            np.testing.assert_allclose(float(result.sqnr), float(t_result.sqnr), rtol=1e-3)
            np.testing.assert_allclose(float(result.mse_loss), float(t_result.mse_loss),
                                       rtol=1e-3, atol=1e-9)


def test_compare_on_torch_arrays(setup):
    """jaxq.compare_results on torch's own logged arrays gives torch's numbers."""
    def as_jax(results):
        return {i: (name, stack, [jnp.asarray(to_flax_activation(v)) for v in stats])
                for i, (name, stack, stats) in enumerate(results.values())}

    comparison = pt2e.compare_results(as_jax(setup["torch_ref_results"]),
                                      as_jax(setup["torch_actual_results"]))
    for summary, t_summary in zip(comparison.values(), setup["torch_comparison"].values()):
        for result, t_result in zip(summary.results, t_summary.results):
            np.testing.assert_allclose(float(result.sqnr), float(t_result.sqnr), rtol=1e-5)
            np.testing.assert_allclose(float(result.mse_loss), float(t_result.mse_loss),
                                       rtol=1e-5)


def test_handles_on_a_bare_graph():
    _, flax_model = make_pair()
    graph = capture(flax_model, (jnp.ones((1, 6, 6, 3)),)).graph
    pt2e.generate_numeric_debug_handle(graph)
    handles = [h for h in _handles(graph) if h is not None]
    assert handles == list(range(1, len(handles) + 1))


def test_existing_handles_kept_and_new_ones_count_up():
    _, flax_model = make_pair()
    gm = capture(flax_model, (jnp.ones((1, 6, 6, 3)),))
    computing = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    computing[1].meta[pt2e.CUSTOM_KEY] = {pt2e.NUMERIC_DEBUG_HANDLE_KEY: 10, "other": 1}
    pt2e.generate_numeric_debug_handle(gm)
    handles = [pt2e.numeric_debug_handle(n) for n in computing]
    assert handles == [11, 10] + list(range(12, 12 + len(computing) - 2))
    assert computing[1].meta[pt2e.CUSTOM_KEY]["other"] == 1
    pt2e.generate_numeric_debug_handle(gm)  # idempotent
    assert [pt2e.numeric_debug_handle(n) for n in computing] == handles


def test_handles_stable_across_copies(setup):
    gm = setup["gm"]
    handles = _handles(gm.graph)
    assert _handles(nnx.clone(gm).graph) == handles
    assert _handles(gm.graph.copy()) == handles
    assert _handles(copy.deepcopy(gm).graph) == handles
    # A fresh capture of the same model numbers its nodes the same way.
    again = capture(nnx.clone(gm.root), (setup["x"],))
    pt2e.generate_numeric_debug_handle(again)
    assert _handles(again.graph) == handles


def test_prepare_leaves_model_alone_and_names_loggers(setup):
    gm = setup["gm"]
    before = _handles(gm.graph)
    logged = pt2e.prepare_for_propagation_comparison(gm)
    assert logged.graph is not gm.graph and logged.root is not gm.root
    assert _handles(gm.graph) == before
    names = [name for name, value in vars(logged).items()
             if isinstance(value, pt2e.OutputLogger)]
    assert names == [f"{n.name}_logger0" for n in gm.graph.nodes
                     if pt2e.numeric_debug_handle(n) is not None]
    np.testing.assert_array_equal(logged(setup["x"]), gm(setup["x"]))


def test_jit_and_eager_logging_agree(setup):
    jitted = pt2e.prepare_for_propagation_comparison(setup["gm"])
    eager = pt2e.prepare_for_propagation_comparison(setup["gm"], jit=False)
    jitted(setup["x"])
    size = numeric_debugger._run_and_log_jit._cache_size()
    jitted(setup["x"] + 1.0)
    assert numeric_debugger._run_and_log_jit._cache_size() == size  # no recompilation
    eager(setup["x"])
    eager(setup["x"] + 1.0)
    a = pt2e.extract_results_from_loggers(jitted)
    b = pt2e.extract_results_from_loggers(eager)
    assert a.keys() == b.keys()
    for handle in a:
        for u, v in zip(a[handle][2], b[handle][2]):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-6)


def test_logging_updates_module_state():
    class Net(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
            self.bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return jax.nn.relu(self.bn(self.fc(x)))

    x = jax.random.normal(jax.random.key(0), (8, 3))
    gm = capture(Net(), (x,))
    pt2e.generate_numeric_debug_handle(gm)
    logged = pt2e.prepare_for_propagation_comparison(gm)
    logged(x)
    expected = nnx.clone(gm.root)
    expected(x)
    np.testing.assert_allclose(logged.root.bn.mean[...], expected.bn.mean[...],
                               rtol=1e-6)
    assert not np.allclose(logged.root.bn.mean[...], gm.root.bn.mean[...])


def test_shared_handle_last_node_wins():
    """Like torch, the last node carrying a handle (e.g. a dequantize) is the one kept."""
    class Net(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(3, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return jax.nn.relu(self.fc(x)) * 2.0

    x = jnp.ones((2, 3))
    gm = capture(Net(), (x,))
    pt2e.generate_numeric_debug_handle(gm)
    fc, relu, mul = [n for n in gm.graph.nodes if pt2e.numeric_debug_handle(n)]
    relu.meta[pt2e.CUSTOM_KEY] = dict(fc.meta[pt2e.CUSTOM_KEY])
    logged = pt2e.prepare_for_propagation_comparison(gm)
    logged(x)
    results = pt2e.extract_results_from_loggers(logged)
    assert sorted(results) == [1, 3]
    assert results[1][0] == "relu"
    np.testing.assert_array_equal(results[1][2][0], jax.nn.relu(gm.root.fc(x)))


def test_multiple_output_node_logs_a_tuple():
    class Net(nnx.Module):
        def __call__(self, x):
            return jax.lax.top_k(x, 2)[0] + 0.0

    x = jnp.arange(6.0).reshape(2, 3)
    gm = capture(Net(), (x,))
    pt2e.generate_numeric_debug_handle(gm)
    logged = pt2e.prepare_for_propagation_comparison(gm)
    logged(x)
    results = pt2e.extract_results_from_loggers(logged)
    multi = [stats[0] for _, _, stats in results.values() if isinstance(stats[0], tuple)]
    assert len(multi) == 1 and len(multi[0]) == 2
    summary = pt2e.compare_results(results, results)
    top_k = [s for s in summary.values() if isinstance(s.results[0].sqnr, tuple)][0]
    assert [float(v) for v in top_k.results[0].sqnr] == [np.inf, np.inf]


def test_errors(setup):
    x = setup["x"]
    plain = capture(FlaxNet(), (x,))
    with pytest.raises(ValueError, match="generate_numeric_debug_handle"):
        pt2e.prepare_for_propagation_comparison(plain)
    with pytest.raises(TypeError, match="captured model"):
        pt2e.prepare_for_propagation_comparison(FlaxNet())
    with pytest.raises(TypeError, match="graph_module"):
        pt2e.generate_numeric_debug_handle(FlaxNet())
    with pytest.raises(TypeError, match="prepare_for_propagation_comparison"):
        pt2e.extract_results_from_loggers(setup["gm"])
    with pytest.raises(TypeError, match="jit"):
        pt2e.prepare_for_propagation_comparison(setup["gm"], jit="yes")
    logged = pt2e.prepare_for_propagation_comparison(setup["gm"])
    with pytest.raises(ValueError, match="jax.jit"):
        jax.jit(lambda v: logged(v))(x)
    eager = pt2e.prepare_for_propagation_comparison(setup["gm"], jit=False)
    with pytest.raises(ValueError, match="jax.jit"):
        jax.jit(lambda v: eager(v))(x)


class _UnhashableConfig:
    __hash__ = None


def test_unhashable_static_attribute_falls_back_to_eager():
    class Net(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
            self.config = _UnhashableConfig()

        def __call__(self, x):
            return jax.nn.relu(self.fc(x))

    x = jnp.arange(4.0).reshape(2, 2)
    gm = capture(Net(), (x,))
    pt2e.generate_numeric_debug_handle(gm)
    logged = pt2e.prepare_for_propagation_comparison(gm)
    np.testing.assert_array_equal(logged(x), gm(x))
    results = pt2e.extract_results_from_loggers(logged)
    assert [name for name, _, _ in results.values()] == ["fc", "relu"]
    np.testing.assert_array_equal(results[2][2][0], gm(x))


@pytest.mark.parametrize("jit", [True, False])
def test_logging_other_input_shapes(setup, jit):
    """A captured graph runs on other input shapes; the loggers follow."""
    logged = pt2e.prepare_for_propagation_comparison(setup["gm"], jit=jit)
    bigger = jnp.ones((3, 8, 8, 3))
    np.testing.assert_allclose(logged(bigger), setup["gm"](bigger), rtol=1e-6)
    logged(setup["x"])
    conv_stats = next(iter(pt2e.extract_results_from_loggers(logged).values()))[2]
    assert [s.shape for s in conv_stats] == [(3, 6, 6, 4), (2, 4, 4, 4)]
