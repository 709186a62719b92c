"""FakeQuantize and FixedQParamsFakeQuantize: observe, update qparams, fake-quantize.

The functional core :class:`FakeQuantizeCore` holds the static config (the observer's
core, the range, the channel axis) and one pure step,
``apply(state, observer_state, x) -> (y, state, observer_state)``, which is what the
module runs. It is jittable, differentiable in ``x`` (torch's straight-through
gradient with the in-range mask) and usable in ``lax.scan``.

State (torch's buffer names): ``fake_quant_enabled``, ``observer_enabled`` (uint8
``[1]``), ``scale`` (float32 ``[1]`` or ``[C]``), ``zero_point`` (int32, or float32
for ``per_channel_affine_float_qparams``). The observer's state lives in the child
module ``activation_post_process``.

Per-channel sizing: torch starts with ``scale=[1.0]`` and resizes it on the first
observed batch. jaxq does the same eagerly; when the observer is sized ahead of time
(``num_channels=C`` in the observer kwargs) ``scale``/``zero_point`` start as ``[C]``
ones/zeros, which is what a jitted or scanned step needs.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.fake_quantize import FakeQuantize
  >>> fq = FakeQuantize(quant_min=0, quant_max=255)
  >>> y = fq(jnp.array([-1.0, 0.5, 2.0]))
  >>> fq.scale.shape, fq.zero_point.dtype
  ((1,), dtype('int32'))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxq.core.dtypes import as_quant_dtype, quint8
from jaxq.core.fake_quantize_ops import (
    fake_quantize_per_channel_affine,
    fake_quantize_per_tensor_affine,
)
from jaxq.core.qscheme import QScheme
from jaxq.fake_quantize.base import FakeQuantizeBase, branch
from jaxq.observer.base import ObserverCore, ObserverState
from jaxq.observer.min_max import MovingAverageMinMaxObserver
from jaxq.observer.simple import FixedQParamsObserver

__all__ = ["FakeQuantizeCore", "FakeQuantize", "FixedQParamsFakeQuantize",
           "check_observer_range"]


def _state_num_channels(observer_core: ObserverCore) -> int | None:
    return getattr(observer_core, "num_channels", None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeQuantizeCore:
    """Static config and the pure step of :class:`FakeQuantize`.

    Attributes:
      observer: the observer's core.
      quant_min, quant_max: the observer's resolved range.
      ch_axis: the channel axis (-1 when the observer has none).
      is_per_channel: per-channel fake-quantize.
      float_zero_point: zero points are float32 (float qparams).
    """

    observer: ObserverCore
    quant_min: int
    quant_max: int
    ch_axis: int = -1
    is_per_channel: bool = False
    float_zero_point: bool = False

    def init(self, flag_dtype: Any = jnp.uint8) -> dict[str, jax.Array]:
        channels = _state_num_channels(self.observer) if self.is_per_channel else None
        size = 1 if channels is None else channels
        zero_point_dtype = jnp.float32 if self.float_zero_point else jnp.int32
        return {"fake_quant_enabled": jnp.ones((1,), flag_dtype),
                "observer_enabled": jnp.ones((1,), flag_dtype),
                "scale": jnp.ones((size,), jnp.float32),
                "zero_point": jnp.zeros((size,), zero_point_dtype)}

    def observe(self, state, observer_state, x):
        """Observer update and qparams recomputation (the ``observer_enabled`` branch)."""
        observer_state = self.observer.update(observer_state, jax.lax.stop_gradient(x))
        scale, zero_point = self.observer.calculate_qparams(observer_state)
        state = {**state, "scale": scale.astype(jnp.float32),
                 "zero_point": zero_point.astype(state["zero_point"].dtype)}
        return state, observer_state

    def fake_quantize(self, x, scale, zero_point):
        """torch's ``fake_quantize_per_{tensor,channel}_affine`` with the current qparams."""
        if self.is_per_channel:
            return fake_quantize_per_channel_affine(x, scale, zero_point, self.ch_axis,
                                                    self.quant_min, self.quant_max)
        return fake_quantize_per_tensor_affine(x, scale, zero_point, self.quant_min,
                                               self.quant_max)

    def apply(self, state, observer_state, x):
        """One forward step: ``(y, state, observer_state)``."""
        x = jnp.asarray(x)
        state, observer_state = branch(
            state["observer_enabled"], lambda a: self.observe(*a, x), lambda a: a,
            (state, observer_state), "observer_enabled")
        y = branch(state["fake_quant_enabled"],
                   lambda v: self.fake_quantize(v, state["scale"], state["zero_point"]),
                   lambda v: v, x, "fake_quant_enabled")
        return y, state, observer_state


def check_observer_range(observer: Any, observer_kwargs: dict[str, Any],
                         quant_min: Any, quant_max: Any) -> None:
    """torch's FakeQuantize range checks: ``quant_min <= quant_max`` and both inside
    the dtype (read from the kwargs or the observer factory's bound ``dtype``).

    Raises:
      ValueError: naming the bad bound.
    """
    if quant_min is None or quant_max is None:
        return
    if quant_min > quant_max:
        raise ValueError(f"quant_min={quant_min} must be less than or equal to "
                         f"quant_max={quant_max}")
    dtype = observer_kwargs.get("dtype", quint8)
    keywords = getattr(getattr(observer, "p", None), "keywords", {})
    dtype = as_quant_dtype(keywords.get("dtype", dtype))
    if dtype.quant_min > quant_min:
        raise ValueError(f"quant_min={quant_min} is out of bound for {dtype!r} "
                         f"([{dtype.quant_min}, {dtype.quant_max}])")
    if quant_max > dtype.quant_max:
        raise ValueError(f"quant_max={quant_max} is out of bound for {dtype!r} "
                         f"([{dtype.quant_min}, {dtype.quant_max}])")


