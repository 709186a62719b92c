"""Float activation modules: torch's ``torch.nn`` activations as NNX modules.

Flax has activation *functions* (``jax.nn.relu``...) but torch's eager fusion patterns
(``fuse_modules(model, [["conv", "bn", "relu"]])``) and module swapping need activation
*modules*. These are thin, stateless ``nnx.Module`` wrappers with torch's constructor
arguments and torch's numerics:

* ``inplace`` is accepted for torch compatibility and ignored: JAX arrays are
  immutable, so every module returns a new array.
* ``Hardswish``/``Hardsigmoid`` divide by 6 with
  :func:`jaxq.core.affine.exact_divide` like torch (XLA would otherwise multiply by
  ``1/6``, off by one ulp).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.nn.modules import ReLU6
  >>> ReLU6(inplace=True)(jnp.array([-1.0, 3.0, 9.0]))
  Array([0., 3., 6.], dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxq.core.affine import exact_divide
from jaxq.qconfig import Identity as _QConfigIdentity

__all__ = ["ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "Hardtanh", "ELU", "LeakyReLU",
           "Sigmoid", "Tanh", "SiLU", "GELU", "Identity", "ACTIVATION_MODULES"]


def _check_bool(value: Any, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{argument}={value!r} must be a bool")
    return value


def _check_float(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument}={value!r} must be a float")
    return float(value)


class _Activation(nnx.Module):
    """Base of the activation modules: stateless, ``inplace`` accepted and ignored."""

    def __init__(self, inplace: bool = False):
        self.inplace = _check_bool(inplace, "inplace")

    def __call__(self, x: jax.Array) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: jax.Array) -> jax.Array:
        """torch's name for ``__call__``."""
        return self(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Activation):
    """``max(x, 0)`` (torch's ``nn.ReLU``); any shape and float dtype."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x)


class ReLU6(_Activation):
    """``min(max(x, 0), 6)`` (torch's ``nn.ReLU6``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.clip(x, 0, 6).astype(jnp.result_type(x))


class Hardsigmoid(_Activation):
    """``relu6(x + 3) / 6`` (torch's ``nn.Hardsigmoid``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return exact_divide(jnp.clip(x + 3, 0, 6), 6.0).astype(x.dtype)


class Hardswish(_Activation):
    """``x * relu6(x + 3) / 6`` (torch's ``nn.Hardswish``, same operation order)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return exact_divide(x * jnp.clip(x + 3, 0, 6), 6.0).astype(x.dtype)


class Hardtanh(_Activation):
    """``clamp(x, min_val, max_val)`` (torch's ``nn.Hardtanh``).

    Raises:
      ValueError: ``max_val <= min_val``.
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False,
                 min_value: float | None = None, max_value: float | None = None):
        super().__init__(inplace)
        # torch's deprecated aliases win when given.
        min_val = min_val if min_value is None else min_value
        max_val = max_val if max_value is None else max_value
        self.min_val = _check_float(min_val, "min_val")
        self.max_val = _check_float(max_val, "max_val")
        if self.max_val <= self.min_val:
            raise ValueError(f"max_val={self.max_val} must be greater than "
                             f"min_val={self.min_val}")

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.clip(x, self.min_val, self.max_val).astype(x.dtype)


class ELU(_Activation):
    """``x if x > 0 else alpha * expm1(x)`` (torch's ``nn.ELU``)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = _check_float(alpha, "alpha")

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.where(x > 0, x, self.alpha * jnp.expm1(x)).astype(x.dtype)


class LeakyReLU(_Activation):
    """``x if x > 0 else negative_slope * x`` (torch's ``nn.LeakyReLU``)."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace)
        self.negative_slope = _check_float(negative_slope, "negative_slope")

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.where(x > 0, x, x * self.negative_slope).astype(x.dtype)


class SiLU(_Activation):
    """``x * sigmoid(x)`` (torch's ``nn.SiLU``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.silu(x)


class _NoArgs(nnx.Module):
    """torch's ``Sigmoid``/``Tanh``/``Identity`` accept and ignore any arguments."""

    def __init__(self, *args: Any, **kwargs: Any):
        del args, kwargs


class Sigmoid(_NoArgs):
    """``1 / (1 + exp(-x))`` (torch's ``nn.Sigmoid``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(x)


class Tanh(_NoArgs):
    """``tanh(x)`` (torch's ``nn.Tanh``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(x)


class Identity(_QConfigIdentity):
    """Returns its input (torch's ``nn.Identity``; arguments accepted and ignored).

    A subclass of :class:`jaxq.qconfig.Identity`, the constructor torch's
    weight-only/activation-only qconfigs use.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        del args, kwargs


class GELU(nnx.Module):
    """torch's ``nn.GELU``: exact (``approximate="none"``) or ``"tanh"``.

    torch's formulas. ``GELU()(inf)`` is ``inf`` as torch's scalar path gives (its
    vectorized CPU path returns NaN for arrays of 3+ elements).

    Raises:
      ValueError: another ``approximate``.
    """

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate={approximate!r} must be 'none' or 'tanh'")
        self.approximate = approximate

    def __call__(self, x: jax.Array) -> jax.Array:
        # torch's formulas (jax.nn.gelu evaluates the exact form differently, which
        # differs from torch by up to 1e-4 relative in the negative tail).
        x = jnp.asarray(x)
        if self.approximate == "tanh":
            inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
            return (0.5 * x * (1 + jnp.tanh(inner))).astype(x.dtype)
        return (x * 0.5 * (1 + jax.lax.erf(x * math.sqrt(0.5)))).astype(x.dtype)


ACTIVATION_MODULES: tuple[type, ...] = (ReLU, ReLU6, Hardswish, Hardsigmoid, Hardtanh, ELU,
                                        LeakyReLU, Sigmoid, Tanh, SiLU, GELU, Identity)
"""Every activation module class of this file."""
