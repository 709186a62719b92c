"""quantized_conv2d on every CPU backend against torch's quantized Conv2d and exact ints."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxq.kernels import pack_conv_weight, quantized_conv2d  # noqa: E402
from tests.kernels import torch_ref  # noqa: E402
from tests.kernels.backends import cpu_backends  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*quantized tensor creation:UserWarning")
BACKENDS = cpu_backends()

# (N, H, W, C, O, k, stride, padding, dilation, groups, per_channel)
CASES = [
    (1, 9, 8, 5, 7, 3, 1, 1, 1, 1, True),
    (2, 7, 7, 8, 20, 3, 2, 1, 1, 1, False),
    (1, 6, 7, 3, 66, 1, 1, 0, 1, 1, True),
    (1, 8, 8, 6, 6, 3, 1, 2, 2, 3, True),
    (1, 10, 15, 16, 70, 3, 1, 1, 1, 1, True),  # in-place (implicit GEMM) tiles, 2 panels
]


@functools.lru_cache(maxsize=None)
def _jitted(backend, stride, padding, dilation, relu, out_dtype):
    def run(x, w, x_scale, x_zp, bias, out_scale, out_zp):
        return quantized_conv2d(x, w, x_scale, x_zp, stride=stride, padding=padding,
                                dilation=dilation, bias=bias, relu=relu, out_dtype=out_dtype,
                                out_scale=out_scale, out_zero_point=out_zp,
                                backend=backend if w.groups == 1 else None)
    return jax.jit(run)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_conv_matches_torch(rng, backend, case):
    n, h, w, c, o, k, stride, padding, dilation, groups, per_channel = CASES[case]
    relu = case % 2 == 0
    xq = rng.integers(0, 256, (n, h, w, c)).astype(np.uint8)
    values = rng.integers(-128, 128, (o, c // groups, k, k)).astype(np.int8)
    if per_channel:
        scale = rng.uniform(0.001, 0.01, o).astype(np.float32)
        wq = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(values), torch.from_numpy(scale.astype(np.float64)),
            torch.zeros(o, dtype=torch.long), 0)
    else:
        scale = np.float32(0.004)
        wq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(values), float(scale), 0)
    bias = rng.standard_normal(o).astype(np.float32)
    x_scale, x_zp, out_scale, out_zp = np.float32(0.03), 117, np.float32(0.25), 61
    expected = torch_ref.static_conv2d(xq, x_scale, x_zp, wq, bias, out_scale, out_zp,
                                       stride, padding, dilation, groups, relu)
    packed = pack_conv_weight(values, scale, weight_layout="OIHW", groups=groups)
    fn = _jitted(backend, stride, padding, dilation, relu, "quint8")
    got = np.asarray(fn(xq, packed, x_scale, np.int32(x_zp), bias, out_scale,
                        np.int32(out_zp)))
    np.testing.assert_array_equal(got, expected)


def _exact_conv(x, zx, w_hwio, zw, stride, pads, dilation):
    """int64 NHWC conv of (x - zx) with (w - zw), padding with zx (the real zero)."""
    (pt, pb), (pl, pr) = pads
    x = np.pad(x.astype(np.int64) - zx, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    w = w_hwio.astype(np.int64) - np.asarray(zw, np.int64)
    kh, kw, c, o = w.shape
    n, h, wd, _ = x.shape
    ho = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, ho, wo, o), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dilation[0]: i * dilation[0] + stride[0] * (ho - 1) + 1: stride[0],
                      j * dilation[1]: j * dilation[1] + stride[1] * (wo - 1) + 1: stride[1]]
            out += np.einsum("nhwc,co->nhwo", patch, w[i, j])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_dtype", [np.uint8, np.int8])
def test_conv_int32_accumulators_are_exact(rng, backend, x_dtype):
    """Asymmetric padding, stride, dilation, affine per-channel weights, int8 input."""
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max + 1, (2, 9, 10, 7)).astype(x_dtype)
    zx = int(rng.integers(info.min, info.max + 1))
    w = rng.integers(-128, 128, (3, 2, 7, 19)).astype(np.int8)
    zw = rng.integers(-5, 6, 19).astype(np.int32)
    packed = pack_conv_weight(w, np.full(19, 0.01, np.float32), zw)
    pads, stride, dilation = ((2, 0), (1, 3)), (2, 1), (1, 2)
    fn = _jitted(backend, stride, pads, dilation, False, "int32")
    got = np.asarray(fn(x, packed, np.float32(0.1), np.int32(zx), None, None, None))
    np.testing.assert_array_equal(got, _exact_conv(x, zx, w, zw, stride, pads, dilation))


# (N, H, W, C, O, (kh, kw), stride, pads, dilation): C % 4 == 0 and symmetric weights, so
# the native kernel reads the input in place; tiles of 6 output pixels cross output rows
# and images, windows cross every border.
IN_PLACE_CASES = [
    (3, 7, 5, 8, 20, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    (2, 11, 9, 4, 17, (3, 2), (2, 1), ((2, 0), (0, 3)), (1, 2)),
    (4, 5, 13, 12, 65, (2, 3), (1, 2), ((0, 1), (2, 2)), (2, 1)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", IN_PLACE_CASES)
def test_conv_in_place_tiles_are_exact(rng, backend, case):
    n, h, wd, c, o, (kh, kw), stride, pads, dilation = case
    x = rng.integers(0, 256, (n, h, wd, c)).astype(np.uint8)
    zx = int(rng.integers(0, 256))
    w = rng.integers(-128, 128, (kh, kw, c, o)).astype(np.int8)
    packed = pack_conv_weight(w, np.full(o, 0.01, np.float32))
    fn = _jitted(backend, stride, pads, dilation, False, "int32")
    got = np.asarray(fn(x, packed, np.float32(0.1), np.int32(zx), None, None, None))
    np.testing.assert_array_equal(got, _exact_conv(x, zx, w, 0, stride, pads, dilation))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_float_output_vmap_and_no_recompile(rng, backend):
    w = pack_conv_weight(rng.integers(-128, 128, (3, 3, 4, 16)).astype(np.int8),
                         rng.uniform(0.01, 0.02, 16).astype(np.float32))
    bias = rng.standard_normal(16).astype(np.float32)
    traces = []

    def fn(x):
        traces.append(1)
        return quantized_conv2d(x, w, 0.05, 3, padding=1, bias=bias, relu=True,
                                backend=backend)

    xs = rng.integers(0, 256, (3, 2, 6, 6, 4)).astype(np.uint8)
    jitted = jax.jit(fn)
    single = np.stack([np.asarray(jitted(xs[i])) for i in range(3)])
    assert len(traces) == 1
    batched = np.asarray(jax.jit(jax.vmap(fn))(xs))
    np.testing.assert_array_equal(batched, single)
    reference = np.asarray(quantized_conv2d(xs[0], w, 0.05, 3, padding=1, bias=bias,
                                            relu=True, backend="xla"))
    np.testing.assert_array_equal(single[0], reference)


def test_conv_bad_inputs_raise(rng):
    w = pack_conv_weight(rng.integers(-128, 128, (3, 3, 4, 8)).astype(np.int8),
                         np.float32(0.01))
    x = rng.integers(0, 256, (1, 5, 5, 4)).astype(np.uint8)
    cases = [
        (lambda: quantized_conv2d(x[..., :3], w, 0.1), ValueError, "x must have shape"),
        (lambda: quantized_conv2d(x.astype(np.float32), w, 0.1), TypeError, "uint8 or int8"),
        (lambda: quantized_conv2d(x, w, 0.1, stride=0), ValueError, "stride"),
        (lambda: quantized_conv2d(x, w, 0.1, padding=-1), ValueError, "padding"),
        (lambda: quantized_conv2d(x[:, :2, :2], w, 0.1), ValueError, "does not fit"),
        (lambda: quantized_conv2d(x, w, np.ones(2, np.float32)), ValueError, "x_scale"),
        (lambda: quantized_conv2d(x, w, 0.1, bias=np.ones(3, np.float32)), ValueError,
         "bias"),
        (lambda: quantized_conv2d(x, w, 0.1, out_dtype="quint8"), ValueError, "out_scale"),
        (lambda: quantized_conv2d(x, np.ones((3, 3, 4, 8)), 0.1), TypeError,
         "PackedConvWeight"),
        (lambda: pack_conv_weight(np.ones((3, 3, 4), np.int8), 0.1), ValueError, "4-D"),
        (lambda: pack_conv_weight(np.ones((3, 3, 4, 8), np.int8), 0.1, groups=3),
         ValueError, "groups"),
        (lambda: pack_conv_weight(np.ones((3, 3, 4, 8), np.int8), 0.1, weight_layout="NCHW"),
         ValueError, "weight_layout"),
    ]
    for fn, error, match in cases:
        with pytest.raises(error, match=match):
            fn()


def test_conv_weight_layouts_agree(rng):
    """The portable layout (stored HWIO kernel) and the native one give identical convs."""
    kernel = rng.integers(-128, 128, (3, 3, 8, 12)).astype(np.int8)
    scale = rng.uniform(0.01, 0.02, 12).astype(np.float32)
    zero_point = rng.integers(-3, 4, 12).astype(np.int32)
    portable = pack_conv_weight(kernel, scale, zero_point, layout="nk")
    assert portable.hwio is not None
    np.testing.assert_array_equal(np.asarray(portable.hwio), kernel)
    default = pack_conv_weight(kernel, scale, zero_point)
    x = rng.integers(0, 256, (2, 7, 6, 8)).astype(np.uint8)
    fn = _jitted("xla", (1, 2), 1, (1, 1), True, "quint8")
    args = (np.float32(0.05), np.int32(9), rng.standard_normal(12).astype(np.float32),
            np.float32(0.4), np.int32(3))
    np.testing.assert_array_equal(np.asarray(fn(x, portable, *args)),
                                  np.asarray(fn(x, default, *args)))
