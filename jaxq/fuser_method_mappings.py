"""``torch.ao.quantization.fuser_method_mappings`` for Flax NNX modules.

Fuser methods take ``(is_qat, *modules)`` and return the fused module:

* post-training (``is_qat=False``): Conv/Linear/ConvTranspose + BatchNorm are folded
  into one float module (torch's ``torch.nn.utils.fusion``), in Flax's kernel layout
  (output features on the last kernel axis)::

      W' = W * gamma * rsqrt(var + eps)                 (per output feature)
      b' = (b - mean) * rsqrt(var + eps) * gamma + beta

  with torch's operation order and torch's ``rsqrt`` (a correctly rounded
  ``1 / sqrt``, see :func:`fuse_conv_bn_weights`);
* QAT (``is_qat=True``): the modules go into an intrinsic container
  (:mod:`jaxq.nn.intrinsic`: ``ConvBn2d(conv, bn)``...) that ``prepare_qat`` swaps for a
  QAT module.

Flax's ``nnx.Conv`` / ``nnx.ConvTranspose`` / ``nnx.BatchNorm`` are rank-agnostic, so
torch's rank-specific keys collapse: ``(nnx.Conv, nnx.BatchNorm)`` stands for torch's
``(Conv1d, BatchNorm1d)``, ``(Conv2d, BatchNorm2d)`` and ``(Conv3d, BatchNorm3d)``, and the
fused class is picked from ``len(conv.kernel_size)``. ``(nnx.BatchNorm, ReLU)`` fuses to
``BNReLU2d`` (the rank of a Flax BatchNorm shows only in its input; pass
``additional_fuser_method_mapping={(nnx.BatchNorm, ReLU): ...BNReLU3d...}`` for 3-d).
Activation positions take :class:`jaxq.nn.ReLU` (``jax.nn.relu`` / ``nnx.relu`` in an
``nnx.Sequential`` count as ReLU).

Deviations from torch: bad input raises ``TypeError`` / ``ValueError`` (torch:
``AssertionError``); "train mode" is Flax's ``bn.use_running_average == False``.

Example:
  >>> from flax import nnx
  >>> conv = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
  >>> bn = nnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))
  >>> fused = fuse_conv_bn(False, conv, bn)
  >>> type(fused).__name__, fused.use_bias
  ('Conv', True)
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.backend_config._common import SequentialFuser
from jaxq.backend_config.type_names import ByRank
from jaxq.core.affine import exact_divide
from jaxq.nn.intrinsic import fused as nni
from jaxq.nn.modules import ReLU

__all__ = [
    "fuse_conv_bn",
    "fuse_conv_bn_relu",
    "fuse_linear_bn",
    "fuse_convtranspose_bn",
    "fuse_conv_bn_eval",
    "fuse_conv_bn_weights",
    "fuse_linear_bn_eval",
    "fuse_linear_bn_weights",
    "get_fuser_method",
    "get_fuser_method_new",
    "module_type_for_fusion",
    "MatchAllNode",
]


class MatchAllNode:
    """A pattern element that matches any node (torch's ``MatchAllNode``)."""


def module_type_for_fusion(module: Any) -> Any:
    """The type fusion patterns use for ``module``: its class (looking through
    ``Observed<Cls>``), with the ReLU functions mapped to :class:`jaxq.nn.ReLU`."""
    if module is jax.nn.relu or module is nnx.relu or (
            getattr(module, "fun", None) is not None
            and getattr(module, "fun", None) is getattr(jax.nn.relu, "fun", False)):
        return ReLU
    from jaxq.eager.hooks import type_before_observation
    return type_before_observation(module)


def _rank(conv: Any) -> int:
    return len(tuple(conv.kernel_size))


def _out_axis(module: Any) -> int:
    # nnx.ConvTranspose(transpose_kernel=True) stores (*k, out, in).
    return -2 if getattr(module, "transpose_kernel", False) else -1


def _out_features(module: Any) -> int:
    return int(module.kernel.get_value().shape[_out_axis(module)])


def _check_type(module: Any, expected: type, argument: str, owner: str) -> None:
    if module_type_for_fusion(module) is not expected:
        raise TypeError(f"{owner}: {argument} must be {expected.__module__}."
                        f"{expected.__name__}; got {type(module).__name__}")


def _check_eval(bn: nnx.BatchNorm) -> None:
    if not bn.use_running_average:
        raise ValueError("Fusion only for eval! The BatchNorm is in training mode "
                         "(use_running_average=False); call model.eval() first, or use "
                         "fuse_modules_qat for quantization-aware training")


def _check_qat_bn(bn: nnx.BatchNorm, out_features: int, what: str) -> None:
    if bn.num_features != out_features:
        raise ValueError(f"Output channel of {what} ({out_features}) must match "
                         f"num_features of BatchNorm ({bn.num_features})")
    if not (bn.use_scale and bn.use_bias):
        raise ValueError("Only support fusing BatchNorm with affine set to True "
                         "(nnx.BatchNorm(use_scale=True, use_bias=True))")


def _value(variable: Any) -> jax.Array | None:
    return None if variable is None else jnp.asarray(variable.get_value())


def _rsqrt(x: jax.Array) -> jax.Array:
    # torch.rsqrt on CPU is a correctly rounded 1 / sqrt(x); XLA's rsqrt (and its
    # rewrite of 1 / sqrt) is not.
    return exact_divide(jnp.ones_like(x), jnp.sqrt(x))


def fuse_conv_bn_weights(kernel: Any, bias: Any, running_mean: Any, running_var: Any,
                         eps: float, scale: Any, bn_bias: Any, out_axis: int = -1
                         ) -> tuple[jax.Array, jax.Array]:
    """Folds batch-norm statistics into a conv kernel and bias (torch's
    ``fuse_conv_bn_weights``, Flax layout).

    Args:
      kernel: ``(*kernel_size, in/groups, out)`` (``out_axis=-1``) or a transposed
        conv kernel with the output on ``out_axis``.
      bias: ``(out,)`` or None (zeros).
      running_mean, running_var: ``(out,)``.
      eps: the batch norm's epsilon.
      scale, bn_bias: gamma and beta ``(out,)``, or None (ones / zeros).
      out_axis: the kernel axis holding output features.

    Returns:
      ``(kernel', bias')`` in the dtypes of ``kernel`` and ``bias`` (kernel's if None).

    Example:
      >>> import jax.numpy as jnp
      >>> k, b = fuse_conv_bn_weights(jnp.ones((1, 1, 1, 2)), None, jnp.zeros(2),
      ...                             jnp.full(2, 4.0), 0.0, jnp.array([1.0, 2.0]), None)
      >>> k.ravel().tolist(), b.tolist()
      ([0.5, 1.0], [0.0, 0.0])
    """
    kernel = jnp.asarray(kernel)
    running_mean = jnp.asarray(running_mean)
    running_var = jnp.asarray(running_var)
    bias_dtype = kernel.dtype if bias is None else jnp.asarray(bias).dtype
    bias = jnp.zeros_like(running_mean) if bias is None else jnp.asarray(bias)
    scale = jnp.ones_like(running_mean) if scale is None else jnp.asarray(scale)
    bn_bias = jnp.zeros_like(running_mean) if bn_bias is None else jnp.asarray(bn_bias)
    var_rsqrt = _rsqrt(running_var + jnp.asarray(eps, running_var.dtype))
    shape = [1] * kernel.ndim
    shape[out_axis] = -1
    fused_kernel = (kernel * (scale * var_rsqrt).reshape(shape)).astype(kernel.dtype)
    fused_bias = ((bias - running_mean) * var_rsqrt * scale + bn_bias).astype(bias_dtype)
    return fused_kernel, fused_bias


def fuse_linear_bn_weights(kernel: Any, bias: Any, running_mean: Any, running_var: Any,
                           eps: float, scale: Any, bn_bias: Any
                           ) -> tuple[jax.Array, jax.Array]:
    """Folds batch-norm statistics into a Linear kernel ``(in, out)`` and bias (torch's
    ``fuse_linear_bn_weights``; a 1-feature batch norm broadcasts).

    Example:
      >>> import jax.numpy as jnp
      >>> k, b = fuse_linear_bn_weights(jnp.ones((3, 2)), jnp.ones(2), jnp.zeros(2),
      ...                               jnp.ones(2), 0.0, jnp.full(2, 2.0), jnp.zeros(2))
      >>> k[0].tolist(), b.tolist()
      ([2.0, 2.0], [2.0, 2.0])
    """
    kernel = jnp.asarray(kernel)
    running_mean = jnp.asarray(running_mean)
    running_var = jnp.asarray(running_var)
    bias_dtype = kernel.dtype if bias is None else jnp.asarray(bias).dtype
    bias = jnp.zeros_like(running_mean) if bias is None else jnp.asarray(bias)
    scale = jnp.ones_like(running_mean) if scale is None else jnp.asarray(scale)
    bn_bias = jnp.zeros_like(running_mean) if bn_bias is None else jnp.asarray(bn_bias)
    bn_scale = scale * _rsqrt(running_var + jnp.asarray(eps, running_var.dtype))
    fused_kernel = (kernel * bn_scale[None, :]).astype(kernel.dtype)
    fused_bias = ((bias - running_mean) * bn_scale + bn_bias).astype(bias_dtype)
    return fused_kernel, fused_bias


def _with_folded(module: Any, kernel: jax.Array, bias: jax.Array) -> Any:
    fused = copy.deepcopy(module)
    fused.kernel.set_value(kernel)
    if fused.bias is None:
        fused.bias = nnx.Param(bias)
        fused.use_bias = True
    else:
        fused.bias.set_value(bias)
    return fused


def _bn_arrays(bn: nnx.BatchNorm):
    return (_value(bn.mean), _value(bn.var), float(bn.epsilon), _value(bn.scale),
            _value(bn.bias))


def fuse_conv_bn_eval(conv: Any, bn: nnx.BatchNorm, transpose: bool = False) -> Any:
    """A copy of ``conv`` (``nnx.Conv`` or ``nnx.ConvTranspose``) with ``bn`` folded in
    (torch's ``torch.nn.utils.fusion.fuse_conv_bn_eval``). A conv without bias gets one.

    ``transpose`` is accepted for torch compatibility: the Flax kernel keeps output
    features on the same axis either way.

    Raises:
      ValueError: ``bn`` in training mode, or feature counts that differ.
    """
    del transpose
    _check_eval(bn)
    out = _out_features(conv)
    if bn.num_features != out:
        raise ValueError(f"conv has {out} output features but BatchNorm has "
                         f"num_features={bn.num_features}")
    kernel, bias = fuse_conv_bn_weights(_value(conv.kernel), _value(conv.bias),
                                        *_bn_arrays(bn), out_axis=_out_axis(conv))
    return _with_folded(conv, kernel, bias)


def fuse_linear_bn_eval(linear: nnx.Linear, bn: nnx.BatchNorm) -> nnx.Linear:
    """A copy of ``linear`` with ``bn`` folded in (torch's ``fuse_linear_bn_eval``).

    Raises:
      ValueError: ``bn`` in training mode, or ``bn.num_features`` neither
        ``out_features`` nor 1.
    """
    _check_eval(bn)
    out = _out_features(linear)
    if out != bn.num_features and bn.num_features != 1:
        raise ValueError("To fuse, linear.out_features == bn.num_features or "
                         f"bn.num_features == 1, got linear.out_features={out} and "
                         f"bn.num_features={bn.num_features}")
    kernel, bias = fuse_linear_bn_weights(_value(linear.kernel), _value(linear.bias),
                                          *_bn_arrays(bn))
    return _with_folded(linear, kernel, bias)


_CONV_BN = {1: "ConvBn1d", 2: "ConvBn2d", 3: "ConvBn3d"}
_CONV_BN_RELU = {1: "ConvBnReLU1d", 2: "ConvBnReLU2d", 3: "ConvBnReLU3d"}
_CONV_RELU = {1: "ConvReLU1d", 2: "ConvReLU2d", 3: "ConvReLU3d"}


def _fused_class(table: dict[int, str], conv: Any, modules: tuple[Any, ...],
                 mode: str) -> type:
    rank = _rank(conv)
    if rank not in table:
        raise NotImplementedError(f"Cannot fuse {mode} modules: "
                                  f"{tuple(type(m).__name__ for m in modules)} "
                                  f"(a {rank}-d convolution)")
    return getattr(nni, table[rank])


def fuse_conv_bn(is_qat: bool, conv: nnx.Conv, bn: nnx.BatchNorm) -> nnx.Module:
    """Conv + BatchNorm: ``ConvBn{1,2,3}d(conv, bn)`` for QAT, else the folded conv.

    Raises:
      TypeError: wrong module types.
      ValueError: QAT with mismatched features / non-affine BN; PTQ with BN in training.
    """
    _check_type(conv, nnx.Conv, "conv", "fuse_conv_bn")
    _check_type(bn, nnx.BatchNorm, "bn", "fuse_conv_bn")
    if is_qat:
        _check_qat_bn(bn, _out_features(conv), "Conv")
        return _fused_class(_CONV_BN, conv, (conv, bn), "train")(conv, bn)
    return fuse_conv_bn_eval(conv, bn)


def fuse_conv_bn_relu(is_qat: bool, conv: nnx.Conv, bn: nnx.BatchNorm, relu: Any
                      ) -> nnx.Module:
    """Conv + BatchNorm + ReLU: ``ConvBnReLU{r}d(conv, bn, relu)`` for QAT, else
    ``ConvReLU{r}d(folded conv, relu)``.

    Raises:
      TypeError / ValueError: as :func:`fuse_conv_bn`.
    """
    _check_type(conv, nnx.Conv, "conv", "fuse_conv_bn_relu")
    _check_type(bn, nnx.BatchNorm, "bn", "fuse_conv_bn_relu")
    _check_type(relu, ReLU, "relu", "fuse_conv_bn_relu")
    if is_qat:
        _check_qat_bn(bn, _out_features(conv), "Conv")
        return _fused_class(_CONV_BN_RELU, conv, (conv, bn, relu), "train")(conv, bn, relu)
    fused_class = _fused_class(_CONV_RELU, conv, (conv, bn, relu), "eval")
    return fused_class(fuse_conv_bn_eval(conv, bn), relu)


def fuse_linear_bn(is_qat: bool, linear: nnx.Linear, bn: nnx.BatchNorm) -> nnx.Module:
    """Linear + BatchNorm: ``LinearBn1d(linear, bn)`` for QAT, else the folded Linear."""
    _check_type(linear, nnx.Linear, "linear", "fuse_linear_bn")
    _check_type(bn, nnx.BatchNorm, "bn", "fuse_linear_bn")
    if is_qat:
        _check_qat_bn(bn, _out_features(linear), "Linear")
        return nni.LinearBn1d(linear, bn)
    return fuse_linear_bn_eval(linear, bn)


def fuse_convtranspose_bn(is_qat: bool, convt: nnx.ConvTranspose, bn: nnx.BatchNorm
                          ) -> nnx.Module:
    """ConvTranspose + BatchNorm folded (post-training only, as torch).

    Raises:
      NotImplementedError: ``is_qat`` (torch: "not yet supported in QAT").
    """
    _check_type(convt, nnx.ConvTranspose, "convt", "fuse_convtranspose_bn")
    _check_type(bn, nnx.BatchNorm, "bn", "fuse_convtranspose_bn")
    if is_qat:
        raise NotImplementedError("Fusing ConvTranspose+BatchNorm not yet supported in QAT.")
    return fuse_conv_bn_eval(convt, bn, transpose=True)


def _sequential_by_rank(names: dict[int, str]) -> ByRank:
    return ByRank.from_dict({rank: SequentialFuser(getattr(nni, name))
                             for rank, name in names.items()})


_DEFAULT_OP_LIST_TO_FUSER_METHOD: dict[tuple, Callable] = {
    (nnx.Conv, nnx.BatchNorm): fuse_conv_bn,
    (nnx.Conv, nnx.BatchNorm, ReLU): fuse_conv_bn_relu,
    (nnx.Conv, ReLU): _sequential_by_rank(_CONV_RELU),
    (nnx.Linear, nnx.BatchNorm): fuse_linear_bn,
    (nnx.Linear, ReLU): SequentialFuser(nni.LinearReLU),
    (nnx.BatchNorm, ReLU): SequentialFuser(nni.BNReLU2d),
    (nnx.ConvTranspose, nnx.BatchNorm): fuse_convtranspose_bn,
}
"""torch's ``_DEFAULT_OP_LIST_TO_FUSER_METHOD`` with the rank-specific keys merged."""


def get_fuser_method(op_list: tuple, additional_fuser_method_mapping: dict | None = None
                     ) -> Callable:
    """The fuser method for a tuple of module types.

    Args:
      op_list: e.g. ``(nnx.Conv, nnx.BatchNorm, jaxq.nn.ReLU)``.
      additional_fuser_method_mapping: extra ``{types: fuser}`` entries (taking
        precedence, like torch's ``get_combined_dict``).

    Raises:
      ValueError: no fuser for ``op_list`` (torch: AssertionError), naming the patterns
        that can be fused.

    Example:
      >>> from flax import nnx
      >>> get_fuser_method((nnx.Conv, nnx.BatchNorm)) is fuse_conv_bn
      True
    """
    all_mappings = dict(_DEFAULT_OP_LIST_TO_FUSER_METHOD)
    all_mappings.update(additional_fuser_method_mapping or {})
    fuser_method = all_mappings.get(tuple(op_list))
    if fuser_method is None:
        known = ", ".join("(" + ", ".join(t.__name__ for t in key) + ")"
                          for key in all_mappings)
        raise ValueError(f"did not find fuser method for: {_describe_types(op_list)}; "
                         f"fusable patterns: {known}")
    return fuser_method


def _describe_types(op_list) -> str:
    return "(" + ", ".join(getattr(t, "__name__", repr(t)) for t in op_list) + ")"


def _get_valid_patterns(op_pattern: Any) -> list[Any]:
    """Every pattern obtained by replacing elements of ``op_pattern`` with MatchAllNode."""
    if isinstance(op_pattern, (tuple, list)):
        sub_combs = [_get_valid_patterns(sub_pattern) for sub_pattern in op_pattern]
        return list(itertools.product(*sub_combs))
    return [op_pattern, MatchAllNode]


def get_fuser_method_new(op_pattern: Any, fuser_method_mapping: dict[Any, Callable]
                         ) -> Callable:
    """The fuser for ``op_pattern`` from ``fuser_method_mapping``, also trying
    :class:`MatchAllNode` wildcards (torch's ``get_fuser_method_new``).

    Raises:
      ValueError: nothing matches (torch: AssertionError).
    """
    for pattern in _get_valid_patterns(op_pattern):
        fuser_method = fuser_method_mapping.get(pattern)
        if fuser_method is not None:
            return fuser_method
    raise ValueError(f"did not find fuser method for: {op_pattern}")

