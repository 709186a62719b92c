"""jaxq.nn.quantized.ConvTranspose1d/2d/3d vs torch.ao.nn.quantized, bit-exact.

The reference engine is fbgemm (as tests/kernels/torch_ref.py does for convolutions):
torch 2.13's x86 engine sends some transposed convs (groups=1, output_padding=0,
symmetric weight) to oneDNN, whose results differ from fbgemm's and from the float
reference when in_channels != out_channels (checked in
``test_x86_engine_onednn_transposed_conv_disagrees``); everywhere else x86 == fbgemm.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.qconfig as jqconfig
import torch.ao.quantization as tq
from jaxq.core.dtypes import qint8, quint8
from jaxq.core.qtensor import QTensor
from jaxq.nn.quantized import conv_transpose as ct
from torch.ao.nn import quantized as tnnq
from tests.nn.quantized.torch_helpers import (
    assert_qtensor_matches, f32, jaxq_weight, random_qtensor, random_weight,
    to_channels_last)



@pytest.fixture(autouse=True)
def fbgemm_engine():
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield
    torch.backends.quantized.engine = previous

CASES = [
    # rank, spatial, kernel, stride, padding, output_padding, groups, dilation, batch, bias
    (1, (7,), 3, 2, 1, 1, 2, 1, 2, True),
    (1, (5,), 2, 3, 2, 2, 1, 1, 1, False),  # padding > dilation * (k - 1): cropped
    (2, (5, 4), (3, 2), (2, 1), (1, 0), (1, 0), 2, (1, 2), 2, True),
    (2, (3, 5), 3, 1, 2, 1, 1, 2, 1, False),  # output_padding < dilation
    (2, (4, 4), 3, 2, 1, 1, 4, 1, 1, True),  # depthwise
    (2, (3, 3), 2, 2, 0, 0, 1, 1, 1, True),
    (3, (3, 4, 2), (2, 3, 2), (2, 1, 3), (0, 1, 1), (1, 0, 2), 2, (1, 2, 1), 1, True),
    (3, (2, 3, 2), 2, 1, 0, 0, 1, 1, 2, False),
]


def _modules(rank, kernel, stride, padding, output_padding, groups, dilation, bias=True):
    args = (4, 8, kernel, stride, padding, output_padding, groups, bias, dilation)
    return (getattr(tnnq, f"ConvTranspose{rank}d")(*args),
            getattr(ct, f"ConvTranspose{rank}d")(*args))


def _set_qparams(ref, mod, scale, zero_point):
    ref.scale, ref.zero_point = f32(scale), zero_point
    mod.scale.set_value(jnp.float32(scale))
    mod.zero_point.set_value(jnp.int32(zero_point))


_apply = nnx.jit(lambda m, x: m(x))


@pytest.mark.parametrize(
    "rank,spatial,kernel,stride,padding,output_padding,groups,dilation,batch,bias", CASES)
def test_forward_vs_torch(rng, rank, spatial, kernel, stride, padding, output_padding,
                          groups, dilation, batch, bias):
    ref, mod = _modules(rank, kernel, stride, padding, output_padding, groups, dilation,
                        bias)
    wq = random_weight(rng, (4, 8 // groups) + tuple(ref.kernel_size), False,
                       zero_points=True)
    b = rng.normal(size=8).astype(np.float32) if bias else None
    ref.set_weight_bias(wq, None if b is None else torch.tensor(b))
    mod.set_weight_bias(jaxq_weight(wq), b)
    _set_qparams(ref, mod, 0.05, 60)
    tq_x, jq_x = random_qtensor(rng, (batch, 4) + spatial, 0.03, 77)
    assert_qtensor_matches(_apply(mod, jq_x), ref(tq_x))
    np.testing.assert_array_equal(mod.weight().int_repr(), ref.weight().int_repr().numpy())
    assert mod.weight().q_scale() == ref.weight().q_scale()
    assert mod.weight().q_zero_point() == ref.weight().q_zero_point()
    if bias:
        np.testing.assert_array_equal(mod.bias(), ref.bias().detach().numpy())


@pytest.mark.parametrize("rank", [2])
def test_extreme_qparams_saturate_like_torch(rng, rank):
    """Large accumulators and a tiny output scale: the clamp of the epilogue."""
    ref, mod = _modules(rank, 2, 2, 0, 1, 1, 1)
    wq = random_weight(rng, (4, 8) + (2,) * rank, False, zero_points=True)
    b = rng.normal(size=8).astype(np.float32) * 10
    ref.set_weight_bias(wq, torch.tensor(b))
    mod.set_weight_bias(jaxq_weight(wq), b)
    _set_qparams(ref, mod, 0.001, 3)
    tq_x, jq_x = random_qtensor(rng, (1, 4) + (3,) * rank, 0.2, 255, spread=40.0)
    assert_qtensor_matches(mod(jq_x), ref(tq_x))


@pytest.mark.parametrize("engine", ["x86", "fbgemm"])
def test_torch_refuses_per_channel(engine):
    """Why per-channel is checked channel by channel below: torch's x86 / fbgemm refuse it."""
    torch.backends.quantized.engine = engine
    ref = tnnq.ConvTranspose2d(4, 6, 3)
    w = torch.quantize_per_channel(torch.randn(4, 6, 3, 3), torch.full((6,), 0.01),
                                   torch.zeros(6, dtype=torch.long), 1, torch.qint8)
    with pytest.raises(RuntimeError, match="Per Channel"):
        ref.set_weight_bias(w, None)


