"""The ``cpu_native`` backend: packed-weight layouts, problem predicate, FFI calls, vmap.

Weights it runs are packed at convert time into its own layouts (registered here, so
a packed weight stays readable by the XLA reference on any machine):

* ``"cpu_vnni"`` (8-bit): panels of 64 output columns, 4 consecutive k per column
  adjacent (one VPDPBUSD operand per 16 columns); see ``kernels/cpu/jaxq_cpu.h``.
* ``"cpu_wo4"`` (4-bit, even K): blocks of 16 columns, a 32-bit word per column holding 8
  consecutive k (nibble t at bits 4t), K padded to a multiple of 8.

Batching (``vmap``): the activation's batch is folded into M (dynamic per-tensor qparams
stay per example through ``row_groups``); batching anything else (the weight, the bias,
the output qparams) runs the kernel once per example with ``lax.map``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.kernels.activation import quantize_activation
from jaxq.kernels.conv import Conv2dArgs, Conv2dProblem
from jaxq.kernels.cpu import native
from jaxq.kernels.problem import MatmulArgs, MatmulProblem
from jaxq.kernels.weights import WeightLayout, WeightSpec

__all__ = ["LAYOUT_VNNI", "LAYOUT_WO4", "available", "conv2d", "default_layout", "matmul",
           "supports", "supports_conv2d"]

LAYOUT_VNNI = "cpu_vnni"
LAYOUT_WO4 = "cpu_wo4"
_PANEL = 64
_FLOAT_OUT = ("float32", "bfloat16", "float16")
_OUT_KIND = {"int32": 0, "float32": 1, "bfloat16": 1, "float16": 1, "uint8": 2, "int8": 3}
_OUT_DTYPE = {0: jnp.int32, 1: jnp.float32, 2: jnp.uint8, 3: jnp.int8}


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


# ---------------------------------------------------------------------------------------
# Layouts (pure jnp: they run at convert time, or inside jit on traced weights).
# ---------------------------------------------------------------------------------------
def pack_vnni(values: jax.Array, spec: WeightSpec) -> jax.Array:
    n, k = values.shape
    kp, nq = _round_up(k, 4), _round_up(n, 16)
    v = jnp.pad(values.astype(jnp.int8), ((0, nq - n), (0, kp - k))).reshape(nq, kp // 4, 4)
    full = nq // _PANEL
    parts = []
    if full:
        parts.append(v[:full * _PANEL].reshape(full, _PANEL, kp // 4, 4)
                     .transpose(0, 2, 1, 3).reshape(-1))
    if nq > full * _PANEL:
        parts.append(v[full * _PANEL:].transpose(1, 0, 2).reshape(-1))
    return jnp.concatenate(parts)


def unpack_vnni(data: jax.Array, spec: WeightSpec) -> jax.Array:
    n, k = spec.out_features, spec.in_features
    kp, nq = _round_up(k, 4), _round_up(n, 16)
    full = nq // _PANEL
    rest = nq - full * _PANEL
    parts = []
    if full:
        parts.append(data[:full * _PANEL * kp].reshape(full, kp // 4, _PANEL, 4)
                     .transpose(0, 2, 1, 3).reshape(full * _PANEL, kp))
    if rest:
        parts.append(data[full * _PANEL * kp:].reshape(kp // 4, rest, 4)
                     .transpose(1, 0, 2).reshape(rest, kp))
    return jnp.concatenate(parts)[:n, :k]


def pack_wo4(values: jax.Array, spec: WeightSpec) -> jax.Array:
    n, k = values.shape
    if k % 2:
        raise ValueError(f"layout {LAYOUT_WO4!r} needs an even in_features; got {k}")
    nq, kq = _round_up(n, 16), _round_up(k, 8)
    u = jnp.pad(values.astype(jnp.uint32), ((0, nq - n), (0, kq - k)))
    # (block, 16 columns, word, 8 nibbles) -> words (block, word, column), nibble t << 4t
    u = u.reshape(nq // 16, 16, kq // 8, 8).transpose(0, 2, 1, 3)
    words = jnp.sum(u << (4 * jnp.arange(8, dtype=jnp.uint32)), axis=-1, dtype=jnp.uint32)
    return jax.lax.bitcast_convert_type(words, jnp.int8).reshape(-1)


def unpack_wo4(data: jax.Array, spec: WeightSpec) -> jax.Array:
    n, k = spec.out_features, spec.in_features
    nq, kq = _round_up(n, 16), _round_up(k, 8)
    words = jax.lax.bitcast_convert_type(data.reshape(-1, 4), jnp.uint32)
    words = words.reshape(nq // 16, kq // 8, 16).transpose(0, 2, 1)
    nibbles = (words[..., None] >> (4 * jnp.arange(8, dtype=jnp.uint32))) & 15
    return nibbles.reshape(nq, kq)[:n, :k].astype(jnp.int8)


LAYOUTS = (WeightLayout(LAYOUT_VNNI, 8, pack_vnni, unpack_vnni),
           WeightLayout(LAYOUT_WO4, 4, pack_wo4, unpack_wo4))


# ---------------------------------------------------------------------------------------
# Availability, default layout, predicate.
# ---------------------------------------------------------------------------------------
def available() -> bool:
    """True when the native library is built and this CPU runs it."""
    return native.load() is not None


def default_layout(spec: WeightSpec) -> str | None:
    """Claims weights this backend runs when the default JAX device is a usable CPU."""
    if jax.default_backend() != "cpu" or not available():
        return None
    if spec.bits == 8 and spec.granularity != "per_group":
        return LAYOUT_VNNI
    if spec.bits == 4 and spec.in_features % 2 == 0 and spec.group_size % 2 == 0:
        return LAYOUT_WO4
    return None


def supports(problem: MatmulProblem) -> bool:
    spec = problem.weight
    if problem.mode == "weight_only":
        if problem.out_dtype not in _FLOAT_OUT:
            return False
        if spec.layout == LAYOUT_VNNI:
            return spec.granularity != "per_group"
        return spec.layout == LAYOUT_WO4
    if spec.layout != LAYOUT_VNNI:
        return False
    fused_dynamic = problem.mode == "dynamic" and problem.dynamic.torch_per_tensor
    per_row_scale = (problem.x_granularity == "per_token"
                     or (fused_dynamic and problem.row_groups > 1))
    return not (problem.requantize and per_row_scale)


# ---------------------------------------------------------------------------------------
# FFI calls with their batching rules.
# ---------------------------------------------------------------------------------------
def _empty(dtype) -> jax.Array:
    return jnp.zeros((0,), dtype)


def _flat(value, dtype) -> jax.Array:
    return _empty(dtype) if value is None else jnp.asarray(value, dtype).reshape(-1)


def _sequential(fn, in_batched, args):
    """Runs ``fn`` once per batch element (anything batched besides the activation)."""
    batched = tuple(a for a, b in zip(args, in_batched) if b)

    def one(slices):
        it = iter(slices)
        return fn(*[next(it) if b else a for a, b in zip(args, in_batched)])

    return jax.lax.map(one, batched)


@functools.lru_cache(maxsize=None)
def _qgemm_fn(n: int, k: int, x_kind: int, out_kind: int, relu: bool, qlo: int, qhi: int,
              dyn_qmin: int, dyn_qmax: int, dyn_signed: bool, row_groups: int):
    """The jaxq_qgemm call for one static configuration (cached: one custom_vmap each)."""
    attrs = dict(n=np.int64(n), k=np.int64(k), x_kind=np.int64(x_kind),
                 out_kind=np.int64(out_kind), relu=np.int64(relu), qlo=np.int64(qlo),
                 qhi=np.int64(qhi), dyn_qmin=np.int64(dyn_qmin), dyn_qmax=np.int64(dyn_qmax),
                 dyn_signed=np.int64(dyn_signed), row_groups=np.int64(row_groups))

    @jax.custom_batching.custom_vmap
    def call(x, x_scale, x_zp, data, w_scale, w_zp, col_sums, bias, out_scale, out_zp):
        shape = jax.ShapeDtypeStruct((x.shape[0], n), _OUT_DTYPE[out_kind])
        return jax.ffi.ffi_call(native.FFI_QGEMM, shape)(
            x, data, w_scale, w_zp, col_sums, x_scale, x_zp, bias, out_scale, out_zp, **attrs)

    @call.def_vmap
    def rule(axis_size, in_batched, x, x_scale, x_zp, *rest):
        args = (x, x_scale, x_zp, *rest)
        x_b, s_b, z_b = in_batched[:3]
        fused_dynamic = x_kind == 2
        per_row = (s_b or z_b) or x_scale.shape[0] > 1
        if any(in_batched[3:]) or (out_kind >= 2 and per_row and not fused_dynamic):
            return _sequential(call, in_batched, args), True
        m = x.shape[-2]
        if not x_b:
            x = jnp.broadcast_to(x, (axis_size,) + x.shape)
        x = x.reshape(axis_size * m, k)
        if fused_dynamic:
            fn = _qgemm_fn(n, k, x_kind, out_kind, relu, qlo, qhi, dyn_qmin, dyn_qmax,
                           dyn_signed, row_groups * axis_size)
            out = fn(x, x_scale, x_zp, *rest)
        else:
            def rows(value, batched):
                if value.shape[-1] == 0:
                    return value
                if not batched:
                    value = jnp.broadcast_to(value, (axis_size,) + value.shape)
                return jnp.broadcast_to(value.reshape(axis_size, -1), (axis_size, m)
                                        ).reshape(-1)
            if per_row:
                x_scale, x_zp = rows(x_scale, s_b), rows(x_zp, z_b)
            out = call(x, x_scale, x_zp, *rest)
        return out.reshape(axis_size, m, n), True

    return call


@functools.lru_cache(maxsize=None)
def _weight_only_fn(n: int, k: int, bits: int, group_size: int, relu: bool):
    attrs = dict(n=np.int64(n), k=np.int64(k), bits=np.int64(bits),
                 group_size=np.int64(group_size), relu=np.int64(relu))

    @jax.custom_batching.custom_vmap
    def call(x, data, scale, zp, bias):
        shape = jax.ShapeDtypeStruct((x.shape[0], n), jnp.float32)
        return jax.ffi.ffi_call(native.FFI_WEIGHT_ONLY, shape)(x, data, scale, zp, bias,
                                                              **attrs)

    @call.def_vmap
    def rule(axis_size, in_batched, x, *rest):
        if any(in_batched[1:]):
            return _sequential(call, in_batched, (x, *rest)), True
        m = x.shape[-2]
        out = call(x.reshape(axis_size * m, k), *rest)
        return out.reshape(axis_size, m, n), True

    return call


def matmul(problem: MatmulProblem, args: MatmulArgs) -> jax.Array:
    """Runs a supported problem through the native kernels: ``(m, n)``."""
    weight, spec = args.weight, args.weight.spec
    n, k = spec.out_features, spec.in_features
    w_zp = _empty(jnp.int32) if spec.symmetric else _flat(weight.zero_point, jnp.int32)
    bias = _flat(args.bias, jnp.float32)
    if problem.mode == "weight_only":
        fn = _weight_only_fn(n, k, spec.bits, spec.group_size, problem.relu)
        out = fn(args.x.astype(jnp.float32), weight.data, _flat(weight.scale, jnp.float32),
                 w_zp, bias)
        return out.astype(problem.out_dtype)
    dyn_qmin = dyn_qmax = dyn_signed = 0
    x, x_scale, x_zp = args.x, args.x_scale, args.x_zero_point
    if problem.mode == "dynamic" and problem.dynamic.torch_per_tensor:
        x_kind = 2
        x = x.astype(jnp.float32)
        dyn_qmin, dyn_qmax = problem.dynamic.quant_range
        dyn_signed = int(problem.dynamic.dtype.is_signed)
    else:
        if problem.mode == "dynamic":
            x, x_scale, x_zp = quantize_activation(x, problem.dynamic, problem.row_groups)
        x_kind = 0 if x.dtype == jnp.uint8 else 1
    out_kind = _OUT_KIND[problem.out_dtype]
    qlo, qhi = problem.out_range or (0, 0)
    fn = _qgemm_fn(n, k, x_kind, out_kind, problem.relu, qlo, qhi, dyn_qmin, dyn_qmax,
                   bool(dyn_signed), problem.row_groups)
    out = fn(x, _flat(x_scale, jnp.float32), _flat(x_zp, jnp.int32), weight.data,
             _flat(weight.scale, jnp.float32), w_zp, weight.col_sums, bias,
             _flat(args.out_scale, jnp.float32), _flat(args.out_zero_point, jnp.int32))
    return out.astype(problem.out_dtype) if out_kind == 1 else out


# ---------------------------------------------------------------------------------------
# Conv2d.
# ---------------------------------------------------------------------------------------
def supports_conv2d(problem: Conv2dProblem) -> bool:
    return problem.weight.layout == LAYOUT_VNNI and problem.groups == 1


@functools.lru_cache(maxsize=None)
def _qconv_fn(out_shape: tuple[int, int, int], attrs: tuple, out_kind: int):
    """The jaxq_qconv2d call; vmap folds an activation batch into N."""
    attr_dict = {name: np.int64(value) for name, value in attrs}

    @jax.custom_batching.custom_vmap
    def call(x, *rest):
        shape = jax.ShapeDtypeStruct((x.shape[0],) + out_shape, _OUT_DTYPE[out_kind])
        return jax.ffi.ffi_call(native.FFI_QCONV2D, shape)(x, *rest, **attr_dict)

    @call.def_vmap
    def rule(axis_size, in_batched, x, *rest):
        if any(in_batched[1:]):
            return _sequential(call, in_batched, (x, *rest)), True
        n = x.shape[1]
        out = call(x.reshape((axis_size * n,) + x.shape[2:]), *rest)
        return out.reshape((axis_size, n) + out.shape[1:]), True

    return call


def conv2d(problem: Conv2dProblem, args: Conv2dArgs) -> jax.Array:
    """Runs a supported conv through the native im2col + GEMM kernel: NHWC."""
    weight = args.weight.matmul
    spec = weight.spec
    (pt, _), (pl, _) = problem.padding
    kh, kw = problem.kernel_size
    ho, wo = problem.out_hw
    out_kind = _OUT_KIND[problem.out_dtype]
    qlo, qhi = problem.out_range or (0, 0)
    attrs = (("kh", kh), ("kw", kw), ("stride_h", problem.stride[0]),
             ("stride_w", problem.stride[1]), ("pad_t", pt), ("pad_l", pl),
             ("dil_h", problem.dilation[0]), ("dil_w", problem.dilation[1]), ("out_h", ho),
             ("out_w", wo), ("o", problem.out_channels), ("out_kind", out_kind),
             ("relu", int(problem.relu)), ("qlo", qlo), ("qhi", qhi))
    fn = _qconv_fn((ho, wo, problem.out_channels), attrs, out_kind)
    w_zp = _empty(jnp.int32) if spec.symmetric else _flat(weight.zero_point, jnp.int32)
    out = fn(args.x, weight.data, _flat(weight.scale, jnp.float32), w_zp, weight.col_sums,
             _flat(args.x_scale, jnp.float32), _flat(args.x_zero_point, jnp.int32),
             _flat(args.bias, jnp.float32), _flat(args.out_scale, jnp.float32),
             _flat(args.out_zero_point, jnp.int32))
    return out.astype(problem.out_dtype) if out_kind == 1 else out
