"""jaxq.quantize_fx beside torch.ao.quantization.quantize_fx on twin models.

The same network is built in torch and Flax NNX with the same weights; both go through
prepare_fx -> calibrate (same data) -> convert_fx with the same qconfig mapping (x86
engine, torch's default native backend config). Observer qparams must match (zero points
exactly; scales to float32 accumulation-order noise after the first layer) and the
quantized outputs must agree within one quantization step of the output.
"""

import operator
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.ao.quantization as tq
from flax import nnx
from torch.ao.quantization import quantize_fx as tfx

import jaxq.nn.quantized as nnq
from jaxq import qconfig as jqconfig
from jaxq.eager._tree import get_submodule
from jaxq.qconfig_mapping import QConfigMapping, get_default_qat_qconfig_mapping, \
    get_default_qconfig_mapping
from jaxq.quantize_fx import convert_fx, convert_to_reference_fx, fuse_fx, prepare_fx, \
    prepare_qat_fx
from tests.eager._models import copy_linear
from tests._quantize_fx_twins import (
    twin_mlp, FlaxResidual, twin_cnn, twin_residual, twin_functional, to_torch,
    from_torch, jaxq_observers, assert_same_qparams, run_twins, assert_outputs_close,
    batches)

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)


# --- end to end vs torch ---------------------------------------------------------------

@pytest.mark.parametrize("qconfig", ["x86", "per_tensor"])
def test_mlp_vs_torch(rng, qconfig):
    tmodel, model = twin_mlp()
    if qconfig == "x86":
        t_map, j_map = tq.get_default_qconfig_mapping("x86"), get_default_qconfig_mapping("x86")
    else:
        t_map = tq.QConfigMapping().set_global(tq.default_qconfig)
        j_map = QConfigMapping().set_global(jqconfig.default_qconfig)
    data = batches(rng, (8, 16))
    tprepared, prepared = run_twins(tmodel, model, t_map, j_map, data)
    assert_same_qparams(tprepared, prepared)
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    assert type(quantized.root.fc1).__name__ == "LinearReLU"
    assert isinstance(quantized.root.fc2, nnq.Linear)
    diff = assert_outputs_close(tquantized, quantized, data[0])
    # Same int8 kernels and qparams: bit-exact for the MLP.
    assert diff.max() == 0.0


def test_conv_bn_relu_vs_torch(rng):
    tmodel, model = twin_cnn(rng)
    t_map = tq.QConfigMapping().set_global(tq.default_qconfig)
    j_map = QConfigMapping().set_global(jqconfig.default_qconfig)
    data = batches(rng, (2, 8, 8, 3))
    tprepared, prepared = run_twins(tmodel, model, t_map, j_map, data)
    # Conv+BN+ReLU folded into one ConvReLU2d, as torch.
    assert type(get_submodule(prepared.root, "conv1")).__name__ == "ConvReLU2d"
    assert "bn" not in vars(prepared.root)
    assert_same_qparams(tprepared, prepared)
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    assert_outputs_close(tquantized, quantized, data[1])


def test_residual_add_vs_torch(rng):
    tmodel, model = twin_residual(rng)
    t_map = tq.QConfigMapping().set_global(tq.default_qconfig)
    j_map = QConfigMapping().set_global(jqconfig.default_qconfig)
    data = batches(rng, (2, 8, 8, 3))
    tprepared, prepared = run_twins(tmodel, model, t_map, j_map, data)
    assert_same_qparams(tprepared, prepared)
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    add = [n for n in quantized.graph.nodes if n.target is operator.add][0]
    assert add.meta["quantized_op"] is nnq.ops.add_relu
    assert_outputs_close(tquantized, quantized, data[2])


def test_function_ops_between_modules_vs_torch(rng):
    tmodel, model = twin_functional()
    data = batches(rng, (8, 16))
    tprepared, prepared = run_twins(tmodel, model, tq.get_default_qconfig_mapping("x86"),
                                    get_default_qconfig_mapping("x86"), data)
    t_obs, j_obs = assert_same_qparams(tprepared, prepared)
    # tanh: fixed qparams 2/256, zero point 128.
    tanh_obs = [o for o in j_obs if type(o).__name__ == "FixedQParamsObserver"]
    assert len(tanh_obs) == 1
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    # sin runs in float between a dequantize and a quantize.
    sin = [n for n in quantized.graph.nodes if n.name.startswith("sin")][0]
    producers = [quantized.graph.node(i) for i in sin.input_ids]
    assert producers[0].meta.get("dequantize")
    assert_outputs_close(tquantized, quantized, data[0])