@pytest.mark.parametrize("rank,groups", [(1, 2), (2, 3), (3, 1)])
def test_per_channel_axis1_vs_torch_per_tensor(rng, rank, groups):
    """Per-channel (axis 1) output channels equal torch's per-tensor results with that
    channel's scale / zero point (the same integers)."""
    in_channels, out_per_group = 3 * groups, 2
    out_channels = out_per_group * groups
    args = dict(kernel_size=3, stride=2, padding=1, output_padding=1, groups=groups)
    mod = getattr(ct, f"ConvTranspose{rank}d")(in_channels, out_channels, **args)
    shape = (in_channels, out_per_group) + (3,) * rank
    values = rng.integers(-128, 128, shape).astype(np.int8)
    scales = np.array([0.011, 0.023], np.float32)
    zero_points = np.array([2, -3], np.int32)
    bias = rng.normal(size=out_channels).astype(np.float32)
    mod.set_weight_bias(QTensor(jnp.asarray(values), scales, zero_points, qint8,
                                "per_channel_affine", 1), bias)
    mod.scale.set_value(jnp.float32(0.07))
    mod.zero_point.set_value(jnp.int32(100))
    tq_x, jq_x = random_qtensor(rng, (2, in_channels) + (4,) * rank, 0.03, 77)
    got = _apply(mod, jq_x)
    weight = mod.weight()
    assert weight.q_per_channel_axis() == 1
    np.testing.assert_array_equal(weight.int_repr(), values)
    np.testing.assert_array_equal(weight.q_per_channel_scales(), scales)
    np.testing.assert_array_equal(weight.q_per_channel_zero_points(), zero_points)
    for j in range(out_per_group):
        ref = getattr(tnnq, f"ConvTranspose{rank}d")(in_channels, out_channels, **args)
        wq = torch._make_per_tensor_quantized_tensor(torch.tensor(values), float(scales[j]),
                                                     int(zero_points[j]))
        ref.set_weight_bias(wq, torch.tensor(bias))
        ref.scale, ref.zero_point = f32(0.07), 100
        expected = ref(tq_x).int_repr().numpy()
        channels = [g * out_per_group + j for g in range(groups)]
        np.testing.assert_array_equal(np.moveaxis(np.asarray(got.int_repr()), -1, 1)
                                      [:, channels], expected[:, channels])


def test_functional_matches_module(rng):
    ref, mod = _modules(2, 3, 2, 1, 1, 2, 1)
    wq = random_weight(rng, (4, 4, 3, 3), False, zero_points=True)
    b = rng.normal(size=8).astype(np.float32)
    ref.set_weight_bias(wq, torch.tensor(b))
    mod.set_weight_bias(jaxq_weight(wq), b)
    _set_qparams(ref, mod, 0.05, 60)
    tq_x, jq_x = random_qtensor(rng, (1, 4, 4, 5), 0.03, 77)
    fn = jax.jit(lambda x: ct.conv_transpose2d(x, jaxq_weight(wq), b, stride=2, padding=1,
                                               output_padding=1, groups=2, scale=0.05,
                                               zero_point=60))
    assert_qtensor_matches(fn(jq_x), ref(tq_x))


