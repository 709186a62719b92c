"""Observers that record no statistics: fixed qparams, placeholders, recording.

* :class:`FixedQParamsObserver`: returns its stored ``scale``/``zero_point``.
* :class:`PlaceholderObserver`, :class:`NoopObserver`, :class:`ReuseInputObserver`:
  carry configuration only; ``calculate_qparams`` raises as in torch.
* :class:`RecordingObserver`: keeps every observed array (eager debugging only).

Example:
  >>> from jaxq.observer import FixedQParamsObserver
  >>> obs = FixedQParamsObserver(scale=1.0 / 256.0, zero_point=0)
  >>> obs.calculate_qparams()
  (Array([0.00390625], dtype=float32), Array([0], dtype=int32))
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.dtypes import as_quant_dtype, float16, float32, quint8
from jaxq.core.qscheme import QScheme, as_qscheme, per_tensor_affine
from jaxq.observer.base import FLOAT32_EPS, ObserverBase, ObserverCore, is_concrete

__all__ = ["FixedQParamsCore", "PlaceholderCore", "FixedQParamsObserver",
           "PlaceholderObserver", "RecordingObserver", "NoopObserver",
           "ReuseInputObserver"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FixedQParamsCore(ObserverCore):
    """Fixed per-tensor qparams. State: ``{"scale": f32[1], "zero_point": i32[1]}``
    (torch keeps them as buffers, so they appear in the observer state dict).

    Attributes:
      scale, zero_point: the initial values.
      qscheme, quant_min, quant_max: stored as given (torch does not use them here).
    """

    scale: float = 1.0
    zero_point: int = 0
    qscheme: QScheme = per_tensor_affine
    quant_min: int = 0
    quant_max: int = 255

    def init(self) -> dict[str, jax.Array]:
        return {"scale": jnp.array([self.scale], jnp.float32),
                "zero_point": jnp.array([self.zero_point], jnp.int32)}

    def calculate_qparams(self, state):
        return state["scale"], state["zero_point"]


class FixedQParamsObserver(ObserverBase):
    """Observer with fixed quantization parameters (torch's ``FixedQParamsObserver``).

    Args:
      scale: positive finite float.
      zero_point: integer in ``[quant_min, quant_max]``.
      dtype: default quint8.
      qscheme: default per_tensor_affine (only per-tensor schemes).
      quant_min, quant_max: default 0, 255.
      is_dynamic: must be False.

    Raises:
      ValueError: non-positive or non-finite scale, zero point outside the range,
        ``quant_min > quant_max``, a per-channel qscheme, or ``is_dynamic=True``.
    """

    def __init__(self, scale: float, zero_point: int, dtype: Any = quint8,
                 qscheme: Any = per_tensor_affine, quant_min: int = 0,
                 quant_max: int = 255, is_dynamic: bool = False):
        if is_dynamic:
            raise ValueError("FixedQParamsObserver does not support dynamic quantization "
                             "(is_dynamic=True)")
        scheme = as_qscheme(qscheme)
        if not scheme.is_per_tensor:
            raise ValueError("FixedQParamsObserver supports per-tensor qschemes only; got "
                             f"{scheme.value}")
        scale = float(np.float32(scale))
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale} must be a positive finite number")
        if not float(zero_point).is_integer():
            raise ValueError(f"zero_point={zero_point} must be an integer")
        if quant_min > quant_max:
            raise ValueError(f"quant_min={quant_min} must not exceed quant_max={quant_max}")
        if not quant_min <= zero_point <= quant_max:
            raise ValueError(f"zero_point={zero_point} must lie in [quant_min, quant_max] "
                             f"= [{quant_min}, {quant_max}]")
        super().__init__(FixedQParamsCore(
            dtype=as_quant_dtype(dtype), scale=scale, zero_point=int(zero_point),
            qscheme=scheme, quant_min=int(quant_min), quant_max=int(quant_max)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlaceholderCore(ObserverCore):
    """Configuration-only observers: no state, ``calculate_qparams`` raises.

    Attributes:
      qscheme, quant_min, quant_max, eps: stored for the converters (may be None).
      custom_op: torch's ``custom_op_name``.
      owner: the module name used in error messages.
    """

    qscheme: QScheme | None = None
    quant_min: int | None = None
    quant_max: int | None = None
    eps: float | None = None
    custom_op: str = ""
    owner: str = "PlaceholderObserver"

    def calculate_qparams(self, state):
        raise NotImplementedError(
            f"calculate_qparams should not be called for {self.owner}")


class PlaceholderObserver(ObserverBase):
    """Passes its configuration on; records nothing (torch's ``PlaceholderObserver``).

    Args:
      dtype: default float32 (any jaxq dtype, e.g. float16 or quint8 for dynamic).
      custom_op_name: stored as ``custom_op``.
      compute_dtype: deprecated in torch: it warns and, as in torch, has no effect
        (torch sets a local variable only); use ``is_dynamic=True``.
      quant_min, quant_max: stored as given.
      qscheme: default per_tensor_affine.
      eps: default float32 eps.
      is_dynamic: marks dynamic quantization.
    """

    def __init__(self, dtype: Any = float32, custom_op_name: str = "",
                 compute_dtype: Any = None, quant_min: int | None = None,
                 quant_max: int | None = None, qscheme: Any = None,
                 eps: float | None = None, is_dynamic: bool = False):
        if compute_dtype:
            warnings.warn("Please use `is_dynamic` instead of `compute_dtype`. "
                          "`compute_dtype` will be deprecated in a future release of "
                          "PyTorch.", stacklevel=2)
        super().__init__(PlaceholderCore(
            dtype=as_quant_dtype(dtype), is_dynamic=bool(is_dynamic),
            qscheme=as_qscheme(per_tensor_affine if qscheme is None else qscheme),
            quant_min=quant_min, quant_max=quant_max,
            eps=FLOAT32_EPS if eps is None else float(eps), custom_op=custom_op_name,
            owner="PlaceholderObserver"))

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, is_dynamic={self.is_dynamic}"


class NoopObserver(ObserverBase):
    """Passes its configuration on (torch's ``NoopObserver``; default dtype float16)."""

    def __init__(self, dtype: Any = float16, custom_op_name: str = ""):
        super().__init__(PlaceholderCore(dtype=as_quant_dtype(dtype),
                                         custom_op=custom_op_name, owner="NoopObserver"))


class ReuseInputObserver(ObserverBase):
    """Marks an output that reuses its input's observer (torch's ``ReuseInputObserver``;
    graph mode only)."""

    def __init__(self):
        super().__init__(PlaceholderCore(dtype=quint8, owner="ReuseInputObserver"))


class RecordingObserver(ObserverBase):
    """Keeps a copy of every observed array (torch's ``RecordingObserver``).

    Eager only: the records live in a Python list, so calling it on a tracer (inside
    ``jit``/``scan``) raises ``TypeError``.

    Args:
      dtype: default quint8.
    """

    def __init__(self, dtype: Any = quint8):
        super().__init__(PlaceholderCore(dtype=as_quant_dtype(dtype),
                                         owner="RecordingObserver"))
        self.tensor_val: list[jax.Array] = []

    def __call__(self, x: jax.Array) -> jax.Array:
        if not is_concrete(x):
            raise TypeError("RecordingObserver records concrete arrays; call it outside "
                            "jax.jit / nnx.jit / lax.scan")
        self.tensor_val.append(jnp.array(x, copy=True))
        return x

    forward = __call__

    def get_tensor_value(self) -> list[jax.Array]:
        """The recorded arrays, oldest first."""
        return self.tensor_val