def test_convert_to_reference_vs_torch(rng):
    tmodel, model = twin_mlp()
    data = batches(rng, (8, 16))
    t_map = tq.QConfigMapping().set_global(tq.default_qconfig)
    j_map = QConfigMapping().set_global(jqconfig.default_qconfig)
    tprepared, prepared = run_twins(tmodel, model, t_map, j_map, data)
    tref, ref = tfx.convert_to_reference_fx(tprepared), convert_to_reference_fx(prepared)
    assert type(ref.root.fc2).__module__.startswith("jaxq.nn.quantized.reference")
    expected = tref(to_torch(data[0])).detach().numpy()
    got = np.asarray(ref(jnp.asarray(data[0])))
    scale = float(jaxq_observers(prepared)[-1].calculate_qparams()[0][0])
    assert np.abs(got - expected).max() <= scale * 1.0001


@pytest.mark.parametrize("case", ["linear_relu", "conv_relu"])
def test_convert_to_reference_fused_vs_torch(rng, case):
    """A fused module becomes the fused container around the reference module, as
    torch's convert_weighted_module builds it (nni.LinearReLU(nnqr.Linear, ReLU))."""
    import torch.ao.nn.intrinsic as tnni
    import torch.ao.nn.quantized.reference as tnnqr

    import jaxq.nn.intrinsic as nni
    import jaxq.nn.quantized.reference as nnqr
    from jaxq.nn import ReLU
    if case == "linear_relu":
        tmodel, model = twin_mlp()
        data, name = batches(rng, (8, 16)), "fc1"
        t_map = tq.QConfigMapping().set_global(tq.default_qconfig)
        j_map = QConfigMapping().set_global(jqconfig.default_qconfig)
        classes = (tnni.LinearReLU, tnnqr.Linear, nni.LinearReLU, nnqr.Linear)
    else:  # conv + bn + relu, per-channel weights
        tmodel, model = twin_cnn(rng)
        data, name = batches(rng, (2, 8, 8, 3)), "conv1"
        t_map, j_map = tq.get_default_qconfig_mapping("x86"), get_default_qconfig_mapping("x86")
        classes = (tnni.ConvReLU2d, tnnqr.Conv2d, nni.ConvReLU2d, nnqr.Conv2d)
    tprepared, prepared = run_twins(tmodel, model, t_map, j_map, data)
    tref, ref = tfx.convert_to_reference_fx(tprepared), convert_to_reference_fx(prepared)
    t_fused_cls, t_ref_cls, fused_cls, ref_cls = classes
    tfused, fused = tref.get_submodule(name), get_submodule(ref.root, name)
    assert type(tfused) is t_fused_cls and type(tfused[0]) is t_ref_cls
    assert type(fused) is fused_cls and type(fused[0]) is ref_cls
    assert type(fused[1]) is ReLU and len(fused) == len(tfused) == 2
    # The prepared model still holds the float container.
    assert type(get_submodule(prepared.root, name)[0]) in (nnx.Linear, nnx.Conv)
    # Reference weights: torch's weight qparams.
    t_weight, weight = tfused[0], fused[0]
    assert weight.weight_qscheme.name == str(t_weight.weight_qscheme).split(".")[-1]
    assert weight.weight_dtype.name == str(t_weight.weight_dtype).split(".")[-1]
    np.testing.assert_array_equal(np.asarray(weight.weight_zero_point[...]).reshape(-1),
                                  t_weight.weight_zero_point.numpy().reshape(-1))
    np.testing.assert_array_equal(np.asarray(weight.weight_scale[...]).reshape(-1),
                                  t_weight.weight_scale.numpy().reshape(-1))
    if case == "conv_relu":
        assert weight.weight_axis_int == t_weight.weight_axis_int == 0
    # Graph: dequantize -> fused reference container -> quantize, as torch's.
    node = ref.graph.find(path=name, op="call_module")[0]
    assert node.target is fused_cls
    assert ref.graph.node(node.input_ids[0]).meta.get("dequantize")
    (user,) = ref.graph.users(node)
    assert user.meta.get("quantize")
    t_node = next(n for n in tref.graph.nodes if n.op == "call_module" and n.target == name)
    assert t_node.args[0].target == "dequantize"
    assert [u.target for u in t_node.users] == [torch.quantize_per_tensor]
    # Numerics: within one output quantization step of torch's reference model.
    out_scale = float([n for n in ref.graph.nodes if n.meta.get("quantize")][-1]
                      .meta["qparams"]["scale"])
    for x in data[:2]:
        expected = from_torch(tref(to_torch(x)))
        got = np.asarray(ref(jnp.asarray(x)))
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= out_scale * 1.0001


