"""jaxq.pt2e.lower_pt2e_quantized_to_x86: reference q/dq patterns -> jaxq int8 modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxq.pt2e as pt2e
from jaxq.core.qtensor import QTensor
from jaxq.nn import quantized as nnq
from jaxq.qconfig import default_per_channel_qconfig
from jaxq.qconfig_mapping import get_default_qconfig_mapping
from jaxq.quantize_fx import convert_fx, convert_to_reference_fx, prepare_fx
from tests.pt2e._models import ResidualNet as Net


@pytest.fixture(scope="module")
def models():
    x = jax.random.normal(jax.random.key(0), (8, 6, 6, 3))
    mapping = get_default_qconfig_mapping("x86").set_global(default_per_channel_qconfig)
    prepared = prepare_fx(Net(), mapping, (x,))
    pt2e.generate_numeric_debug_handle(prepared)
    prepared(x)
    reference = convert_to_reference_fx(prepared)
    lowered = pt2e.lower_pt2e_quantized_to_x86(reference, (x,))
    return dict(x=x, prepared=prepared, reference=reference, lowered=lowered,
                converted=convert_fx(prepared))


def test_lowered_modules_and_ops(models):
    lowered = models["lowered"]
    assert type(lowered.root.conv) is nnq.Conv2d
    assert type(lowered.root.fc1) is nnq.Linear and type(lowered.root.fc2) is nnq.Linear
    kinds = [n.meta.get("lowered_from") for n in lowered.graph.nodes]
    assert sum(k is not None for k in kinds) == 5  # conv, fc1, fc2, add(+relu), mul
    # No quantize / dequantize left around the lowered ops: fc1 -> fc2 -> add -> mul
    # run on QTensors end to end.
    names = [n.name for n in lowered.graph.nodes]
    assert sum(name.startswith("dequantize") for name in names) == 3
    # The reference model is unchanged.
    assert type(models["reference"].root.fc1).__module__.startswith(
        "jaxq.nn.quantized.reference")


def test_lowered_matches_native_convert(models):
    x = models["x"]
    for inputs in (x, x * 2.0, -x):
        np.testing.assert_array_equal(models["lowered"](inputs), models["converted"](inputs))
    # ... and the reference representation within one output quantization step.
    scale = [n for n in models["reference"].graph.nodes
             if n.meta.get("quantize")][-1].meta["qparams"]["scale"]
    np.testing.assert_allclose(models["lowered"](x), models["reference"](x),
                               atol=float(scale) * 1.01)


def test_lowered_is_jittable_without_recompiling(models):
    lowered = models["lowered"]
    step = nnx.jit(lambda m, v: m(v))
    np.testing.assert_array_equal(step(lowered, models["x"]), lowered(models["x"]))
    size = step._cache_size() if hasattr(step, "_cache_size") else None
    step(lowered, models["x"] + 1.0)
    if size is not None:
        assert step._cache_size() == size


def test_handles_survive_lowering_and_debugger_runs(models):
    reference, lowered = models["reference"], models["lowered"]
    ref_handles = {n.id: pt2e.numeric_debug_handle(n) for n in reference.graph.nodes}
    for node in lowered.graph.nodes:
        if "lowered_from" in node.meta:
            if "fused_relu" in node.meta:
                assert pt2e.numeric_debug_handle(node) == ref_handles[node.meta["fused_relu"]]
            else:
                assert pt2e.numeric_debug_handle(node) == ref_handles[node.id] is not None
    float_logged = pt2e.prepare_for_propagation_comparison(models["prepared"])
    lowered_logged = pt2e.prepare_for_propagation_comparison(lowered)
    float_logged(models["x"])
    lowered_logged(models["x"])
    comparison = pt2e.compare_results(pt2e.extract_results_from_loggers(float_logged),
                                      pt2e.extract_results_from_loggers(lowered_logged))
    lowered_handles = {pt2e.numeric_debug_handle(n) for n in lowered.graph.nodes
                       if "lowered_from" in n.meta}
    assert lowered_handles <= set(comparison)
    kinds = set()
    for handle in lowered_handles:
        result = comparison[handle].results[0]
        # A lowered op's last node is itself (a QTensor, dequantized for the metrics) or
        # the dequantize after it (which inherits its handle, as in torch).
        kinds.add(type(result.actual))
        assert float(result.sqnr) > 15.0
    assert QTensor in kinds


def test_errors(models):
    with pytest.raises(TypeError, match="GraphModule"):
        pt2e.lower_pt2e_quantized_to_x86(Net(), (models["x"],))
    with pytest.raises(TypeError, match="example_inputs"):
        pt2e.lower_pt2e_quantized_to_x86(models["reference"], models["x"])
    with pytest.raises(ValueError, match="no quantize node"):
        pt2e.lower_pt2e_quantized_to_x86(models["prepared"], (models["x"],))
    # An already lowered (convert_fx) model has nothing left to lower.
    again = pt2e.lower_pt2e_quantized_to_x86(models["converted"], (models["x"],))
    np.testing.assert_array_equal(again(models["x"]), models["converted"](models["x"]))


def test_fused_reference_containers_lower_like_convert_fx():
    """conv -> relu and linear -> relu: the reference graph holds fused containers around
    reference modules; lowering gives the jaxq.nn.intrinsic.quantized modules that
    convert_fx builds, bit-identical."""
    from jaxq.nn import intrinsic as nni
    from jaxq.nn.intrinsic import quantized as nniq
    from jaxq.nn.quantized import reference as nnqr
    from tests.pt2e._models import FlaxNet
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 3))
    prepared = prepare_fx(FlaxNet(), get_default_qconfig_mapping("x86"), (x,))
    prepared(x)
    reference = convert_to_reference_fx(prepared)
    assert type(reference.root.conv) is nni.ConvReLU2d
    assert type(reference.root.conv[0]) is nnqr.Conv2d
    assert type(reference.root.fc1) is nni.LinearReLU
    assert type(reference.root.fc1[0]) is nnqr.Linear
    lowered = pt2e.lower_pt2e_quantized_to_x86(reference, (x,))
    converted = convert_fx(prepared)
    expected_types = {"conv": nniq.ConvReLU2d, "fc1": nniq.LinearReLU, "fc2": nnq.Linear}
    for name, cls in expected_types.items():
        assert type(getattr(lowered.root, name)) is cls
        assert type(getattr(converted.root, name)) is cls
        node = lowered.graph.find(path=name, op="call_module")[0]
        assert node.target is cls
    assert lowered.graph.find(path="conv", op="call_module")[0].meta["lowered_from"] \
        is nni.ConvReLU2d
    # Same graph as convert_fx: the fused modules take and return QTensors.
    def kept(gm):
        return [(n.id, n.op) for n in gm.graph.nodes if not n.meta.get("dequantize")]
    assert kept(lowered) == kept(converted)
    for name in expected_types:
        np.testing.assert_array_equal(getattr(lowered.root, name).scale[...],
                                      getattr(converted.root, name).scale[...])
        np.testing.assert_array_equal(getattr(lowered.root, name).zero_point[...],
                                      getattr(converted.root, name).zero_point[...])
    for inputs in (x, x * 2.0, -x):
        np.testing.assert_array_equal(lowered(inputs), converted(inputs))


def test_convert_fx_quantize_nodes_carry_the_observer_handle(models):
    prepared, converted = models["prepared"], models["converted"]
    handled = 0
    for node in converted.graph.nodes:
        if node.meta.get("quantize"):
            observer = prepared.graph.node(node.id)
            assert observer.meta.get("observer")
            # Straight from convert (no re-derivation by the debugger).
            assert pt2e.numeric_debug_handle(node) == pt2e.numeric_debug_handle(observer)
            handled += pt2e.numeric_debug_handle(node) is not None
    assert handled > 0
