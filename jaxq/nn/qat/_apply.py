"""Shared helpers of the QAT modules: Flax's Linear/Conv maths with a substituted
kernel, torch-argument conversion, and torch's ``from_float`` checks.

``linear_apply``/``conv_apply`` compute exactly what ``nnx.Linear.__call__`` /
``nnx.Conv.__call__`` compute, with the module's configuration but a kernel and bias
given by the caller (the fake-quantized kernel). The Flax modules read
``self.kernel`` directly, so QAT modules cannot reuse their ``__call__``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.linear import _conv_dimension_numbers, canonicalize_padding

__all__ = ["linear_apply", "conv_apply", "ntuple", "torch_conv_padding", "check_qconfig",
           "float_module_type", "check_from_float", "copy_param", "default_rngs",
           "CONV_CONFIG_ATTRIBUTES", "LINEAR_CONFIG_ATTRIBUTES"]

# The nnx.Conv / nnx.Linear attributes that define the computation (copied by
# from_float / to_float besides the parameters).
CONV_CONFIG_ATTRIBUTES = ("strides", "padding", "input_dilation", "kernel_dilation",
                          "feature_group_count", "dtype", "param_dtype", "precision",
                          "conv_general_dilated", "promote_dtype", "preferred_element_type")
LINEAR_CONFIG_ATTRIBUTES = ("dtype", "param_dtype", "precision", "dot_general",
                            "promote_dtype", "preferred_element_type")


def default_rngs(rngs: nnx.Rngs | None) -> nnx.Rngs:
    """``rngs`` or a fixed ``nnx.Rngs(0)`` (torch initializes without an explicit key)."""
    if rngs is None:
        return nnx.Rngs(0)
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be an nnx.Rngs or None; got {type(rngs).__name__}")
    return rngs


def linear_apply(mod: nnx.Linear, inputs: jax.Array, kernel: jax.Array,
                 bias: jax.Array | None) -> jax.Array:
    """``nnx.Linear.__call__`` of ``mod`` with ``kernel`` ``(in, out)`` and ``bias``.

    Args:
      mod: an ``nnx.Linear`` (or subclass) providing dtype/precision/dot_general.
      inputs: ``(..., in_features)``.
      kernel: ``(in_features, out_features)``.
      bias: ``(out_features,)`` or None.

    Returns:
      ``(..., out_features)``.
    """
    inputs, kernel, bias = mod.promote_dtype((jnp.asarray(inputs), kernel, bias),
                                             dtype=mod.dtype)
    kwargs = {}
    if mod.preferred_element_type is not None:
        kwargs["preferred_element_type"] = mod.preferred_element_type
    y = mod.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())),
                        precision=mod.precision, **kwargs)
    if bias is not None:
        y = y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return y


def _broadcast(value: Any, rank: int) -> tuple[int, ...]:
    if value is None:
        value = 1
    if isinstance(value, int):
        return (value,) * rank
    return tuple(value)


def conv_apply(mod: nnx.Conv, inputs: jax.Array, kernel: jax.Array,
               bias: jax.Array | None) -> jax.Array:
    """``nnx.Conv.__call__`` of ``mod`` with ``kernel`` ``(*k, in/groups, out)``.

    Same padding modes (explicit, SAME, VALID, CIRCULAR, REFLECT, CAUSAL), dilations,
    groups and batch-dimension handling as Flax.

    Args:
      mod: an ``nnx.Conv`` (or subclass) providing the configuration.
      inputs: channels-last ``(*batch, *spatial, in_features)``.
      kernel: the kernel to use, ``mod.kernel``'s shape.
      bias: ``(out_features,)`` or None.

    Returns:
      ``(*batch, *out_spatial, out_features)``.
    """
    inputs = jnp.asarray(inputs)
    kernel_size = tuple(mod.kernel_size)
    rank = len(kernel_size)
    num_batch_dimensions = inputs.ndim - (rank + 1)
    if num_batch_dimensions < 0:
        raise ValueError(f"a {rank}-d convolution needs inputs of rank >= {rank + 1} "
                         f"(*batch, *spatial, channels); got shape {inputs.shape}")
    if inputs.shape[-1] != mod.in_features:
        raise ValueError(f"inputs have {inputs.shape[-1]} channels (last axis, "
                         f"channels-last layout) but the convolution expects "
                         f"{mod.in_features}; got shape {inputs.shape}")
    input_batch_shape = inputs.shape[:num_batch_dimensions]
    if num_batch_dimensions != 1:
        inputs = jnp.reshape(inputs, (-1,) + inputs.shape[num_batch_dimensions:])
    strides = _broadcast(mod.strides, rank)
    input_dilation = _broadcast(mod.input_dilation, rank)
    kernel_dilation = _broadcast(mod.kernel_dilation, rank)
    padding = canonicalize_padding(mod.padding, rank)
    if padding in ("CIRCULAR", "REFLECT"):
        dilated = [(k - 1) * d + 1 for k, d in zip(kernel_size, kernel_dilation)]
        pads = [(0, 0)] + [((k - 1) // 2, k // 2) for k in dilated] + [(0, 0)]
        inputs = jnp.pad(inputs, pads, mode={"CIRCULAR": "wrap", "REFLECT": "reflect"}[
            padding])
        padding = "VALID"
    elif padding == "CAUSAL":
        if rank != 1:
            raise ValueError("Causal padding is only implemented for 1D convolutions.")
        inputs = jnp.pad(inputs, [(0, 0), (kernel_dilation[0] * (kernel_size[0] - 1), 0),
                                  (0, 0)])
        padding = "VALID"
    inputs, kernel, bias = mod.promote_dtype((inputs, kernel, bias), dtype=mod.dtype)
    kwargs = {}
    if mod.preferred_element_type is not None:
        kwargs["preferred_element_type"] = mod.preferred_element_type
    y = mod.conv_general_dilated(
        inputs, kernel, strides, padding, lhs_dilation=input_dilation,
        rhs_dilation=kernel_dilation,
        dimension_numbers=_conv_dimension_numbers(inputs.shape),
        feature_group_count=mod.feature_group_count, precision=mod.precision, **kwargs)
    if bias is not None:
        y = y + bias.reshape((1,) * (y.ndim - bias.ndim) + bias.shape)
    if num_batch_dimensions != 1:
        y = jnp.reshape(y, input_batch_shape + y.shape[1:])
    return y


def ntuple(value: Any, n: int, argument: str) -> tuple[int, ...]:
    """torch's ``_single``/``_pair``/``_triple`` with a checked result.

    Raises:
      ValueError: not an int or a sequence of ``n`` positive ints.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * n
    try:
        value = tuple(value)
    except TypeError:
        value = None
    if value is None or len(value) != n or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        raise ValueError(f"{argument} must be a positive int or a sequence of {n} "
                         f"positive ints; got {value!r}")
    return value