# --- QConfigMapping precedence ---------------------------------------------------------

def _float_modules(quantized):
    """Names of the MLP's layers that stayed float (jaxq)."""
    return {name for name in ("fc1", "fc2")
            if not type(getattr(quantized.root, name)).__module__.startswith(
                ("jaxq.nn.quantized", "jaxq.nn.intrinsic.quantized"))}


def _torch_float_modules(tquantized):
    return {name for name in ("fc1", "fc2")
            if not type(getattr(tquantized, name)).__module__.startswith(
                ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))}


@pytest.mark.parametrize("case", ["module_name_none", "object_type_none", "global_none",
                                  "regex", "order"])
def test_qconfig_mapping_precedence_vs_torch(rng, case):
    tq_cfg, jq_cfg = tq.default_qconfig, jqconfig.default_qconfig
    t_map, j_map = tq.QConfigMapping(), QConfigMapping()
    if case == "module_name_none":
        t_map.set_global(tq_cfg).set_module_name("fc2", None)
        j_map.set_global(jq_cfg).set_module_name("fc2", None)
        expected_float = {"fc2"}
    elif case == "object_type_none":
        t_map.set_global(tq_cfg).set_object_type(torch.nn.Linear, None) \
            .set_module_name("fc1", tq_cfg)
        j_map.set_global(jq_cfg).set_object_type(nnx.Linear, None) \
            .set_module_name("fc1", jq_cfg)
        expected_float = {"fc2"}
    elif case == "global_none":
        t_map.set_global(None).set_module_name("fc1", tq_cfg)
        j_map.set_global(None).set_module_name("fc1", jq_cfg)
        expected_float = {"fc2"}
    elif case == "regex":
        t_map.set_global(None).set_module_name_regex("fc.*", tq_cfg) \
            .set_module_name("fc1", None)
        j_map.set_global(None).set_module_name_regex("fc.*", jq_cfg) \
            .set_module_name("fc1", None)
        expected_float = {"fc1"}
    else:
        t_map.set_global(tq_cfg).set_module_name_object_type_order("", torch.nn.Linear, 1,
                                                                   None)
        j_map.set_global(jq_cfg).set_module_name_object_type_order("", nnx.Linear, 1, None)
        expected_float = {"fc2"}
    tmodel, model = twin_mlp()
    data = batches(rng, (8, 16), n=2)
    tprepared, prepared = run_twins(tmodel, model, t_map, j_map, data)
    assert_same_qparams(tprepared, prepared)
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    assert _torch_float_modules(tquantized) == expected_float
    assert _float_modules(quantized) == expected_float
    assert_outputs_close(tquantized, quantized, data[0])


