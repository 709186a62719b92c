"""Per-channel running min/max observers.

State (torch's buffer names): ``{"min_val": f32[C], "max_val": f32[C]}``.

Sizing. torch sizes the per-channel buffers on the first batch (they start empty).
jaxq does the same by default: the state starts with shape ``[0]`` and the first
non-empty batch gives it shape ``[C]`` (``C = x.shape[ch_axis]``). That works eagerly
and under ``nnx.jit`` (one extra trace for the size change). Inside ``lax.scan``,
``vmap`` or any code that needs a fixed state shape, size it ahead of time: pass
``num_channels=C`` to the constructor (or call ``obs.set_num_channels(C)``, or make
the core with ``num_channels=C``). A pre-sized state starts at ``+inf``/``-inf`` per
channel; channels never observed give scale 1.0 and zero point 0.

Channel axis: ``x`` is reduced over every axis except ``ch_axis`` (negative axes
count from the end). torch rejects 1-D inputs (``flatten(start_dim=1)`` fails);
jaxq accepts them, each element being its own channel.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.observer import PerChannelMinMaxObserver
  >>> obs = PerChannelMinMaxObserver(ch_axis=1, dtype=jaxq.qint8,
  ...                                qscheme=jaxq.per_channel_symmetric)
  >>> _ = obs(jnp.ones((4, 3)))
  >>> obs.calculate_qparams()[0].shape
  (3,)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxq.core.dtypes import quint8
from jaxq.core.qscheme import as_qscheme, per_channel_affine
from jaxq.observer.base import (
    FLOAT32_EPS,
    UniformQuantizationCore,
    UniformQuantizationObserverBase,
    as_observed_input,
)
from jaxq.observer.min_max import (
    _check_symmetric_reduce_range,
    _moving_average,
    check_factory_kwargs,
)

__all__ = ["PerChannelMinMaxCore", "MovingAveragePerChannelMinMaxCore",
           "PerChannelMinMaxObserver", "MovingAveragePerChannelMinMaxObserver",
           "per_channel_min_max"]


def per_channel_min_max(x: jax.Array, ch_axis: int) -> tuple[jax.Array, jax.Array]:
    """Min and max of ``x`` over every axis but ``ch_axis``: two ``[C]`` arrays.

    Raises:
      ValueError: ``x`` is 0-d or ``ch_axis`` is out of range.
    """
    if x.ndim == 0:
        raise ValueError("per-channel observers need an input with at least one "
                         "dimension; got a scalar")
    if not -x.ndim <= ch_axis < x.ndim:
        raise ValueError(f"ch_axis={ch_axis} is out of range for an input of shape "
                         f"{x.shape} (accepted: {-x.ndim}..{x.ndim - 1})")
    y = jnp.moveaxis(x, ch_axis, 0).reshape(x.shape[ch_axis], -1)
    return jnp.min(y, axis=1), jnp.max(y, axis=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PerChannelMinMaxCore(UniformQuantizationCore):
    """Running per-channel min/max (torch's ``PerChannelMinMaxObserver``).

    Attributes:
      ch_axis: the channel axis of the observed inputs.
      num_channels: the state size fixed ahead of time, or None to size it from the
        first batch (see the module docstring).
    """

    ch_axis: int = 0
    num_channels: int | None = None

    def init(self) -> dict[str, jax.Array]:
        size = 0 if self.num_channels is None else self.num_channels
        return {"min_val": jnp.full((size,), jnp.inf, jnp.float32),
                "max_val": jnp.full((size,), -jnp.inf, jnp.float32)}

    def reset(self, state: dict[str, jax.Array]) -> dict[str, jax.Array]:
        del state
        return self.init()

    def combine(self, min_val, max_val, batch_min, batch_max):
        return jnp.minimum(batch_min, min_val), jnp.maximum(batch_max, max_val)

    def update(self, state: dict[str, jax.Array], x: Any) -> dict[str, jax.Array]:
        x = as_observed_input(x)
        if x.size == 0:
            return state
        batch_min, batch_max = per_channel_min_max(x, self.ch_axis)
        min_val, max_val = state["min_val"], state["max_val"]
        if min_val.size == 0:
            return {"min_val": batch_min, "max_val": batch_max}
        if min_val.shape != batch_min.shape:
            raise ValueError(
                f"the input has {batch_min.shape[0]} channels along ch_axis="
                f"{self.ch_axis} (shape {x.shape}) but the observer state has "
                f"{min_val.shape[0]}; reset it (reset_min_max_vals) to change the size")
        min_val, max_val = self.combine(min_val, max_val, batch_min, batch_max)
        return {"min_val": min_val, "max_val": max_val}

    def calculate_qparams(self, state):
        return self._calculate_qparams(state["min_val"], state["max_val"])


@dataclasses.dataclass(frozen=True, kw_only=True)
class MovingAveragePerChannelMinMaxCore(PerChannelMinMaxCore):
    """Per-channel ``m += c * (batch - m)``; the first batch sets min/max."""

    averaging_constant: float = 0.01

    def combine(self, min_val, max_val, batch_min, batch_max):
        # A channel still at +inf/-inf (pre-sized, never observed) takes the batch.
        first = (min_val == jnp.inf) & (max_val == -jnp.inf)
        c = jnp.float32(self.averaging_constant)
        return (jnp.where(first, batch_min, _moving_average(min_val, batch_min, c)),
                jnp.where(first, batch_max, _moving_average(max_val, batch_max, c)))


def _check_num_channels(num_channels):
    if num_channels is not None and (isinstance(num_channels, bool) or
                                     not isinstance(num_channels, int) or num_channels < 1):
        raise ValueError(f"num_channels={num_channels!r} must be a positive int or None")


def _per_channel_core(core_type, owner, *, qscheme, factory_kwargs, is_dynamic,
                      num_channels, ch_axis, **kwargs):
    scheme = as_qscheme(qscheme)
    if not scheme.is_per_channel:
        raise ValueError(f"{owner} supports qscheme per_channel_affine, "
                         "per_channel_symmetric or per_channel_affine_float_qparams; "
                         f"got {scheme.value}")
    if is_dynamic:
        raise ValueError(f"{owner} does not support dynamic quantization (is_dynamic=True)")
    if isinstance(ch_axis, bool) or not isinstance(ch_axis, int):
        raise TypeError(f"ch_axis={ch_axis!r} must be an int")
    _check_num_channels(num_channels)
    check_factory_kwargs(factory_kwargs)
    core = core_type.create(qscheme=scheme, is_dynamic=False, ch_axis=ch_axis,
                            num_channels=num_channels, **kwargs)
    _check_symmetric_reduce_range(core, owner)
    return core


class PerChannelMinMaxObserver(UniformQuantizationObserverBase):
    """Per-channel running min/max observer (torch's ``PerChannelMinMaxObserver``).

    Args:
      ch_axis: channel axis (default 0).
      dtype, reduce_range, quant_min, quant_max, factory_kwargs, eps: as
        :class:`jaxq.observer.MinMaxObserver`.
      qscheme: ``per_channel_affine`` (default), ``per_channel_symmetric`` or
        ``per_channel_affine_float_qparams``.
      is_dynamic: must be False.
      num_channels: jaxq extension: size the state ahead of time (needed inside
        ``lax.scan``/``vmap``); default None sizes it from the first batch.

    ``calculate_qparams()`` returns scale float32 ``[C]`` and zero point int32 ``[C]``
    (float32 for float qparams); never observed and unsized: ``[1.0]``, ``[0]`` with a
    warning, as torch.
    """

    def __init__(self, ch_axis: int = 0, dtype: Any = quint8,
                 qscheme: Any = per_channel_affine, reduce_range: bool = False,
                 quant_min: int | None = None, quant_max: int | None = None,
                 factory_kwargs: Any = None, eps: float = FLOAT32_EPS,
                 is_dynamic: bool = False, *, num_channels: int | None = None):
        super().__init__(_per_channel_core(
            PerChannelMinMaxCore, type(self).__name__, ch_axis=ch_axis, dtype=dtype,
            qscheme=qscheme, reduce_range=reduce_range, quant_min=quant_min,
            quant_max=quant_max, factory_kwargs=factory_kwargs, eps=eps,
            is_dynamic=is_dynamic, num_channels=num_channels))

    def set_num_channels(self, num_channels: int | None) -> None:
        """Fixes the state size to ``num_channels`` (None: size from the next batch)
        and resets the statistics."""
        _check_num_channels(num_channels)
        self.core = dataclasses.replace(self.core, num_channels=num_channels)
        self.state.set_value(self.core.init())

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


class MovingAveragePerChannelMinMaxObserver(PerChannelMinMaxObserver):
    """Per-channel moving-average min/max observer (torch's
    ``MovingAveragePerChannelMinMaxObserver``).

    Args:
      averaging_constant: ``c`` in ``m += c * (batch - m)`` (default 0.01).
      Others: as :class:`PerChannelMinMaxObserver`.
    """

    def __init__(self, averaging_constant: float = 0.01, ch_axis: int = 0,
                 dtype: Any = quint8, qscheme: Any = per_channel_affine,
                 reduce_range: bool = False, quant_min: int | None = None,
                 quant_max: int | None = None, eps: float = FLOAT32_EPS,
                 is_dynamic: bool = False, factory_kwargs: Any = None, *,
                 num_channels: int | None = None):
        UniformQuantizationObserverBase.__init__(self, _per_channel_core(
            MovingAveragePerChannelMinMaxCore, type(self).__name__, ch_axis=ch_axis,
            dtype=dtype, qscheme=qscheme, reduce_range=reduce_range,
            quant_min=quant_min, quant_max=quant_max, factory_kwargs=factory_kwargs,
            eps=eps, is_dynamic=is_dynamic, num_channels=num_channels,
            averaging_constant=float(averaging_constant)))
