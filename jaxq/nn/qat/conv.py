"""``torch.ao.nn.qat.Conv1d/2d/3d``: ``nnx.Conv`` with a fake-quantized kernel.

``y = conv(x, weight_fake_quant(kernel)) + bias``, channels-last (``(N, L, C)``,
``(N, H, W, C)``, ``(N, D, H, W, C)``), kernel ``(*kernel_size, in/groups, out)``.
The constructors take torch's arguments (``stride``, ``padding``, ``dilation``,
``groups``, ``bias``, ``padding_mode``) and store them as ``nnx.Conv``'s
(``strides``, ``padding``, ``kernel_dilation``, ``feature_group_count``,
``use_bias``; see :func:`jaxq.nn.qat._apply.torch_conv_padding` for the padding
modes Flax can express). ``from_float`` copies every ``nnx.Conv`` setting, so any
Flax padding (SAME, CIRCULAR, CAUSAL, explicit pairs...) carries over.

torch-named read-only aliases: ``in_channels``, ``out_channels``, ``stride``,
``dilation``, ``groups``.

Deviations from torch: parameters initialize like ``nnx.Conv`` (``rngs`` defaults to
``nnx.Rngs(0)``); ``padding_mode="replicate"`` is rejected (no Flax equivalent);
masked ``nnx.Conv`` modules are rejected by ``from_float``; errors are
``TypeError``/``ValueError`` (torch: ``AssertionError``).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.qconfig import get_default_qat_qconfig
  >>> from jaxq.nn.qat import Conv2d
  >>> conv = Conv2d(3, 8, 3, padding=1, qconfig=get_default_qat_qconfig("x86"))
  >>> conv(jnp.ones((2, 6, 6, 3))).shape, conv.weight_fake_quant.scale.shape
  ((2, 6, 6, 8), (8,))
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.nn.intrinsic import fused as nni
from jaxq.nn.layout import weight_fake_quant_for_kernel
from jaxq.nn.qat._apply import (
    CONV_CONFIG_ATTRIBUTES,
    check_from_float,
    check_qconfig,
    conv_apply,
    copy_param,
    default_rngs,
    ntuple,
    torch_conv_padding,
)

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvConfigMixin"]


class ConvConfigMixin(nnx.Conv):
    """An ``nnx.Conv`` built from torch's ConvNd arguments (shared by the QAT convs
    and the fused ConvBn modules). ``_RANK`` is the number of spatial dims."""

    _RANK: ClassVar[int] = 2

    def _init_conv(self, in_channels: int, out_channels: int, kernel_size: Any,
                   stride: Any, padding: Any, dilation: Any, groups: int, bias: bool,
                   padding_mode: str, dtype: Any, param_dtype: Any, precision: Any,
                   rngs: nnx.Rngs | None) -> None:
        rank = self._RANK
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int")
        if in_channels % groups:
            raise ValueError(f"in_channels={in_channels} must be divisible by "
                             f"groups={groups}")
        if out_channels % groups:
            raise ValueError(f"out_channels={out_channels} must be divisible by "
                             f"groups={groups}")
        kernel_size = ntuple(kernel_size, rank, "kernel_size")
        stride = ntuple(stride, rank, "stride")
        dilation = ntuple(dilation, rank, "dilation")
        flax_padding = torch_conv_padding(padding, padding_mode, kernel_size, dilation)
        if isinstance(padding, str) and padding.lower() == "same" and any(
                s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
        nnx.Conv.__init__(self, in_channels, out_channels, kernel_size, stride,
                          padding=flax_padding, kernel_dilation=dilation,
                          feature_group_count=groups, use_bias=bool(bias), dtype=dtype,
                          param_dtype=param_dtype, precision=precision,
                          rngs=default_rngs(rngs))

    # torch-named aliases of nnx.Conv's attributes.
    @property
    def in_channels(self) -> int:
        return self.in_features

    @property
    def out_channels(self) -> int:
        return self.out_features

    @property
    def stride(self) -> Any:
        return self.strides

    @property
    def dilation(self) -> Any:
        return self.kernel_dilation

    @property
    def groups(self) -> int:
        return self.feature_group_count

    def _copy_conv_config(self, source: nnx.Conv) -> None:
        for name in CONV_CONFIG_ATTRIBUTES:
            setattr(self, name, getattr(source, name))

    def _float_conv(self, kernel: jax.Array | None = None, bias: jax.Array | None = None,
                    use_bias: bool | None = None) -> nnx.Conv:
        use_bias = self.use_bias if use_bias is None else use_bias
        conv = nnx.Conv(self.in_features, self.out_features, self.kernel_size,
                        feature_group_count=self.feature_group_count, use_bias=use_bias,
                        rngs=nnx.Rngs(0))
        for name in CONV_CONFIG_ATTRIBUTES:
            setattr(conv, name, getattr(self, name))
        conv.kernel.set_value(self.kernel.get_value() if kernel is None else kernel)
        if use_bias:
            conv.bias.set_value(self.bias.get_value() if bias is None else bias)
        return conv


def _float_conv_of(cls: type, mod: Any) -> tuple[nnx.Conv, Any]:
    """(the float conv, the qconfig) after torch's from_float checks."""
    qconfig = check_from_float(cls, mod, cls._FLOAT_MODULE,
                               cls._RANK if cls._FLOAT_MODULE is nnx.Conv else None)
    conv = mod[0] if isinstance(mod, nni._FusedModule) else mod
    if conv.mask is not None:
        raise ValueError(f"qat.{cls.__name__}.from_float does not support masked "
                         "convolutions (nnx.Conv mask=...)")
    return conv, getattr(conv, "qconfig", None) or qconfig


