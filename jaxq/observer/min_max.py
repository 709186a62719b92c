"""Per-tensor running min/max observers: MinMaxObserver and its moving average.

State (torch's buffer names): ``{"min_val": f32[], "max_val": f32[]}``, initially
``+inf``/``-inf`` ("never observed"). Empty batches are skipped; NaN in a batch
propagates into the statistics, as in torch.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.observer import MinMaxObserver
  >>> obs = MinMaxObserver(dtype=jaxq.qint8, qscheme=jaxq.per_tensor_symmetric)
  >>> _ = obs(jnp.array([-2.0, 1.0]))
  >>> obs.calculate_qparams()[0]
  Array([0.01568628], dtype=float32)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxq.core.dtypes import quint8
from jaxq.core.float_arithmetic import separately_rounded
from jaxq.core.qscheme import as_qscheme, per_tensor_affine
from jaxq.observer.base import (
    FLOAT32_EPS,
    UniformQuantizationCore,
    UniformQuantizationObserverBase,
    as_observed_input,
)

__all__ = ["MinMaxCore", "MovingAverageMinMaxCore", "MinMaxObserver",
           "MovingAverageMinMaxObserver", "check_factory_kwargs"]


def check_factory_kwargs(factory_kwargs: Any) -> None:
    """torch's ``factory_kwargs``: ``device`` is ignored (JAX places arrays), ``dtype``
    must be float32 (jaxq statistics are float32).

    Raises:
      ValueError: any other key, or a non-float32 dtype.
    """
    if not factory_kwargs:
        return
    for key, value in dict(factory_kwargs).items():
        if key == "device":
            continue
        if key == "dtype" and str(value).removeprefix("torch.") == "float32":
            continue
        raise ValueError(f"factory_kwargs[{key!r}]={value!r} is not supported: jaxq "
                         "observers keep float32 statistics (accepted keys: device, "
                         "dtype=float32)")


def _check_symmetric_reduce_range(core: UniformQuantizationCore, owner: str) -> None:
    if core.qscheme.is_symmetric and core.reduce_range and core.dtype.name == "quint8":
        raise ValueError(f"{owner}: reduce_range=True is not supported for symmetric "
                         "quantization with dtype quint8 (torch raises "
                         "NotImplementedError)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MinMaxCore(UniformQuantizationCore):
    """Running min/max of every observed batch (torch's ``MinMaxObserver``)."""

    def init(self) -> dict[str, jax.Array]:
        return {"min_val": jnp.array(jnp.inf, jnp.float32),
                "max_val": jnp.array(-jnp.inf, jnp.float32)}

    def reset(self, state: dict[str, jax.Array]) -> dict[str, jax.Array]:
        del state
        return self.init()

    def batch_min_max(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``torch.aminmax`` of a non-empty float32 batch (NaN propagates)."""
        return jnp.min(x), jnp.max(x)

    def combine(self, state, batch_min, batch_max):
        """New ``(min_val, max_val)`` from the state and one batch's min/max."""
        return (jnp.minimum(batch_min, state["min_val"]),
                jnp.maximum(batch_max, state["max_val"]))

    def update(self, state: dict[str, jax.Array], x: Any) -> dict[str, jax.Array]:
        x = as_observed_input(x)
        if x.size == 0:
            return state
        min_val, max_val = self.combine(state, *self.batch_min_max(x))
        return {"min_val": min_val, "max_val": max_val}

    def calculate_qparams(self, state):
        return self._calculate_qparams(state["min_val"], state["max_val"])


def _moving_average(old, batch, averaging_constant):
    """``old + c * (batch - old)`` with the product rounded on its own, as torch does.

    Under jit, XLA's CPU backend contracts ``a + b * c`` into one fused multiply-add
    (see :mod:`jaxq.core.float_arithmetic`).
    """
    return old + separately_rounded(averaging_constant * (batch - old))


@dataclasses.dataclass(frozen=True, kw_only=True)
class MovingAverageMinMaxCore(MinMaxCore):
    """``m += c * (batch - m)``; the first batch sets min/max (torch's
    ``MovingAverageMinMaxObserver``).

    Attributes:
      averaging_constant: ``c``.
    """

    averaging_constant: float = 0.01

    def combine(self, state, batch_min, batch_max):
        min_val, max_val = state["min_val"], state["max_val"]
        first = (min_val == jnp.inf) & (max_val == -jnp.inf)
        c = jnp.float32(self.averaging_constant)
        return (jnp.where(first, batch_min, _moving_average(min_val, batch_min, c)),
                jnp.where(first, batch_max, _moving_average(max_val, batch_max, c)))


class MinMaxObserver(UniformQuantizationObserverBase):
    """Running min/max observer (torch's ``MinMaxObserver``), per tensor.

    Args:
      dtype: qint8, quint8, int8, uint8, int16, uint16, qint32, int32, quint4x2,
        float8_e4m3fn or float8_e5m2 (default quint8).
      qscheme: ``per_tensor_affine`` (default) or ``per_tensor_symmetric``.
      reduce_range: halve the range (not with quint8 symmetric).
      quant_min, quant_max: custom range (must contain 0).
      factory_kwargs: torch's; only ``device`` (ignored) and ``dtype=float32``.
      eps: smallest scale (default float32 eps).
      is_dynamic: marks a dynamic-quantization observer.

    State: ``min_val``, ``max_val`` (float32 scalars). ``calculate_qparams()`` returns
    scale float32 ``[1]`` and zero point int32 ``[1]`` (torch: int64 for symmetric).

    Raises:
      ValueError: a per-channel qscheme, quint8 symmetric with reduce_range, a bad
        custom range.
      TypeError: an unsupported dtype or qscheme.
    """

    def __init__(self, dtype: Any = quint8, qscheme: Any = per_tensor_affine,
                 reduce_range: bool = False, quant_min: int | None = None,
                 quant_max: int | None = None, factory_kwargs: Any = None,
                 eps: float = FLOAT32_EPS, is_dynamic: bool = False):
        super().__init__(_per_tensor_core(
            MinMaxCore, type(self).__name__, dtype=dtype, qscheme=qscheme,
            reduce_range=reduce_range, quant_min=quant_min, quant_max=quant_max,
            factory_kwargs=factory_kwargs, eps=eps, is_dynamic=is_dynamic))

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Moving-average min/max observer (torch's ``MovingAverageMinMaxObserver``).

    Args:
      averaging_constant: ``c`` in ``m += c * (batch - m)`` (default 0.01); the first
        batch sets min/max.
      Others: as :class:`MinMaxObserver`.

    Raises:
      ValueError: ``is_dynamic=True`` with ``averaging_constant != 1`` (torch raises
        NotImplementedError), and the :class:`MinMaxObserver` errors.
    """

    def __init__(self, averaging_constant: float = 0.01, dtype: Any = quint8,
                 qscheme: Any = per_tensor_affine, reduce_range: bool = False,
                 quant_min: int | None = None, quant_max: int | None = None,
                 eps: float = FLOAT32_EPS, is_dynamic: bool = False,
                 factory_kwargs: Any = None):
        if is_dynamic and averaging_constant != 1:
            raise ValueError("MovingAverageMinMaxObserver supports is_dynamic=True only "
                             f"with averaging_constant=1; got {averaging_constant}")
        UniformQuantizationObserverBase.__init__(self, _per_tensor_core(
            MovingAverageMinMaxCore, type(self).__name__, dtype=dtype, qscheme=qscheme,
            reduce_range=reduce_range, quant_min=quant_min, quant_max=quant_max,
            factory_kwargs=factory_kwargs, eps=eps, is_dynamic=is_dynamic,
            averaging_constant=float(averaging_constant)))


def _per_tensor_core(core_type, owner, *, qscheme, factory_kwargs, **kwargs):
    scheme = as_qscheme(qscheme)
    if not scheme.is_per_tensor:
        raise ValueError(f"{owner} supports qscheme per_tensor_affine or "
                         f"per_tensor_symmetric; got {scheme.value}")
    check_factory_kwargs(factory_kwargs)
    core = core_type.create(qscheme=scheme, **kwargs)
    _check_symmetric_reduce_range(core, owner)
    return core
