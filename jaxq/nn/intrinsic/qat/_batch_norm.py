"""Batch norm folded into a fake-quantized weight: the shared part of torch's
``_ConvBnNd`` and ``LinearBn1d`` (``torch.ao.nn.intrinsic.qat``).

Forward (torch's ``_forward_approximate``), channels-last, ``C`` = output features::

    running_std  = sqrt(bn.running_var + bn.eps)                  # [C]
    scale_factor = bn.weight / running_std                         # [C]
    y = op(x, weight_fake_quant(W * scale_factor))                 # no bias
    y = y / scale_factor (+ bias)                                  # undo the scaling
    y = batch_norm(y)   # batch statistics in training, running ones in eval/frozen

``batch_norm`` is torch's (not Flax's): the normalization uses the biased batch
variance, the running variance is updated with the *unbiased* one (``n / (n - 1)``),
and ``running = momentum * batch + (1 - momentum) * running`` with torch's momentum.
The module keeps its batch norm as an ``nnx.BatchNorm`` child ``bn`` (parameters
``scale``/``bias``, statistics ``mean``/``var``, ``epsilon``) whose ``momentum`` is
Flax's: ``flax_momentum = 1 - torch_momentum`` (converted by the constructors and
``from_float``; :func:`torch_momentum` converts back, rounding away the binary
representation error so 0.9 gives torch's 0.1).

Modes. Batch statistics are used (and the running ones updated) when the module is
in training mode (``model.train()``, i.e. ``bn.use_running_average`` False) and
``freeze_bn`` is 0. ``freeze_bn`` is a uint8 ``[1]`` state variable
(:class:`BnFlag`), not a Python attribute, so ``freeze_bn_stats()`` /
``update_bn_stats()`` can be toggled between (or inside) ``nnx.jit`` steps without
recompiling. ``model.train()``/``model.eval()`` change a static attribute and
recompile, as for any Flax BatchNorm.

Deviations from torch: torch's ``update_bn_stats()`` on a module in eval mode sets
``bn.training = True`` (batch statistics in eval mode); jaxq keeps eval mode on running
statistics. torch computes batch statistics in float64 on CPU; jaxq in float32
(differences are float32 rounding). ``num_batches_tracked`` and ``momentum=None``
(cumulative average) have no Flax counterpart and are not supported.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.affine import exact_divide
from jaxq.fake_quantize.base import branch

__all__ = ["BnFlag", "torch_momentum", "flax_momentum", "batch_norm", "BnFoldMixin"]


class BnFlag(nnx.Variable):
    """State flag of the fused BN QAT modules (``freeze_bn``: uint8 ``[1]``).

    A state variable (not ``nnx.Param``): optimizers ignore it and toggling it does
    not change the graph, so ``nnx.jit`` does not recompile.
    """


def flax_momentum(momentum: Any) -> float:
    """torch BN momentum -> ``nnx.BatchNorm`` momentum (``1 - momentum``).

    Raises:
      ValueError: not a float in ``[0, 1]`` (``None``, torch's cumulative average, is
        not supported).
    """
    if momentum is None:
        raise ValueError("momentum=None (cumulative moving average) is not supported; "
                         "pass a float in [0, 1]")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
            or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum={momentum!r} must be a float in [0, 1]")
    return 1.0 - float(momentum)


def torch_momentum(flax_value: float) -> float:
    """``nnx.BatchNorm`` momentum -> torch momentum, ``1 - flax_value`` rounded to 15
    significant digits (``1 - 0.9`` is ``0.09999999999999998`` in binary)."""
    return float(f"{1.0 - float(flax_value):.15g}")


def batch_norm(x: jax.Array, running_mean: jax.Array, running_var: jax.Array,
               weight: jax.Array, bias: jax.Array, *, training: bool, momentum: float,
               eps: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """torch's ``F.batch_norm`` on channels-last ``x`` (features on the last axis).

    Args:
      x: ``(..., C)`` float array.
      running_mean, running_var, weight, bias: ``[C]`` float32.
      training: use batch statistics and update the running ones.
      momentum: torch's momentum.
      eps: added to the variance.

    Returns:
      ``(y, new_running_mean, new_running_var)``; the running statistics are returned
      unchanged when ``training`` is False.

    Raises:
      ValueError: training with a single value per channel (torch raises too).
    """
    if training:
        count = math.prod(x.shape[:-1])
        if count <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got "
                             f"input size {x.shape}")
        axes = tuple(range(x.ndim - 1))
        mean = exact_divide(jnp.sum(x, axis=axes), float(count))
        square_sum = jnp.sum(jnp.square(x - mean), axis=axes)
        var = exact_divide(square_sum, float(count))
        stats = jax.lax.stop_gradient((mean, exact_divide(square_sum, float(count - 1))))
        m = float(momentum)
        new_mean = m * stats[0] + (1.0 - m) * running_mean
        new_var = m * stats[1] + (1.0 - m) * running_var
    else:
        mean, var = running_mean, running_var
        new_mean, new_var = running_mean, running_var
    invstd = 1.0 / jnp.sqrt(var + eps)
    alpha = invstd * weight
    shift = bias - mean * alpha
    return x * alpha + shift, new_mean, new_var


def _uniform(low: float, high: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)
    return init


class BnFoldMixin:
    """The batch-norm half of the fused ConvBn / LinearBn QAT modules.

    The host class is an ``nnx.Conv``/``nnx.Linear`` subclass with ``kernel``,
    ``bias``, ``weight_fake_quant``; it calls :meth:`_init_bn` in its constructor and
    :meth:`_bn_folded_forward` in ``__call__``.
    """

    def _init_bn(self, num_features: int, eps: float, momentum: float, freeze_bn: bool,
                 param_dtype: Any, rngs: nnx.Rngs) -> None:
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
            raise ValueError(f"eps={eps!r} must be a non-negative float")
        if not isinstance(freeze_bn, bool):
            raise TypeError(f"freeze_bn={freeze_bn!r} must be a bool")
        # torch: bn.weight ~ U[0, 1), bn.bias = 0, running stats reset.
        self.bn = nnx.BatchNorm(num_features, momentum=flax_momentum(momentum),
                                epsilon=float(eps), param_dtype=param_dtype,
                                scale_init=_uniform(0.0, 1.0), rngs=rngs)
        self.freeze_bn = BnFlag(jnp.array([1 if freeze_bn else 0], jnp.uint8))

    @property
    def training(self) -> bool:
        """Training mode: ``model.train()`` (``bn.use_running_average`` False)."""
        return not bool(self.bn.use_running_average)

    @property
    def momentum(self) -> float:
        """torch's momentum of the batch norm."""
        return torch_momentum(self.bn.momentum)

    @property
    def eps(self) -> float:
        return float(self.bn.epsilon)

    def reset_running_stats(self) -> None:
        self.bn.mean.set_value(jnp.zeros_like(self.bn.mean.get_value()))
        self.bn.var.set_value(jnp.ones_like(self.bn.var.get_value()))

    def reset_bn_parameters(self, rngs: nnx.Rngs | None = None) -> None:
        """torch's reset: running stats, ``bn.weight ~ U[0, 1)``, ``bn.bias = 0``."""
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.reset_running_stats()
        self.bn.scale.set_value(_uniform(0.0, 1.0)(rngs.params(),
                                                   self.bn.scale.get_value().shape,
                                                   self.bn.scale.get_value().dtype))
        self.bn.bias.set_value(jnp.zeros_like(self.bn.bias.get_value()))

    def _set_freeze_bn(self, frozen: Any) -> None:
        self.freeze_bn.set_value(jnp.where(jnp.asarray(frozen, bool), 1, 0)
                                 .astype(jnp.uint8).reshape((1,)))

    def update_bn_stats(self):
        """Use and update batch statistics in training mode (``freeze_bn = 0``)."""
        self._set_freeze_bn(False)
        return self

    def freeze_bn_stats(self):
        """Use the running statistics and stop updating them (``freeze_bn = 1``)."""
        self._set_freeze_bn(True)
        return self

    def _check_bn(self, bn: Any, owner: str) -> None:
        if not isinstance(bn, nnx.BatchNorm):
            raise TypeError(f"{owner}: expected an nnx.BatchNorm; got {type(bn).__name__}")
        if bn.scale is None or bn.bias is None:
            raise ValueError(f"{owner}: the BatchNorm must have use_scale=True and "
                             "use_bias=True (torch's affine=True)")
        if bn.axis != -1:
            raise ValueError(f"{owner}: the BatchNorm must normalize the last "
                             f"(channels-last) axis; got axis={bn.axis}")
        if bn.axis_name is not None:
            raise ValueError(f"{owner}: cross-device BatchNorm (axis_name="
                             f"{bn.axis_name!r}) is not supported")

    def _copy_bn_from(self, bn: nnx.BatchNorm) -> None:
        for name in ("scale", "bias", "mean", "var"):
            getattr(self.bn, name).set_value(getattr(bn, name).get_value())
        self.bn.use_running_average = bn.use_running_average

    def _bn_folded_forward(self, x: jax.Array, apply_fn) -> jax.Array:
        """torch's ``_forward_approximate`` with ``apply_fn(x, kernel)`` the conv or
        linear op without bias."""
        bn = self.bn
        running_std = jnp.sqrt(bn.var[...] + bn.epsilon)
        scale_factor = bn.scale[...] / running_std
        scaled_weight = self.weight_fake_quant(self.kernel[...] * scale_factor)
        y = exact_divide(apply_fn(x, scaled_weight), scale_factor)
        if self.bias is not None:
            y = y + self.bias[...]
        return self._batch_norm(y)

    def _batch_norm(self, y: jax.Array) -> jax.Array:
        bn = self.bn
        args = (bn.mean[...], bn.var[...], bn.scale[...], bn.bias[...])
        kwargs = {"momentum": self.momentum, "eps": float(bn.epsilon)}
        if not self.training:
            return batch_norm(y, *args, training=False, **kwargs)[0]
        out, new_mean, new_var = branch(
            self.freeze_bn[...],
            lambda v: batch_norm(v, *args, training=False, **kwargs),
            lambda v: batch_norm(v, *args, training=True, **kwargs),
            y, "freeze_bn")
        bn.mean.set_value(new_mean)
        bn.var.set_value(new_var)
        return out

    def _folded_kernel_and_bias(self, linear: bool = False
                                ) -> tuple[jax.Array, jax.Array]:
        """torch's ``fuse_conv_bn_weights`` (or, ``linear=True``,
        ``fuse_linear_bn_weights``, whose bias multiplies in another order) on the
        Flax kernel (output features last)."""
        bn = self.bn
        # torch.rsqrt on CPU is a correctly rounded 1 / sqrt; XLA's rsqrt is 1 ulp off for
        # ~31% of inputs.
        var = bn.var[...] + bn.epsilon
        var_rsqrt = exact_divide(jnp.ones_like(var), jnp.sqrt(var))
        gamma, beta, mean = bn.scale[...], bn.bias[...], bn.mean[...]
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else jnp.zeros_like(mean)
        bn_scale = gamma * var_rsqrt
        fused_kernel = (kernel * bn_scale).astype(kernel.dtype)
        if linear:
            fused_bias = (bias - mean) * bn_scale + beta
        else:
            fused_bias = (bias - mean) * var_rsqrt * gamma + beta
        return fused_kernel, fused_bias.astype(bias.dtype)