class _ConvNd(ConvConfigMixin):
    """torch's ``qat._ConvNd``: conv with ``weight_fake_quant`` on the kernel."""

    _FLOAT_MODULE: ClassVar[type] = nnx.Conv

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                 bias: bool = True, padding_mode: str = "zeros", qconfig: Any = None, *,
                 dtype: Any = None, param_dtype: Any = jnp.float32, precision: Any = None,
                 rngs: nnx.Rngs | None = None):
        check_qconfig(qconfig)
        self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation,
                        groups, bias, padding_mode, dtype, param_dtype, precision, rngs)
        self.qconfig = qconfig
        self.weight_fake_quant = weight_fake_quant_for_kernel(qconfig.weight,
                                                              self.kernel.get_value())

    def _conv_forward(self, x: jax.Array, kernel: jax.Array,
                      bias: jax.Array | None) -> jax.Array:
        return conv_apply(self, x, kernel, bias)

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = self.bias[...] if self.bias is not None else None
        return conv_apply(self, x, self.weight_fake_quant(self.kernel[...]), bias)

    @classmethod
    def from_float(cls, mod: Any, use_precomputed_fake_quant: bool = False) -> _ConvNd:
        """A QAT conv from a float ``nnx.Conv`` of this rank (or, for the fused
        ``ConvReLU*d`` subclasses, from the intrinsic container) carrying ``qconfig``.

        Raises:
          TypeError: not exactly the float class, or another conv rank.
          ValueError: missing/empty qconfig, or a masked conv.
        """
        del use_precomputed_fake_quant
        conv, qconfig = _float_conv_of(cls, mod)
        qat = cls(conv.in_features, conv.out_features, conv.kernel_size,
                  groups=conv.feature_group_count, bias=conv.use_bias, qconfig=qconfig)
        qat._copy_conv_config(conv)
        copy_param(qat.kernel, conv.kernel)
        copy_param(qat.bias, conv.bias)
        return qat

    def to_float(self) -> nnx.Module:
        """The float ``nnx.Conv`` (or intrinsic ``ConvReLU*d`` for the fused
        subclasses) with this module's kernel and bias."""
        conv = self._float_conv()
        relu_module = getattr(type(self), "_FLOAT_RELU_MODULE", None)
        if relu_module is not None:
            return type(self)._FLOAT_MODULE(conv, relu_module())
        return conv


class Conv1d(_ConvNd):
    """QAT Conv1d: input ``(N, L, C_in)``, kernel ``(k, C_in/groups, C_out)``."""
    _RANK = 1


class Conv2d(_ConvNd):
    """QAT Conv2d: input ``(N, H, W, C_in)``, kernel ``(kh, kw, C_in/groups, C_out)``."""
    _RANK = 2


class Conv3d(_ConvNd):
    """QAT Conv3d: input ``(N, D, H, W, C_in)``."""
    _RANK = 3

