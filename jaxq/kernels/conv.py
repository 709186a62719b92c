"""``quantized_conv2d``: static int8 2-D convolution (NHWC) with the matmul epilogue.

The convolution is the matmul of :mod:`jaxq.kernels.matmul` over image patches: output
pixel ``(n, oh, ow)`` is a row ``m`` and the patch is flattened in ``(kh, kw, c)`` order,
which is the weight's K order. Padding is with the activation zero point (the quantized
value of a real 0), as torch's quantized conv pads. Same accumulators and epilogues as
the matmul (torch's fbgemm formulas), so results equal ``torch.ao.nn.quantized.Conv2d``.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.kernels import pack_conv_weight, quantized_conv2d
  >>> w = pack_conv_weight(jnp.ones((3, 3, 4, 8), jnp.int8), jnp.float32(0.01))  # HWIO
  >>> x = jnp.full((1, 5, 5, 4), 130, jnp.uint8)
  >>> y = quantized_conv2d(x, w, 0.1, 128, padding=1, out_dtype="quint8",
  ...                      out_scale=0.05, out_zero_point=0)
  >>> y.shape
  (1, 5, 5, 8)
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.kernels import registry
from jaxq.kernels.matmul import _output_params, activation_params, resolve_out_dtype
from jaxq.kernels.weights import PackedWeight, WeightSpec, pack_weight, weight_values
from jaxq.kernels.xla import float_epilogue, requantize_epilogue

__all__ = ["Conv2dArgs", "Conv2dProblem", "PackedConvWeight", "pack_conv_weight",
           "quantized_conv2d", "xla_conv2d"]


@jax.tree_util.register_pytree_node_class
class PackedConvWeight:
    """A quantized conv kernel: a :class:`PackedWeight` ``(O, kh * kw * C / groups)``.

    Attributes:
      matmul: the packed ``(out_channels, kh * kw * in_channels // groups)`` weight, K in
        ``(kh, kw, c)`` order.
      hwio: the int8 ``(kh, kw, C // groups, O)`` kernel when the matmul layout is the
        portable ``"nk"`` (the XLA path then convolves it as is: XLA:CPU's fast int8
        convolution needs the kernel as an HWIO input, not computed in the graph); None
        otherwise.
      kernel_size: ``(kh, kw)`` (static).
      in_channels, out_channels, groups: static.
    """

    def __init__(self, matmul: PackedWeight, kernel_size: tuple[int, int], in_channels: int,
                 out_channels: int, groups: int, hwio: jax.Array | None = None):
        self.matmul = matmul
        self.hwio = hwio
        self.kernel_size = tuple(kernel_size)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups

    def tree_flatten(self):
        return (self.matmul, self.hwio), (self.kernel_size, self.in_channels,
                                          self.out_channels, self.groups)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0], *aux, hwio=children[1])

    def __repr__(self) -> str:
        return (f"PackedConvWeight({self.out_channels}x{self.in_channels}, kernel "
                f"{self.kernel_size}, groups={self.groups}, {self.matmul!r})")


def pack_conv_weight(weight: Any, scale: Any, zero_point: Any = None, *,
                     weight_layout: str = "HWIO", groups: int = 1,
                     layout: str | None = None) -> PackedConvWeight:
    """Packs an int8 conv kernel once, at convert time.

    Args:
      weight: int8 ``(kh, kw, C // groups, O)`` (``"HWIO"``, Flax) or ``(O, C // groups, kh,
        kw)`` (``"OIHW"``, torch).
      scale: float ``()`` or ``(O,)``; zero_point: integer, same shape, or None.
      weight_layout: ``"HWIO"`` or ``"OIHW"``.
      groups: feature groups (``C`` and ``O`` must be multiples).
      layout: the matmul weight layout (see :func:`~jaxq.kernels.weights.pack_weight`).
    """
    weight = jnp.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D ({weight_layout}); got shape {weight.shape}")
    if weight_layout == "OIHW":
        weight = jnp.transpose(weight, (2, 3, 1, 0))
    elif weight_layout != "HWIO":
        raise ValueError(f"weight_layout={weight_layout!r} must be 'HWIO' or 'OIHW'")
    kh, kw, cg, o = weight.shape
    if not isinstance(groups, int) or groups < 1 or o % groups:
        raise ValueError(f"groups={groups!r} must be a positive int dividing out_channels={o}")
    rows = jnp.transpose(weight, (3, 0, 1, 2)).reshape(o, kh * kw * cg)
    packed = pack_weight(rows, scale, zero_point, layout=layout)
    if packed.spec.granularity == "per_group":
        raise ValueError("conv weights take per-tensor or per-output-channel qparams")
    hwio = None
    if packed.spec.layout == "nk":
        hwio = jnp.transpose(weight_values(packed).reshape(o, kh, kw, cg), (1, 2, 3, 0))
    return PackedConvWeight(packed, (kh, kw), cg * groups, o, groups, hwio)


@dataclasses.dataclass(frozen=True)
class Conv2dProblem:
    """Static description of one conv (backends' ``supports_conv2d`` sees this).

    ``padding`` is ``((top, bottom), (left, right))``; ``x_shape`` is NHWC; ``out_hw`` the
    output height and width.
    """

    x_shape: tuple[int, int, int, int]
    x_dtype: str
    kernel_size: tuple[int, int]
    out_channels: int
    groups: int
    stride: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]
    weight: WeightSpec
    x_has_zero_point: bool
    has_bias: bool
    relu: bool
    out_dtype: str
    out_range: tuple[int, int] | None

    @property
    def requantize(self) -> bool:
        return self.out_range is not None


class Conv2dArgs(NamedTuple):
    """Arrays of one conv: ``x`` NHWC, the packed weight, per-tensor qparams, bias (O,)."""

    x: jax.Array
    weight: PackedConvWeight
    x_scale: Any
    x_zero_point: Any = None
    bias: Any = None
    out_scale: Any = None
    out_zero_point: Any = None


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, (int, np.integer)) for v in value):
        raise ValueError(f"{name} must be an int or a pair of ints; got {value!r}")
    return int(value[0]), int(value[1])


def _padding(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, int) and not isinstance(padding, bool):
        return (padding, padding), (padding, padding)
    padding = tuple(padding)
    if len(padding) == 2 and all(isinstance(p, (int, np.integer)) for p in padding):
        return (int(padding[0]),) * 2, (int(padding[1]),) * 2
    if len(padding) == 2 and all(len(tuple(p)) == 2 for p in padding):
        (t, b), (l, r) = padding
        return (int(t), int(b)), (int(l), int(r))
    raise ValueError(f"padding must be an int, (ph, pw) or ((top, bottom), (left, right)); "
                     f"got {padding!r}")


def _conv_weight_hwio(weight: PackedConvWeight) -> jax.Array:
    """int8 HWIO kernel (stored, or rebuilt from the packed rows)."""
    if weight.hwio is not None:
        return weight.hwio
    kh, kw = weight.kernel_size
    cg = weight.in_channels // weight.groups
    rows = weight_values(weight.matmul)
    return jnp.transpose(rows.reshape(weight.out_channels, kh, kw, cg), (1, 2, 3, 0))


def xla_conv2d(problem: Conv2dProblem, args: Conv2dArgs) -> jax.Array:
    """The reference: ``lax.conv_general_dilated`` int8 x int8 -> int32 plus corrections."""
    weight = args.weight
    spec = weight.matmul.spec
    x, zx = args.x, args.x_zero_point
    zx = jnp.int32(0) if zx is None else jnp.asarray(zx, jnp.int32)
    if x.dtype == jnp.uint8:  # x - 128 as a bit flip: XLA keeps an int8 conv (no int32 trip)
        x, zx = jax.lax.bitcast_convert_type(x ^ jnp.uint8(0x80), jnp.int8), zx - 128
    (pt, pb), (pl, pr) = problem.padding
    # Pad with the zero point (the real 0); the conv itself is VALID.
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=zx.astype(jnp.int8))
    kernel = _conv_weight_hwio(weight)
    dims = ("NHWC", "HWIO", "NHWC")
    acc = jax.lax.conv_general_dilated(
        x, kernel, problem.stride, "VALID", rhs_dilation=problem.dilation,
        dimension_numbers=dims, feature_group_count=problem.groups,
        preferred_element_type=jnp.int32)
    acc = acc - zx * weight.matmul.col_sums
    if not spec.symmetric:
        kh, kw = problem.kernel_size
        cg = weight.in_channels // problem.groups
        ones = jnp.ones((kh, kw, cg, problem.groups), jnp.int8)
        window = jax.lax.conv_general_dilated(
            x, ones, problem.stride, "VALID", rhs_dilation=problem.dilation,
            dimension_numbers=dims, feature_group_count=problem.groups,
            preferred_element_type=jnp.int32)
        window = jnp.repeat(window, problem.out_channels // problem.groups, axis=-1)
        zw = weight.matmul.zero_point
        acc = acc - window * zw + (zx * zw) * jnp.int32(kh * kw * cg)
    n, ho, wo, o = acc.shape
    acc = acc.reshape(n * ho * wo, o)
    out_dtype = jnp.dtype(problem.out_dtype)
    if problem.out_dtype == "int32":
        out = acc
    elif problem.requantize:
        lo, hi = problem.out_range
        out = requantize_epilogue(acc, args.x_scale, weight.matmul.scale, args.out_scale,
                                  args.out_zero_point, lo, hi, args.bias, problem.relu,
                                  out_dtype)
    else:
        out = float_epilogue(acc, args.x_scale, weight.matmul.scale, args.bias,
                             problem.relu).astype(out_dtype)
    return out.reshape(n, ho, wo, o)


def quantized_conv2d(x: jax.Array, weight: PackedConvWeight, x_scale: Any,
                     x_zero_point: Any = None, *, stride: Any = 1, padding: Any = 0,
                     dilation: Any = 1, bias: Any = None, relu: bool = False,
                     out_dtype: Any = None, out_scale: Any = None, out_zero_point: Any = None,
                     backend: str | None = None) -> jax.Array:
    """Static quantized 2-D convolution, NHWC, int32 accumulation, fused epilogue.

    Args:
      x: uint8/int8 ``(N, H, W, C)``.
      weight: a :class:`PackedConvWeight`.
      x_scale, x_zero_point: per-tensor activation qparams.
      stride, dilation: int or ``(sh, sw)``.
      padding: int, ``(ph, pw)`` or ``((top, bottom), (left, right))``; padded with the
        zero point.
      bias: float ``(O,)``; relu: fuse a ReLU.
      out_dtype: quint8/qint8 (requantized with ``out_scale``/``out_zero_point``), float32
        (default), bfloat16, float16 or int32 (raw accumulators).
      backend: None (automatic), ``"xla"`` or a registered backend name.

    Returns:
      ``(N, Ho, Wo, O)``.

    Raises:
      TypeError / ValueError: bad shapes, dtypes or parameters (the message names them).
    """
    if not isinstance(weight, PackedConvWeight):
        raise TypeError(f"weight must be a PackedConvWeight (see pack_conv_weight); got "
                        f"{type(weight).__name__}")
    x = jnp.asarray(x)
    if x.dtype not in (jnp.uint8, jnp.int8):
        raise TypeError(f"x must be uint8 or int8 (quantized NHWC); got {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != weight.in_channels:
        raise ValueError(f"x must have shape (N, H, W, {weight.in_channels}); got {x.shape}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"stride and dilation must be >= 1; got {stride}, {dilation}")
    pads = _padding(padding)
    if min(min(p) for p in pads) < 0:
        raise ValueError(f"padding must be >= 0; got {pads}")
    kh, kw = weight.kernel_size
    n, h, w, _ = x.shape
    ho = (h + sum(pads[0]) - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + sum(pads[1]) - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"the kernel {weight.kernel_size} (dilation {dilation}) does not fit "
                         f"the padded input {h}x{w} with padding {pads}")
    scale, zp, granularity = activation_params(x_scale, x_zero_point, (), 1, x.dtype)
    if granularity != "per_tensor":
        raise ValueError("conv activations take per-tensor x_scale / x_zero_point")
    o = weight.out_channels
    if bias is not None:
        bias = jnp.asarray(bias)
        if not jnp.issubdtype(bias.dtype, jnp.floating) or bias.shape != (o,):
            raise ValueError(f"bias must be a float array of shape ({o},); got "
                             f"{bias.dtype}{bias.shape}")
        bias = bias.astype(jnp.float32)
    out_name = resolve_out_dtype(out_dtype, "float32")
    if out_name == "int32" and (bias is not None or relu):
        raise ValueError("out_dtype=int32 returns raw accumulators: bias and relu must be "
                         "unset")
    out_scale, out_zero_point, out_range = _output_params(out_name, out_scale, out_zero_point)
    problem = Conv2dProblem(
        x_shape=tuple(x.shape), x_dtype=jnp.dtype(x.dtype).name, kernel_size=(kh, kw),
        out_channels=o, groups=weight.groups, stride=stride, padding=pads,
        dilation=dilation, out_hw=(ho, wo), weight=weight.matmul.spec,
        x_has_zero_point=zp is not None, has_bias=bias is not None, relu=bool(relu),
        out_dtype=out_name, out_range=out_range)
    args = Conv2dArgs(x, weight, scale, zp, bias, out_scale, out_zero_point)
    return registry.dispatch("conv2d", problem, args, xla_conv2d, backend)