class FakeQuantize(FakeQuantizeBase):
    """Observe, recompute qparams, fake-quantize (torch's ``FakeQuantize``).

    ``y = (clamp(round(x / scale) + zero_point, quant_min, quant_max) - zero_point)
    * scale`` with the straight-through gradient masked to the range.

    Args:
      observer: observer class or factory (default MovingAverageMinMaxObserver).
      quant_min, quant_max: passed to the observer (checked against its dtype).
      is_dynamic: passed to the observer.
      **observer_kwargs: the observer's other arguments (``dtype``, ``qscheme``,
        ``ch_axis``, ``num_channels``...).

    Attributes:
      activation_post_process: the observer module.
      quant_min, quant_max, dtype, qscheme, ch_axis, is_per_channel, is_dynamic: as
        torch.

    Raises:
      ValueError: a bad range, or an observer whose qscheme is neither per-tensor nor
        per-channel.
    """

    def __init__(self, observer: Any = MovingAverageMinMaxObserver,
                 quant_min: int | None = None, quant_max: int | None = None,
                 is_dynamic: bool = False, **observer_kwargs: Any):
        self._build(observer, quant_min, quant_max, is_dynamic, observer_kwargs, jnp.uint8)

    def _build(self, observer, quant_min, quant_max, is_dynamic, observer_kwargs,
               flag_dtype):
        check_observer_range(observer, observer_kwargs, quant_min, quant_max)
        if quant_min is not None and quant_max is not None:
            observer_kwargs.update({"quant_min": quant_min, "quant_max": quant_max})
        observer_kwargs["is_dynamic"] = is_dynamic
        self.activation_post_process = observer(**observer_kwargs)
        obs = self.activation_post_process
        qscheme = getattr(obs, "qscheme", None)
        if not isinstance(qscheme, QScheme):
            raise ValueError("Only per channel and per tensor quantization are supported "
                             f"in fake quantize; got qscheme: {qscheme!r}")
        self.quant_min = obs.quant_min
        self.quant_max = obs.quant_max
        self.is_dynamic = obs.is_dynamic
        self.dtype = obs.dtype
        self.qscheme = qscheme
        self.ch_axis = getattr(obs, "ch_axis", -1)
        self.is_per_channel = qscheme.is_per_channel
        self.core = FakeQuantizeCore(
            observer=obs.core, quant_min=int(obs.quant_min), quant_max=int(obs.quant_max),
            ch_axis=int(self.ch_axis), is_per_channel=self.is_per_channel,
            float_zero_point=qscheme is QScheme.per_channel_affine_float_qparams)
        self.state = ObserverState(self.core.init(flag_dtype))

    def calculate_qparams(self) -> tuple[jax.Array, jax.Array]:
        """The observer's qparams (torch delegates to ``activation_post_process``)."""
        return self.activation_post_process.calculate_qparams()

    def __call__(self, x: jax.Array) -> jax.Array:
        obs = self.activation_post_process
        # The core step must see the observer's current core (per-channel modules may
        # have been resized with set_num_channels).
        core = dataclasses.replace(self.core, observer=obs.core)
        y, state, observer_state = core.apply(self.state.get_value(),
                                              obs.state.get_value(), x)
        self.state.set_value(state)
        obs.state.set_value(observer_state)
        return y

    forward = __call__

    def extra_repr(self) -> str:
        return (f"fake_quant_enabled={self.fake_quant_enabled}, observer_enabled="
                f"{self.observer_enabled}, quant_min={self.quant_min}, quant_max="
                f"{self.quant_max}, dtype={self.dtype}, qscheme={self.qscheme}, "
                f"ch_axis={self.ch_axis}, scale={self.scale}, zero_point={self.zero_point}")


class FixedQParamsFakeQuantize(FakeQuantize):
    """Fake-quantize with fixed qparams (torch's ``FixedQParamsFakeQuantize``).

    Args:
      observer: a :class:`~jaxq.observer.FixedQParamsObserver` class or factory.

    Raises:
      TypeError: the observer is not exactly a FixedQParamsObserver.
      ValueError: a per-channel qscheme.
    """

    def __init__(self, observer: Any):
        super().__init__(observer=observer)
        if type(self.activation_post_process) is not FixedQParamsObserver:
            raise TypeError(f"{type(self).__name__}'s observer must be a "
                            f"FixedQParamsObserver; got "
                            f"{type(self.activation_post_process).__name__}")
        if not self.qscheme.is_per_tensor:
            raise ValueError("Only per tensor quantization is supported by "
                             f"FixedQParamsFakeQuantize; got qscheme {self.qscheme.value}")
        fixed_scale, fixed_zero_point = self.activation_post_process.calculate_qparams()
        self._set_state(scale=fixed_scale, zero_point=fixed_zero_point)

    def calculate_qparams(self) -> tuple[jax.Array, jax.Array]:
        return self.scale, self.zero_point