def torch_conv_padding(padding: Any, padding_mode: str, kernel_size: tuple[int, ...],
                       dilation: tuple[int, ...]) -> Any:
    """torch's ``padding``/``padding_mode`` as an ``nnx.Conv`` ``padding``.

    * ``padding_mode="zeros"``: an int or per-dimension ints ``p`` -> ``[(p, p), ...]``;
      ``"same"``/``"valid"`` -> ``"SAME"``/``"VALID"`` (the same split of odd padding
      as torch: the extra element goes after).
    * ``"circular"``/``"reflect"``: Flax pads ``((k_d - 1) // 2, k_d // 2)`` per
      dimension (``k_d`` the dilated kernel size), so only torch's
      ``padding == (k_d - 1) // 2`` with odd ``k_d`` (or ``"same"``) is expressible.

    Raises:
      ValueError: a padding or padding_mode ``nnx.Conv`` cannot express
        (``"replicate"``, circular/reflect with another padding, negative padding).
    """
    rank = len(kernel_size)
    modes = ("zeros", "reflect", "replicate", "circular")
    if padding_mode not in modes:
        raise ValueError(f"padding_mode={padding_mode!r} must be one of {modes}")
    if padding_mode == "replicate":
        raise ValueError("padding_mode='replicate' has no nnx.Conv equivalent; accepted "
                         "here: 'zeros', and 'circular'/'reflect' with 'same' padding")
    if isinstance(padding, str):
        if padding.lower() not in ("same", "valid"):
            raise ValueError(f"padding={padding!r} must be 'same', 'valid', an int or a "
                             f"sequence of {rank} ints")
        if padding.lower() == "valid":
            return "VALID"
        pads = None
    else:
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * rank
        padding = tuple(padding)
        if len(padding) != rank or any(isinstance(p, bool) or not isinstance(p, int)
                                       or p < 0 for p in padding):
            raise ValueError(f"padding must be a non-negative int or a sequence of "
                             f"{rank} such ints; got {padding!r}")
        pads = padding
    if padding_mode == "zeros":
        return "SAME" if pads is None else [(p, p) for p in pads]
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation)]
    if pads is not None and (any(k % 2 == 0 for k in dilated) or
                             tuple(pads) != tuple((k - 1) // 2 for k in dilated)):
        raise ValueError(
            f"padding_mode={padding_mode!r} with padding={padding!r} has no nnx.Conv "
            f"equivalent: Flax's {padding_mode.upper()} padding pads (k - 1) // 2 on "
            "both sides of an odd (dilated) kernel size k")
    return padding_mode.upper()


def check_qconfig(qconfig: Any) -> None:
    """torch's ``qconfig must be provided for QAT module`` check.

    Raises:
      ValueError: ``qconfig`` is None/falsy or has no ``weight`` constructor.
    """
    if not qconfig:
        raise ValueError("qconfig must be provided for QAT module")
    if getattr(qconfig, "weight", None) is None or not callable(qconfig.weight):
        raise ValueError(f"qconfig.weight must be an observer / fake-quantize "
                         f"constructor for a QAT module; got {qconfig!r}")


def float_module_type(mod: Any) -> type:
    """``type(mod)``, looking through the ``Observed<Cls>`` subclasses that
    ``jaxq.eager.hooks`` creates in place of torch's forward hooks (they record their
    base class as ``_jaxq_observed_base``)."""
    cls = type(mod)
    while cls.__dict__.get("_jaxq_observed_base") is not None:
        cls = cls.__dict__["_jaxq_observed_base"]
    return cls


def check_from_float(cls: type, mod: Any, float_type: type, rank: int | None = None
                     ) -> Any:
    """torch's ``from_float`` checks; returns ``mod.qconfig``.

    Args:
      cls: the QAT class (for the message).
      mod: the float module.
      float_type: the exact float class accepted (``nnx.Linear``, ``nnx.Conv``, an
        intrinsic container).
      rank: for ``nnx.Conv``, the number of spatial dims (``len(kernel_size)``).

    Raises:
      TypeError: ``mod`` is not exactly ``float_type`` (or of another conv rank).
      ValueError: missing or empty ``qconfig``.
    """
    mod_type = float_module_type(mod)
    expected = float_type.__name__ if rank is None or float_type is not nnx.Conv \
        else f"nnx.Conv with {rank} spatial dims"
    if mod_type is not float_type or (
            rank is not None and float_type is nnx.Conv
            and len(tuple(mod.kernel_size)) != rank):
        got = mod_type.__name__
        if isinstance(mod, nnx.Conv):
            got += f" with kernel_size={tuple(mod.kernel_size)}"
        raise TypeError(f"qat.{cls.__name__}.from_float only works for {expected}, got "
                        f"{got}")
    if not hasattr(mod, "qconfig"):
        raise ValueError("Input float module must have qconfig defined")
    if not mod.qconfig:
        raise ValueError("Input float module must have a valid qconfig")
    return mod.qconfig


def copy_param(target: nnx.Variable | None, source: nnx.Variable | None) -> None:
    """Copies ``source``'s value into ``target`` (torch shares the Parameter; JAX
    arrays are immutable, so a copy of the reference is the same)."""
    if target is None or source is None:
        if (target is None) != (source is None):
            raise ValueError("bias presence differs between the float and QAT modules")
        return
    value = source.get_value()
    if value.shape != target.get_value().shape:
        raise ValueError(f"parameter shape {value.shape} does not match "
                         f"{target.get_value().shape}")
    target.set_value(value)


def fan_in_bound(kernel_shape: tuple[int, ...]) -> float:
    """torch's ``1 / sqrt(fan_in)`` of a Flax kernel ``(*k, in/groups, out)``."""
    return 1.0 / math.sqrt(max(1, math.prod(kernel_shape[:-1])))