def test_jit_does_not_recompile(rng):
    mod = ct.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
    traces = []

    @nnx.jit
    def run(m, x):
        traces.append(1)
        return m(x)

    _, x1 = random_qtensor(rng, (1, 4, 5, 5), 0.03, 77)
    _, x2 = random_qtensor(rng, (1, 4, 5, 5), 0.05, 10)
    first = run(mod, x1)
    mod.scale.set_value(jnp.float32(0.3))
    mod.zero_point.set_value(jnp.int32(5))
    second = run(mod, x2)
    assert len(traces) == 1
    assert first.shape == second.shape == (1, 10, 10, 6)
    assert float(second.scale) == np.float32(0.3) and int(second.zero_point) == 5


@pytest.mark.parametrize("rank,transpose_kernel", [(2, True)])
def test_from_float_vs_torch(rng, rank, transpose_kernel):
    k, s, p, op, d = 3, 2, 1, 1, 1
    tconv = getattr(torch.nn, f"ConvTranspose{rank}d")(3, 4, k, s, p, op, dilation=d)
    x = rng.normal(size=(2, 3) + (5,) * rank).astype(np.float32)
    tconv.qconfig = tq.default_qconfig
    tconv.activation_post_process = tconv.qconfig.activation()
    y = tconv(torch.tensor(x))
    tconv.activation_post_process(y)
    reach = d * (k - 1)
    jconv = nnx.ConvTranspose(3, 4, (k,) * rank, strides=s,
                              padding=((reach - p, reach - p + op),) * rank,
                              kernel_dilation=d, transpose_kernel=transpose_kernel,
                              rngs=nnx.Rngs(0))
    w = tconv.weight.detach().numpy()  # (in, out, *k)
    n = w.ndim
    if transpose_kernel:  # (*k, out, in), convolved flipped and swapped
        kernel = w.transpose((*range(2, n), 1, 0))
    else:  # (*k, in, out), convolved as is: torch's weight flipped
        kernel = np.flip(w, axis=tuple(range(2, n))).transpose((*range(2, n), 0, 1))
    jconv.kernel.set_value(jnp.asarray(np.ascontiguousarray(kernel)))
    jconv.bias.set_value(jnp.asarray(tconv.bias.detach().numpy()))
    y_flax = jconv(jnp.asarray(to_channels_last(x)))
    np.testing.assert_allclose(np.asarray(y_flax), to_channels_last(y.detach().numpy()),
                               rtol=1e-5, atol=1e-5)
    jconv.qconfig = jqconfig.default_qconfig
    jconv.activation_post_process = jqconfig.default_qconfig.activation()
    jconv.activation_post_process(jnp.asarray(to_channels_last(y.detach().numpy())))
    ref = getattr(tnnq, f"ConvTranspose{rank}d").from_float(tconv)
    mod = getattr(ct, f"ConvTranspose{rank}d").from_float(jconv)
    assert mod.padding == ((p, p),) * rank and mod.output_padding == (op,) * rank
    np.testing.assert_array_equal(mod.weight().int_repr(), ref.weight().int_repr().numpy())
    assert mod.weight().q_scale() == ref.weight().q_scale()
    assert float(mod.scale.get_value()) == np.float32(ref.scale)
    assert int(mod.zero_point.get_value()) == ref.zero_point
    tq_x, jq_x = random_qtensor(rng, (2, 3) + (5,) * rank, 0.02, 128)
    assert_qtensor_matches(_apply(mod, jq_x), ref(tq_x))


def test_from_float_flax_same_padding_crops_like_torch(rng):
    """Flax 'SAME' (k=3, s=2) is torch's full output with its last row / column cut."""
    jconv = nnx.ConvTranspose(2, 3, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(1))
    jconv.qconfig = jqconfig.default_qconfig
    jconv.activation_post_process = jqconfig.default_qconfig.activation()
    x = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    jconv.activation_post_process(jconv(jnp.asarray(x)))
    mod = ct.ConvTranspose2d.from_float(jconv)
    assert mod.padding == ((0, 1), (0, 1)) and mod.output_padding == (0, 0)
    ref = tnnq.ConvTranspose2d(2, 3, 3, stride=2)
    w = mod.weight()
    ref.set_weight_bias(torch.quantize_per_tensor(
        torch.tensor(np.asarray(w.dequantize())), float(w.q_scale()), w.q_zero_point(),
        torch.qint8), torch.tensor(np.asarray(mod.bias())))
    ref.scale, ref.zero_point = float(mod.scale.get_value()), int(mod.zero_point.get_value())
    tq_x, jq_x = random_qtensor(rng, (1, 2, 4, 4), 0.02, 128)
    got = _apply(mod, jq_x)
    assert got.shape == jconv(jq_x.dequantize()).shape == (1, 8, 8, 3)
    expected = ref(tq_x).int_repr().numpy()[:, :, :-1, :-1]
    np.testing.assert_array_equal(np.moveaxis(np.asarray(got.int_repr()), -1, 1), expected)


