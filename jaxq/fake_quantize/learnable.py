"""_LearnableFakeQuantize: LSQ fake-quantize with learnable scale and zero point.

``scale`` and ``zero_point`` are ``nnx.Param`` (float32 ``[1]`` or ``[channel_len]``),
so ``nnx.grad``/optax train them; the flags (``fake_quant_enabled``,
``observer_enabled``, ``static_enabled``, ``learning_enabled``) are
:class:`~jaxq.observer.ObserverState` like every other fake-quant flag.

torch mutates the parameters' ``.data`` in its forward (observer estimates copied
in, scale clamped to eps, symmetric zero points zeroed). jaxq does the same value
updates on the Params, and the forward uses an exact straight-through identity (``new`` forward, gradient to ``param``)
so the gradient still reaches the Param exactly as torch's does. torch's
``requires_grad`` is mirrored by the static attribute ``qparams_require_grad`` (True
at construction, then set by ``toggle_qparam_learning``, as in torch): when False the
parameters get no gradient.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.observer import MovingAverageMinMaxObserver
  >>> from jaxq.fake_quantize import _LearnableFakeQuantize
  >>> fq = _LearnableFakeQuantize(MovingAverageMinMaxObserver, quant_min=0, quant_max=255)
  >>> _ = fq.enable_param_learning()
  >>> grads = nnx.grad(lambda m: m(jnp.array([0.3, -1.2])).sum())(fq)
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core.dtypes import as_quant_dtype
from jaxq.core.fake_quantize_ops import (
    fake_quantize_learnable_per_channel_affine,
    fake_quantize_learnable_per_tensor_affine,
)
from jaxq.fake_quantize.base import FakeQuantizeBase, branch
from jaxq.observer.base import FLOAT32_EPS

__all__ = ["_LearnableFakeQuantize"]


@jax.custom_jvp
def _through(param: jax.Array, value: jax.Array) -> jax.Array:
    """``value`` in the forward pass, the gradient flows to ``param`` (torch's
    ``param.data.copy_(value)`` followed by using ``param``). Exact: no arithmetic."""
    del param
    return value


@_through.defjvp
def _through_jvp(primals, tangents):
    _, value = primals
    param_tangent, _ = tangents
    return value, param_tangent


class _LearnableFakeQuantize(FakeQuantizeBase):
    """torch's ``_LearnableFakeQuantize`` (LSQ / TQT learned quantization).

    Args:
      observer: observer class or factory producing static estimates.
      quant_min, quant_max: the integer range (``quant_min < quant_max``, inside the
        observer's dtype); also passed to the observer.
      scale, zero_point: initial values.
      channel_len: -1 for per-tensor, else the number of channels.
      use_grad_scaling: scale gradients by ``1/sqrt(numel * quant_max)``.
      **observer_kwargs: the observer's other arguments.

    Raises:
      ValueError: a bad range or channel_len.
    """

    def __init__(self, observer: Any, quant_min: int = 0, quant_max: int = 255,
                 scale: float = 1.0, zero_point: float = 0.0, channel_len: int = -1,
                 use_grad_scaling: bool = False, **observer_kwargs: Any):
        super().__init__(jnp.uint8)
        if quant_min >= quant_max:
            raise ValueError(f"quant_min={quant_min} must be strictly less than "
                             f"quant_max={quant_max}")
        self.quant_min = int(quant_min)
        self.quant_max = int(quant_max)
        observer_kwargs["quant_min"] = quant_min
        observer_kwargs["quant_max"] = quant_max
        self.use_grad_scaling = bool(use_grad_scaling)
        if channel_len == -1:
            size = 1
        elif isinstance(channel_len, int) and not isinstance(channel_len, bool) \
                and channel_len > 0:
            size = channel_len
        else:
            raise ValueError(f"channel_len={channel_len!r} must be a positive int or -1")
        self.scale = nnx.Param(jnp.full((size,), scale, jnp.float32))
        self.zero_point = nnx.Param(jnp.full((size,), zero_point, jnp.float32))
        self.activation_post_process = observer(**observer_kwargs)
        dtype = as_quant_dtype(self.activation_post_process.dtype)
        if dtype.quant_min > quant_min:
            raise ValueError(f"quant_min={quant_min} is out of bound for {dtype!r}")
        if quant_max > dtype.quant_max:
            raise ValueError(f"quant_max={quant_max} is out of bound for {dtype!r}")
        self.dtype = dtype
        self.qscheme = self.activation_post_process.qscheme
        self.ch_axis = getattr(self.activation_post_process, "ch_axis", -1)
        self._set_state(static_enabled=jnp.ones((1,), jnp.uint8),
                        learning_enabled=jnp.zeros((1,), jnp.uint8))
        self.bitwidth = int(math.log2(quant_max - quant_min + 1))
        # torch's Parameters start with requires_grad=True although learning_enabled=0.
        self.qparams_require_grad = True
        self.eps = float(np.float32(FLOAT32_EPS))

    # -- toggles (torch's names; they return self where torch does) ---------------
    def enable_param_learning(self) -> _LearnableFakeQuantize:
        self.toggle_qparam_learning(True).toggle_fake_quant(True).toggle_observer_update(
            False)
        return self

    def enable_static_estimate(self) -> None:
        self.toggle_qparam_learning(False).toggle_fake_quant(True).toggle_observer_update(
            True)

    def enable_static_observation(self) -> None:
        self.toggle_qparam_learning(False).toggle_fake_quant(False).toggle_observer_update(
            True)

    def toggle_observer_update(self, enabled: bool = True) -> _LearnableFakeQuantize:
        self._set_flag("static_enabled", enabled)
        return self

    def enable_observer(self, enabled: bool = True) -> None:
        self.toggle_observer_update(enabled)

    def toggle_qparam_learning(self, enabled: bool = True) -> _LearnableFakeQuantize:
        """Sets ``learning_enabled`` and torch's ``requires_grad`` of scale/zero_point
        (``qparams_require_grad``, a static attribute: toggling it retraces a jitted
        step, once per phase)."""
        self._set_flag("learning_enabled", enabled)
        self.qparams_require_grad = bool(enabled)
        return self

    def toggle_fake_quant(self, enabled: bool = True) -> _LearnableFakeQuantize:
        self._set_flag("fake_quant_enabled", enabled)
        return self

    def observe_quant_params(self) -> None:
        print(f"_LearnableFakeQuantize Scale: {self.scale[...]}")
        print(f"_LearnableFakeQuantize Zero Point: {self.zero_point[...]}")

    def calculate_qparams(self) -> tuple[jax.Array, jax.Array]:
        """``(scale, zero_point)``: scale clamped to eps (also in the Param, as torch),
        zero point rounded and clamped, as int32 (torch: int64)."""
        self.scale[...] = jnp.maximum(self.scale[...], jnp.float32(self.eps))
        zero_point = jnp.clip(jnp.round(self.zero_point[...]), self.quant_min,
                              self.quant_max).astype(jnp.int32)
        return self.scale[...], zero_point

    # -- forward -----------------------------------------------------------------
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        state = self.state.get_value()
        obs = self.activation_post_process
        scale_param, zero_point_param = self.scale[...], self.zero_point[...]
        if not self.qparams_require_grad:
            # torch's requires_grad=False: the Params get no gradient.
            scale_param = jax.lax.stop_gradient(scale_param)
            zero_point_param = jax.lax.stop_gradient(zero_point_param)

        def static(operand):
            observer_state, _, _ = operand
            observer_state = obs.core.update(observer_state, jax.lax.stop_gradient(x))
            new_scale, new_zero_point = obs.core.calculate_qparams(observer_state)
            return (observer_state, new_scale.astype(jnp.float32).reshape(scale_param.shape),
                    new_zero_point.astype(jnp.float32).reshape(zero_point_param.shape))

        def learned(operand):
            observer_state, scale, zero_point = operand
            return observer_state, jnp.maximum(scale, jnp.float32(self.eps)), zero_point

        observer_state, scale_value, zero_point_value = branch(
            state["static_enabled"], static, learned,
            (obs.state.get_value(), jax.lax.stop_gradient(scale_param),
             jax.lax.stop_gradient(zero_point_param)), "static_enabled")
        obs.state.set_value(observer_state)

        symmetric = self.qscheme.is_symmetric

        def quantize(operand):
            inputs, scale_value, zero_point_value = operand
            if symmetric:
                zero_point_value = jnp.zeros_like(zero_point_value)
            scale = _through(scale_param, scale_value)
            zero_point = _through(zero_point_param, zero_point_value)
            grad_factor = (1.0 / math.sqrt(inputs.size * self.quant_max)
                           if self.use_grad_scaling else 1.0)
            if self.qscheme.is_per_channel:
                out = fake_quantize_learnable_per_channel_affine(
                    inputs, scale, zero_point, self.ch_axis, self.quant_min,
                    self.quant_max, grad_factor)
            else:
                out = fake_quantize_learnable_per_tensor_affine(
                    inputs, scale, zero_point, self.quant_min, self.quant_max,
                    grad_factor)
            return out, jax.lax.stop_gradient(zero_point_value)

        y, zero_point_value = branch(
            state["fake_quant_enabled"], quantize,
            lambda operand: (operand[0], operand[2]),
            (x, scale_value, zero_point_value), "fake_quant_enabled")
        # torch's .data updates: the Params hold the values used (no gradient path).
        self.scale[...] = jax.lax.stop_gradient(scale_value)
        self.zero_point[...] = jax.lax.stop_gradient(zero_point_value)
        return y

    forward = __call__