def test_fused_qconfig_mismatch_raises_like_torch():
    # torch: object_type qconfigs of fused constituents must agree.
    t_map = tq.QConfigMapping().set_global(tq.default_qconfig).set_object_type(
        torch.nn.Linear, tq.default_per_channel_qconfig)
    j_map = QConfigMapping().set_global(jqconfig.default_qconfig).set_object_type(
        nnx.Linear, jqconfig.default_per_channel_qconfig)

    class TorchLinearReLU(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.relu = torch.nn.ReLU()

        def forward(self, x):
            return self.relu(self.fc(x))

    with pytest.raises(LookupError):
        tfx.prepare_fx(TorchLinearReLU().eval(), t_map, (torch.ones(2, 4),))

    class LinearReLU(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(4, 4, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return jax.nn.relu(self.fc(x))

    with pytest.raises(ValueError, match="same qconfigs"):
        prepare_fx(LinearReLU(), j_map, (jnp.ones((2, 4)),))


# --- jit, errors, fuse_fx --------------------------------------------------------------

def test_jit_no_recompile(rng):
    _, model = twin_mlp()
    data = batches(rng, (8, 16), n=2)
    prepared = prepare_fx(model, QConfigMapping().set_global(jqconfig.default_qconfig),
                          (jnp.asarray(data[0]),))
    traces = []

    @nnx.jit
    def run(m, x):
        traces.append(1)
        return m(x)

    run(prepared, jnp.asarray(data[0]))
    run(prepared, jnp.asarray(data[1]))
    assert len(traces) == 1
    quantized = convert_fx(prepared)
    traces.clear()
    eager = np.asarray(quantized(jnp.asarray(data[0])))
    out = np.asarray(run(quantized, jnp.asarray(data[0])))
    run(quantized, jnp.asarray(data[1]))
    assert len(traces) == 1
    np.testing.assert_array_equal(out, eager)


def test_bad_inputs():
    _, model = twin_mlp()
    x = (jnp.ones((2, 16)),)
    mapping = QConfigMapping().set_global(jqconfig.default_qconfig)
    with pytest.raises(TypeError, match="model"):
        prepare_fx(lambda v: v, mapping, x)
    with pytest.raises(TypeError, match="example_inputs"):
        prepare_fx(model, mapping, jnp.ones((2, 16)))
    with pytest.raises(TypeError, match="qconfig_mapping"):
        prepare_fx(model, "x86", x)
    with pytest.raises(TypeError, match="backend_config"):
        prepare_fx(model, mapping, x, backend_config="x86")
    with pytest.raises(NotImplementedError, match="_equalization_config"):
        prepare_fx(model, mapping, x, _equalization_config=object())
    with pytest.raises(TypeError, match="graph_module"):
        convert_fx(model)
    with pytest.raises(ValueError, match="not prepared"):
        convert_fx(fuse_fx(model, example_inputs=x))
    with pytest.raises(ValueError, match="example_inputs"):
        fuse_fx(model)
    with pytest.raises(ValueError, match="structure"):
        prepare_fx(model, mapping, x)(jnp.ones((2, 16)), jnp.ones((2, 16)))


def test_fuse_fx_folds_bn_like_torch(rng):
    tmodel, model = twin_cnn(rng)
    x = batches(rng, (2, 8, 8, 3), n=1)[0]
    tfused = tfx.fuse_fx(tmodel)
    fused = fuse_fx(model, example_inputs=(jnp.asarray(x),))
    assert type(tfused.conv1).__name__ == "ConvReLU2d"
    assert type(fused.root.conv1).__name__ == "ConvReLU2d"
    np.testing.assert_allclose(np.asarray(fused(jnp.asarray(x))),
                               from_torch(tfused(to_torch(x))), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="eval"):
        model.train()
        fuse_fx(model, example_inputs=(jnp.asarray(x),))


# --- QAT -------------------------------------------------------------------------------

@pytest.mark.slow
def test_qat_step_with_optax(rng):
    tmodel, model = twin_cnn(rng)
    model.train()
    x = jnp.asarray(batches(rng, (4, 8, 8, 3), n=1)[0])
    prepared = prepare_qat_fx(model, get_default_qat_qconfig_mapping("x86"), (x,))
    assert type(get_submodule(prepared.root, "conv1")).__name__ == "ConvBnReLU2d"
    assert type(get_submodule(prepared.root, "conv1")).__module__.startswith(
        "jaxq.nn.intrinsic.qat")
    target = jnp.zeros((4, 6, 6, 4))
    optimizer = nnx.Optimizer(prepared, optax.sgd(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt, inputs):
        loss, grads = nnx.value_and_grad(lambda mm: jnp.mean((mm(inputs) - target) ** 2))(m)
        opt.update(m, grads)
        return loss

    before = np.asarray(get_submodule(prepared.root, "conv2").kernel.get_value()).copy()
    losses = [float(step(prepared, optimizer, x)) for _ in range(3)]
    after = np.asarray(get_submodule(prepared.root, "conv2").kernel.get_value())
    assert np.all(np.isfinite(losses)) and not np.array_equal(before, after)
    assert losses[-1] < losses[0]
    prepared.eval()
    quantized = convert_fx(prepared)
    assert type(quantized.root.conv1).__module__.startswith("jaxq.nn.intrinsic.quantized")
    run = nnx.jit(lambda m, inputs: m(inputs))
    reference = np.asarray(run(prepared, x))
    got = np.asarray(run(quantized, x))
    scale = float(jaxq_observers(prepared)[-1].calculate_qparams()[0][0])
    assert np.abs(got - reference).max() <= 2 * scale


@pytest.mark.parametrize("kind", ["mlp", "cnn",
                                  pytest.param("residual", marks=pytest.mark.slow)])
def test_qat_vs_torch(rng, kind):
    """prepare_qat_fx in training mode: fake-quantized outputs (BatchNorm folded into the
    fake-quantized conv weight, batch statistics, running-statistics updates) and
    fake-quant qparams match torch; the residual model uses the default x86 QAT mapping
    (fused moving-average fake-quant, per-channel weights)."""
    torch.backends.quantized.engine = "x86"
    twins = {"mlp": lambda: twin_mlp(), "cnn": lambda: twin_cnn(rng),
             "residual": lambda: twin_residual(rng)}
    tmodel, model = twins[kind]()
    tmodel.train()
    model.train()
    shape = (8, 16) if kind == "mlp" else (4, 8, 8, 3)
    x = batches(rng, shape, n=1)[0]
    if kind == "residual":
        t_map = tq.get_default_qat_qconfig_mapping("x86")
        j_map = get_default_qat_qconfig_mapping("x86")
    else:
        t_map = tq.QConfigMapping().set_global(tq.default_qat_qconfig)
        j_map = QConfigMapping().set_global(jqconfig.default_qat_qconfig)
    tprepared = tfx.prepare_qat_fx(tmodel, t_map, (to_torch(x),))
    prepared = prepare_qat_fx(model, j_map, (jnp.asarray(x),))
    for _ in range(2):
        expected = from_torch(tprepared(to_torch(x)))
        got = np.asarray(prepared(jnp.asarray(x)))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert_same_qparams(tprepared, prepared)
    tprepared.eval()
    prepared.eval()
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    assert_outputs_close(tquantized, quantized, x)


class TorchCat(torch.nn.Module):
    """cat shares one observer among its inputs and output; ``a`` is called twice."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(8, 4)
        self.b = torch.nn.Linear(8, 4)
        self.c = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.c(self.a(torch.cat([self.a(x), self.b(x)], dim=1)))


class FlaxCat(nnx.Module):
    def __init__(self):
        self.a = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
        self.b = nnx.Linear(8, 4, rngs=nnx.Rngs(1))
        self.c = nnx.Linear(4, 2, rngs=nnx.Rngs(2))

    def __call__(self, x):
        return self.c(self.a(jnp.concatenate([self.a(x), self.b(x)], axis=1)))


def test_cat_shared_observers_and_module_called_twice_vs_torch(rng):
    torch.manual_seed(0)
    tmodel, model = TorchCat().eval(), FlaxCat()
    for name in "abc":
        copy_linear(getattr(model, name), getattr(tmodel, name))
    data = batches(rng, (8, 8))
    tprepared, prepared = run_twins(
        tmodel, model, tq.QConfigMapping().set_global(tq.default_qconfig),
        QConfigMapping().set_global(jqconfig.default_qconfig), data)
    _, observers = assert_same_qparams(tprepared, prepared)
    cat = prepared.graph.find(target=jnp.concatenate)[0]
    paths = {prepared.graph.node(i).module_path for i in cat.input_ids}
    assert len(paths) == 1  # both inputs observed by the same observer
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    assert_outputs_close(tquantized, quantized, data[0])


@pytest.mark.parametrize("dynamic", ["int8", "float16"])
def test_dynamic_vs_torch(rng, dynamic):
    t_cfg, j_cfg = ((tq.default_dynamic_qconfig, jqconfig.default_dynamic_qconfig)
                    if dynamic == "int8" else
                    (tq.float16_dynamic_qconfig, jqconfig.float16_dynamic_qconfig))
    tmodel, model = twin_mlp()
    data = batches(rng, (8, 16), n=1)
    tprepared, prepared = run_twins(tmodel, model, tq.QConfigMapping().set_global(t_cfg),
                                    QConfigMapping().set_global(j_cfg), data)
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    assert type(quantized.root.fc1).__module__ == "jaxq.nn.intrinsic.quantized.dynamic"
    assert type(tquantized.fc1).__name__ == "LinearReLU"
    expected = tquantized(to_torch(data[0])).detach().numpy()
    got = np.asarray(quantized(jnp.asarray(data[0])))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


class TorchScalarOps(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.fc2 = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.fc2((self.fc(x) + 0.5) * 2.0)


class FlaxScalarOps(nnx.Module):
    def __init__(self):
        self.fc = nnx.Linear(4, 4, rngs=nnx.Rngs(0))
        self.fc2 = nnx.Linear(4, 4, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.fc2((self.fc(x) + 0.5) * 2.0)


def test_scalar_binary_ops_share_qparams_vs_torch(rng):
    """``x + 0.5`` / ``x * 2.0``: one tensor argument, so the output shares the input's
    observer (num_tensor_args_to_observation_type)."""
    torch.manual_seed(0)
    tmodel, model = TorchScalarOps().eval(), FlaxScalarOps()
    copy_linear(model.fc, tmodel.fc)
    copy_linear(model.fc2, tmodel.fc2)
    data = batches(rng, (8, 4))
    tprepared, prepared = run_twins(
        tmodel, model, tq.QConfigMapping().set_global(tq.default_qconfig),
        QConfigMapping().set_global(jqconfig.default_qconfig), data)
    _, observers = assert_same_qparams(tprepared, prepared)
    assert len(observers) == 3
    tquantized, quantized = tfx.convert_fx(tprepared), convert_fx(prepared)
    assert_outputs_close(tquantized, quantized, data[0])


def test_other_batch_sizes_after_prepare(rng):
    """Captured with batch 4, calibrated with 8 and 3, run with 1 (jitted)."""
    model = FlaxResidual()
    data = batches(rng, (8, 8, 8, 3), n=1)[0]
    prepared = prepare_fx(model, QConfigMapping().set_global(jqconfig.default_qconfig),
                          (jnp.asarray(data[:4]),))
    run = nnx.jit(lambda m, x: m(x))
    run(prepared, jnp.asarray(data))
    run(prepared, jnp.asarray(data[:3]))
    quantized = convert_fx(prepared)
    full = np.asarray(run(quantized, jnp.asarray(data)))
    single = np.asarray(run(quantized, jnp.asarray(data[5:6])))
    np.testing.assert_array_equal(single, full[5:6])


def test_prepare_custom_config(rng):
    from jaxq.custom_config import PrepareCustomConfig
    from tests.fx._models import Net, vector
    x = vector()
    mapping = QConfigMapping().set_global(jqconfig.default_qconfig)
    config = PrepareCustomConfig().set_non_traceable_module_names(["block"])
    prepared = prepare_fx(Net(), mapping, (x,), prepare_custom_config=config)
    (block,) = prepared.graph.find(path="block")
    assert block.op == "call_module" and "qconfig" not in block.meta  # no pattern: float
    prepared(x)
    quantized = convert_fx(prepared)
    assert type(quantized.root.block.fc) is nnx.Linear
    assert isinstance(quantized.root.head, nnq.Linear)
    np.testing.assert_allclose(np.asarray(quantized(x)), np.asarray(Net()(x)), atol=0.1)
    with pytest.raises(NotImplementedError, match="standalone_module_names"):
        prepare_fx(Net(), mapping, (x,), prepare_custom_config=PrepareCustomConfig()
                   .set_standalone_module_name("block", None, (x,), None, None))


def test_fuse_fx_accepts_a_captured_graph_module(rng):
    from jaxq.fx import capture
    _, model = twin_cnn(rng)
    x = jnp.asarray(batches(rng, (1, 8, 8, 3), n=1)[0])
    fused = fuse_fx(capture(model, (x,)))
    assert type(fused.root.conv1).__name__ == "ConvReLU2d"
    assert fused.graph.meta["stage"] == "fused"


def test_convert_time_qconfig_mapping_vs_torch(rng):
    """A convert-time mapping may turn prepared ops back to float; an observer between
    two such ops (or the model input / output) disappears, as in torch."""
    tmodel, model = twin_mlp()
    data = batches(rng, (8, 16), n=1)
    tprepared, prepared = run_twins(
        tmodel, model, tq.QConfigMapping().set_global(tq.default_qconfig),
        QConfigMapping().set_global(jqconfig.default_qconfig), data)
    t_map = tq.QConfigMapping().set_global(tq.default_qconfig).set_module_name(
        "fc1", None).set_module_name("fc2", None)
    j_map = QConfigMapping().set_global(jqconfig.default_qconfig).set_module_name(
        "fc1", None).set_module_name("fc2", None)
    tquantized = tfx.convert_fx(tprepared, qconfig_mapping=t_map)
    quantized = convert_fx(prepared, qconfig_mapping=j_map)
    t_quantize = [n for n in tquantized.graph.nodes if n.target is torch.quantize_per_tensor]
    j_quantize = [n for n in quantized.graph.nodes if n.meta.get("quantize")]
    assert len(t_quantize) == len(j_quantize) == 0
    expected = tquantized(to_torch(data[0])).detach().numpy()
    np.testing.assert_allclose(np.asarray(quantized(jnp.asarray(data[0]))), expected,
                               rtol=1e-5, atol=1e-5)