def test_from_reference():
    w = jnp.asarray(np.arange(-24, 24).reshape(4, 3, 2, 2).astype(np.int8))
    qweight = QTensor(w, 0.02, 1, qint8)
    ref = types.SimpleNamespace(
        in_channels=4, out_channels=6, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
        output_padding=(1, 1), groups=2, dilation=(1, 1), bias=jnp.ones(6),
        get_quantized_weight=lambda: qweight)
    mod = ct.ConvTranspose2d.from_reference(ref, 0.5, 7)
    np.testing.assert_array_equal(mod.weight().int_repr(), w)
    assert float(mod.scale.get_value()) == 0.5 and int(mod.zero_point.get_value()) == 7
    assert mod.groups == 2 and mod.output_padding == (1, 1)


def test_bad_input():
    mod = ct.ConvTranspose2d(2, 4, 3)
    with pytest.raises(TypeError, match="Could not run 'quantized::conv_transpose2d'"):
        mod(jnp.ones((1, 5, 5, 2)))
    with pytest.raises(TypeError, match="quint8"):
        mod(QTensor(jnp.zeros((1, 5, 5, 2), jnp.int8), 0.1, 0, qint8))
    with pytest.raises(ValueError, match="Input shape must be"):
        mod(QTensor(jnp.zeros((5, 5, 2), jnp.uint8), 0.1, 0, quint8))
    with pytest.raises(ValueError, match="channels last"):
        mod(QTensor(jnp.zeros((1, 5, 5, 3), jnp.uint8), 0.1, 0, quint8))
    with pytest.raises(ValueError, match='Only "zeros" padding mode'):
        ct.ConvTranspose2d(2, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="output padding must be smaller"):
        ct.ConvTranspose2d(2, 4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="output padding must be smaller"):
        ct.ConvTranspose1d(2, 4, 3, stride=1, dilation=1, output_padding=1)
    with pytest.raises(ValueError, match="divisible by groups"):
        ct.ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding"):
        ct.ConvTranspose2d(2, 4, 3, padding="same")
    with pytest.raises(ValueError, match="empty"):
        ct.ConvTranspose2d(2, 4, 1, padding=1)(QTensor(jnp.zeros((1, 1, 1, 2), jnp.uint8),
                                                       0.1, 0, quint8))
    with pytest.raises(TypeError, match="qint8 QTensor"):
        mod.set_weight_bias(QTensor(jnp.zeros((2, 4, 3, 3), jnp.uint8), 0.1, 0, quint8),
                            None)
    with pytest.raises(ValueError, match="shape"):
        mod.set_weight_bias(QTensor(jnp.zeros((4, 2, 3, 3), jnp.int8), 0.1, 0, qint8), None)
    with pytest.raises(ValueError, match="axis 1"):
        mod.set_weight_bias(QTensor(jnp.zeros((2, 4, 3, 3), jnp.int8), jnp.ones(2), jnp.zeros(
            2, jnp.int32), qint8, "per_channel_affine", 0), None)
    with pytest.raises(TypeError, match="nnx.ConvTranspose|ConvTranspose"):
        ct.ConvTranspose2d.from_float(nnx.Conv(2, 4, (3, 3), rngs=nnx.Rngs(0)))
    conv = nnx.ConvTranspose(2, 4, (3, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="qconfig"):
        ct.ConvTranspose2d.from_float(conv)
    conv.qconfig = jqconfig.default_qconfig
    with pytest.raises(TypeError, match="1-d transposed convolution"):
        ct.ConvTranspose1d.from_float(conv)
    conv.qconfig = jqconfig.default_per_channel_qconfig
    with pytest.raises(ValueError, match="per-tensor"):
        ct.ConvTranspose2d.from_float(conv)
    circular = nnx.ConvTranspose(2, 4, (3, 3), padding="CIRCULAR", rngs=nnx.Rngs(0))
    circular.qconfig = jqconfig.default_qconfig
    with pytest.raises(ValueError, match="CIRCULAR"):
        ct.ConvTranspose2d.from_float(circular)


def test_x86_engine_onednn_transposed_conv_disagrees(rng):
    """Documents torch's self-disagreement: x86 (oneDNN) vs fbgemm and the float reference.

    jaxq follows fbgemm, which equals quantize(conv_transpose(dequantized operands)) on
    these integer-exact operands. (If torch fixes x86, only the last assertion changes.)
    """
    ref, mod = _modules(2, 3, 2, 0, 0, 1, 1)
    w = torch.quantize_per_tensor(torch.tensor(rng.normal(size=(4, 8, 3, 3)).astype(
        np.float32)), 0.01, 0, torch.qint8)
    ref.set_weight_bias(w, None)
    mod.set_weight_bias(jaxq_weight(w), None)
    _set_qparams(ref, mod, 0.05, 60)
    tq_x, jq_x = random_qtensor(rng, (1, 4, 4, 4), 0.03, 77)
    got = np.moveaxis(np.asarray(mod(jq_x).int_repr()), -1, 1)
    fbgemm = ref(tq_x).int_repr().numpy()
    np.testing.assert_array_equal(got, fbgemm)
    # float64 is exact here, so requantizing it can differ from fbgemm only at ties.
    y = torch.nn.functional.conv_transpose2d(tq_x.dequantize().double(),
                                             w.dequantize().double(), stride=2)
    expected = torch.quantize_per_tensor(y.float(), f32(0.05), 60, torch.quint8)
    assert np.abs(expected.int_repr().numpy().astype(int) - got).max() <= 1
    torch.backends.quantized.engine = "x86"
    x86 = tnnq.ConvTranspose2d(4, 8, 3, 2)
    x86.set_weight_bias(w, None)
    x86.scale, x86.zero_point = f32(0.05), 60
    assert not np.array_equal(x86(tq_x).int_repr().numpy(), fbgemm)


FLAX_PADDINGS = [
    # kernel, stride, dilation, Flax padding, transpose_kernel
    (3, 2, 1, "SAME", False), (2, 3, 1, "VALID", True), (4, 2, 1, "SAME", True),
    (3, 3, 2, "VALID", False), (3, 2, 1, ((2, 3),), True), (3, 2, 2, 1, False),
]


def test_flax_config_matches_flax_float_output(rng):
    """conv_transpose_config_from_flax + the kernel mapping reproduce nnx.ConvTranspose:
    integer-valued operands make both float results exact."""
    for k, s, d, padding, transpose_kernel in FLAX_PADDINGS:
        jconv = nnx.ConvTranspose(2, 3, (k,), strides=s, padding=padding, kernel_dilation=d,
                                  transpose_kernel=transpose_kernel, use_bias=False,
                                  rngs=nnx.Rngs(0))
        jconv.kernel.set_value(jnp.asarray(rng.integers(-3, 4, jconv.kernel.shape),
                                           jnp.float32))
        x = rng.integers(-3, 4, (1, 5, 2)).astype(np.float32)
        expected = np.asarray(jconv(jnp.asarray(x)))
        config = ct.conv_transpose_config_from_flax(jconv, 1, "test")
        weight = torch.tensor(np.asarray(ct._torch_ordered_kernel(jconv)).transpose(2, 1, 0))
        full = torch.nn.functional.conv_transpose1d(
            torch.tensor(x.transpose(0, 2, 1)), weight, stride=s, dilation=d).numpy()
        full = np.pad(full, ((0, 0), (0, 0), (0, config["output_padding"][0])))
        pad = config["padding"][0]
        lo, hi = pad if isinstance(pad, tuple) else (pad, pad)
        got = full[:, :, lo:full.shape[2] - hi].transpose(0, 2, 1)
        np.testing.assert_array_equal(got, expected, err_msg=f"{k, s, d, padding, transpose_kernel}")


def test_from_float_without_activation_observer_keeps_default_qparams():
    """torch: no activation_post_process (dynamic use) -> scale 1.0, zero_point 0."""
    conv = nnx.ConvTranspose(2, 3, (2,), strides=2, padding="VALID", use_bias=False,
                             rngs=nnx.Rngs(0))
    conv.qconfig = jqconfig.default_qconfig
    mod = ct.ConvTranspose1d.from_float(conv)
    assert float(mod.scale.get_value()) == 1.0 and int(mod.zero_point.get_value()) == 0
    assert mod.bias() is None and mod.padding == ((0, 0),) and mod.stride == (2,)
    kernel = np.asarray(conv.kernel.get_value())  # (k, in, out), convolved unflipped
    expected = np.flip(kernel, 0).transpose(1, 2, 0)
    w = mod.weight()
    np.testing.assert_allclose(np.asarray(w.dequantize()), expected,
                               atol=float(w.q_scale()) / 2 + 1e-7)
