"""The observer design: a pure functional core plus a thin Flax NNX module.

Every jaxq observer (and every fake-quantize module) is built from two pieces.

1. **A functional core**: a frozen, hashable dataclass (subclass of
   :class:`ObserverCore`) holding only static configuration (dtype, qscheme, resolved
   quant_min/quant_max, eps, ...). It has three pure, jittable methods:

   * ``init() -> state``: a dict of float32 arrays keyed by torch's buffer names
     (``{"min_val": f32[], "max_val": f32[]}`` for MinMaxObserver);
   * ``update(state, x) -> state``: the new statistics after observing ``x``;
   * ``calculate_qparams(state) -> (scale, zero_point)``.

   Because the core is hashable it can be a static argument of ``jax.jit``, and since
   the state is a plain pytree the same code runs inside ``lax.scan``, ``vmap``,
   ``shard_map`` or on sharded arrays. Shapes must only depend on the config and the
   static input shapes (never on values).

2. **A module**: :class:`ObserverBase` (an ``nnx.Module``) holds ``self.core`` and
   ``self.state = ObserverState(core.init())``. ``obs(x)`` runs ``core.update`` on the
   state and returns ``x`` unchanged; ``obs.calculate_qparams()`` runs the core on the
   current state. :class:`ObserverState` is an ``nnx.Variable`` subclass, never an
   ``nnx.Param``, so optimizers and ``nnx.grad`` leave it alone and
   ``nnx.state(model, ObserverState)`` selects every observer statistic of a model.
   Under ``nnx.jit`` the state is carried as data: observing a new batch with the same
   shape does not recompile.

Writing a new observer (what ``histogram.py`` does)::

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class MyCore(UniformQuantizationCore):
        bins: int = 2048                                   # extra static config

        def init(self):
            return {"min_val": jnp.float32(jnp.inf), "max_val": jnp.float32(-jnp.inf),
                    "histogram": jnp.zeros((self.bins,), jnp.float32)}

        def update(self, state, x):
            x = as_observed_input(x)                       # float32 array
            if x.size == 0:                                # static: torch skips empty
                return state
            ...                                            # pure jnp maths
            return new_state

        def calculate_qparams(self, state):
            ...                                            # choose min/max
            return self._calculate_qparams(new_min, new_max)   # torch's shared rule

    class MyObserver(UniformQuantizationObserverBase):
        def __init__(self, bins=2048, dtype=quint8, qscheme=per_tensor_affine,
                     reduce_range=False, quant_min=None, quant_max=None,
                     factory_kwargs=None, eps=FLOAT32_EPS, is_dynamic=False, **kwargs):
            super().__init__(MyCore.create(
                bins=bins, dtype=dtype, qscheme=qscheme, reduce_range=reduce_range,
                quant_min=quant_min, quant_max=quant_max, eps=eps,
                is_dynamic=is_dynamic))

``UniformQuantizationCore.create`` validates and resolves the torch arguments (dtype,
qscheme, custom range, reduce_range) once; the dataclass fields then hold the
resolved ``quant_min``/``quant_max`` and ``has_customized_qrange``. The module exposes
the core's fields (``obs.dtype``, ``obs.qscheme``, ``obs.quant_min``, ...) and the
state's entries (``obs.min_val``, ``obs.histogram``, ...) as read-only attributes.

The qparams rule (torch's ``UniformQuantizationObserverBase._calculate_qparams``) is
:func:`calculate_qparams_from_min_max`, written once here; see its docstring for the
exact formulas and torch deviations (int32 zero points; never-observed handling).

Never observed: torch warns and returns ``scale=[1.0], zero_point=[0]``. jaxq's
jittable core returns 1.0 / 0 for every entry whose state is still the initial
``min=+inf, max=-inf`` (same shape as an observed result, so no recompilation), and
the eager module additionally emits torch's ``UserWarning``. ``min > max`` (only
reachable by loading a bad state): torch raises; the eager module raises
``ValueError``, the core under ``jit`` cannot raise and returns the formula's value.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.observer import MinMaxObserver
  >>> obs = MinMaxObserver()
  >>> _ = obs(jnp.array([-1.0, 2.0]))
  >>> scale, zero_point = obs.calculate_qparams()
  >>> scale.shape, zero_point.dtype
  ((1,), dtype('int32'))
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core.affine import exact_divide
from jaxq.core.dtypes import QuantDType, as_quant_dtype, quint8
from jaxq.core.qscheme import QScheme, as_qscheme, per_tensor_affine
from jaxq.core.ranges import observer_quant_range
from jaxq.observer.partial import _with_args, _with_callable_args

__all__ = [
    "FLOAT32_EPS",
    "ObserverState",
    "ObserverCore",
    "UniformQuantizationCore",
    "ObserverBase",
    "UniformQuantizationObserverBase",
    "calculate_qparams_from_min_max",
    "as_observed_input",
    "is_concrete",
]

FLOAT32_EPS: float = float(np.finfo(np.float32).eps)
"""torch's default observer ``eps``: ``torch.finfo(torch.float32).eps``."""

State = dict[str, jax.Array]

# torch's UniformQuantizationObserverBase._ALLOWED_DTYPES.
_UNIFORM_DTYPES = ("qint8", "quint8", "quint4x2", "qint32", "int8", "uint8", "int16",
                   "int32", "float8_e5m2", "float8_e4m3fn", "uint16")
_INT32_MIN = np.int32(np.iinfo(np.int32).min)


class ObserverState(nnx.Variable):
    """The ``nnx.Variable`` type of observer and fake-quantize statistics.

    Not an ``nnx.Param``: ``nnx.grad``/optax never touch it, and
    ``nnx.state(model, ObserverState)`` selects all of a model's statistics.
    The value is a dict of arrays keyed by torch's buffer names.
    """


def is_concrete(*values: Any) -> bool:
    """True when none of ``values`` is a tracer (eager code may inspect them)."""
    leaves = jax.tree_util.tree_leaves(values)
    return not any(isinstance(v, jax.core.Tracer) for v in leaves)


def as_observed_input(x: Any, argument: str = "x") -> jax.Array:
    """The float32 array an observer records (torch: ``x.detach().to(min_val.dtype)``).

    Raises:
      TypeError: ``x`` is not numeric (bool, complex, strings...).
    """
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{argument} must be a float or integer array; got {x.dtype}")
    return jax.lax.stop_gradient(x.astype(jnp.float32))


def _torch_float_to_int32(values: jax.Array) -> jax.Array:
    """``tensor.to(torch.int)`` as x86 torch does it: NaN and out-of-range -> INT32_MIN.

    XLA's conversion saturates instead; torch's value matters because observers
    subtract it from quant_min (with int32 wrap-around) before clamping.
    """
    in_range = (values >= -(2.0**31)) & (values < 2.0**31)
    safe = jnp.where(in_range, values, 0.0).astype(jnp.int32)
    return jnp.where(in_range, safe, _INT32_MIN)


def calculate_qparams_from_min_max(min_val: jax.Array, max_val: jax.Array, *,
                                   dtype: QuantDType, qscheme: QScheme, quant_min: int,
                                   quant_max: int, has_customized_qrange: bool,
                                   eps: float = FLOAT32_EPS
                                   ) -> tuple[jax.Array, jax.Array]:
    """torch's ``UniformQuantizationObserverBase._calculate_qparams``, pure and jittable.

    With ``min_neg = min(min_val, 0)`` and ``max_pos = max(max_val, 0)``:

    * symmetric (``per_tensor_symmetric``/``per_channel_symmetric``):
      ``scale = max(max(-min_neg, max_pos) / ((qmax - qmin) / 2), eps)``; zero point 0,
      except quint8/uint8 (128, or ``(qmin + qmax) // 2`` with a custom range) and
      uint16 (32768);
    * ``per_channel_affine_float_qparams``: ``scale = (max - min) / (qmax - qmin)``
      (no widening to 0), replaced by 1.0 where ``<= eps``; ``zero_point = -min / scale``
      as float32;
    * affine: ``scale = max((max_pos - min_neg) / (qmax - qmin), eps)``,
      ``zero_point = clamp(qmin - int(round_half_even(min_neg / scale)), qmin, qmax)``
      with torch's int32 arithmetic (NaN and out-of-range values convert to INT32_MIN
      as on x86, then wrap), so NaN/inf statistics give torch's zero points.

    Entries never observed (``min_val == +inf`` and ``max_val == -inf``) get scale 1.0
    and zero point 0, which is what torch returns for a never-observed observer. NaN
    statistics propagate into the scale as in torch.

    Args:
      min_val, max_val: float32 arrays of shape ``[]`` (per tensor) or ``[C]``.
      dtype, qscheme: resolved :class:`QuantDType` / :class:`QScheme`.
      quant_min, quant_max: the resolved integer range.
      has_customized_qrange: whether the user gave quant_min/quant_max (changes the
        quint8 symmetric zero point).
      eps: smallest scale (rounded to float32 like torch's ``eps`` buffer).

    Returns:
      ``(scale, zero_point)``: scale float32 ``[1]`` or ``[C]``; zero point int32 of the
      same shape (float32 for ``per_channel_affine_float_qparams``). torch returns
      int64 zero points for symmetric schemes; without x64 jaxq uses int32.
    """
    min_val = jnp.asarray(min_val, jnp.float32)
    max_val = jnp.asarray(max_val, jnp.float32)
    if min_val.shape != max_val.shape:
        raise ValueError(f"min_val {min_val.shape} and max_val {max_val.shape} must have "
                         "the same shape")
    if min_val.size == 0:
        # Lazily sized per-channel state that never saw data: torch's default values.
        zero = jnp.zeros((1,), jnp.float32 if qscheme is
                         QScheme.per_channel_affine_float_qparams else jnp.int32)
        return jnp.ones((1,), jnp.float32), zero
    if min_val.ndim == 0:
        min_val, max_val = min_val.reshape(1), max_val.reshape(1)
    never_observed = (min_val == jnp.inf) & (max_val == -jnp.inf)
    eps32 = jnp.float32(eps)
    min_neg = jnp.minimum(min_val, 0.0)
    max_pos = jnp.maximum(max_val, 0.0)
    if qscheme.is_symmetric:
        bound = jnp.maximum(-min_neg, max_pos)
        scale = jnp.maximum(exact_divide(bound, float(quant_max - quant_min) / 2), eps32)
        if dtype.name in ("quint8", "uint8"):
            mid = (quant_min + quant_max) // 2 if has_customized_qrange else 128
        elif dtype.name == "uint16":
            mid = 2**15
        else:
            mid = 0
        zero_point = jnp.full(scale.shape, mid, jnp.int32)
    elif qscheme is QScheme.per_channel_affine_float_qparams:
        scale = exact_divide(max_val - min_val, float(quant_max - quant_min))
        scale = jnp.where(scale > eps32, scale, jnp.float32(1.0))
        zero_point = -1.0 * min_val / scale
        return (jnp.where(never_observed, jnp.float32(1.0), scale),
                jnp.where(never_observed, jnp.float32(0.0), zero_point))
    else:
        scale = jnp.maximum(exact_divide(max_pos - min_neg, float(quant_max - quant_min)),
                            eps32)
        rounded = _torch_float_to_int32(jnp.round(min_neg / scale))
        # int32 wrap-around like torch's `quant_min - tensor.to(torch.int)`.
        zero_point = jnp.int32(quant_min) - rounded
        zero_point = jnp.clip(zero_point, np.int32(quant_min), np.int32(quant_max))
    scale = jnp.where(never_observed, jnp.float32(1.0), scale)
    zero_point = jnp.where(never_observed, jnp.int32(0), zero_point).astype(jnp.int32)
    return scale, zero_point


def _check_observed(min_val: Any, max_val: Any) -> None:
    """torch's ``check_min_max_valid`` for eager calls: warn if never observed, raise
    on ``min > max``. Does nothing on tracers."""
    if not is_concrete(min_val, max_val):
        return
    min_val, max_val = np.asarray(min_val), np.asarray(max_val)
    if min_val.size == 0 or max_val.size == 0 or (
            min_val.ndim == 0 and min_val == np.inf and max_val == -np.inf):
        warnings.warn("must run observer before calling calculate_qparams. Returning "
                      "default values.", UserWarning, stacklevel=3)
        return
    observed = ~((min_val == np.inf) & (max_val == -np.inf))
    if np.any((min_val > max_val) & observed):
        raise ValueError(f"min_val {min_val} must not exceed max_val {max_val} (the "
                         "observer state is inconsistent)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ObserverCore:
    """Static configuration and pure functions of an observer (base of all cores).

    Attributes:
      dtype: the quantized dtype the observer targets.
      is_dynamic: whether the observer stands for dynamic quantization.
    """

    dtype: QuantDType = quint8
    is_dynamic: bool = False

    def init(self) -> State:
        """The initial state: a dict of arrays (empty for stateless observers)."""
        return {}

    def update(self, state: State, x: jax.Array) -> State:
        """The state after observing ``x`` (stateless observers return it unchanged)."""
        del x
        return state

    def reset(self, state: State) -> State:
        """The state ``reset_min_max_vals`` restores.

        Raises:
          NotImplementedError: by default, as torch's base class does; min/max cores
            override it.
        """
        del state
        raise NotImplementedError(
            f"Cannot reset min/max values in the given observer ({type(self).__name__}).")

    def calculate_qparams(self, state: State) -> tuple[jax.Array, jax.Array]:
        """``(scale, zero_point)`` from ``state``."""
        raise NotImplementedError(
            f"calculate_qparams should not be called for {type(self).__name__}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class UniformQuantizationCore(ObserverCore):
    """Config shared by the min/max-based observers (torch's
    ``UniformQuantizationObserverBase``). Build it with :meth:`create`.

    Attributes:
      qscheme: the quantization scheme.
      reduce_range: whether the default range was halved.
      quant_min, quant_max: the resolved integer range.
      has_customized_qrange: whether quant_min/quant_max were given.
      eps: smallest scale.
    """

    qscheme: QScheme = per_tensor_affine
    reduce_range: bool = False
    quant_min: int = 0
    quant_max: int = 255
    has_customized_qrange: bool = False
    eps: float = FLOAT32_EPS

    @classmethod
    def create(cls, *, dtype: Any = quint8, qscheme: Any = per_tensor_affine,
               reduce_range: bool = False, quant_min: int | None = None,
               quant_max: int | None = None, eps: float = FLOAT32_EPS,
               is_dynamic: bool = False, **fields: Any) -> UniformQuantizationCore:
        """Validates torch's constructor arguments and resolves the range.

        ``fields`` are the subclass's extra dataclass fields (``ch_axis``, ``bins``...).

        Raises:
          TypeError: dtype not one of torch's observer dtypes, or not a qscheme.
          ValueError: custom range not containing 0, reversed or too wide for dtype.
        """
        qdtype = as_quant_dtype(dtype)
        if qdtype.name not in _UNIFORM_DTYPES:
            raise TypeError(f"dtype={qdtype!r} is not supported by {cls.__name__}; "
                            f"accepted: {', '.join(_UNIFORM_DTYPES)}")
        scheme = as_qscheme(qscheme)
        customized = quant_min is not None and quant_max is not None
        qmin, qmax = observer_quant_range(qdtype, quant_min, quant_max, reduce_range)
        eps = float(eps)
        if not eps > 0:
            raise ValueError(f"eps={eps} must be positive")
        return cls(dtype=qdtype, is_dynamic=bool(is_dynamic), qscheme=scheme,
                   reduce_range=bool(reduce_range), quant_min=int(qmin),
                   quant_max=int(qmax), has_customized_qrange=customized, eps=eps,
                   **fields)

    def _calculate_qparams(self, min_val: jax.Array, max_val: jax.Array
                           ) -> tuple[jax.Array, jax.Array]:
        """torch's ``_calculate_qparams``: :func:`calculate_qparams_from_min_max`."""
        return calculate_qparams_from_min_max(
            min_val, max_val, dtype=self.dtype, qscheme=self.qscheme,
            quant_min=self.quant_min, quant_max=self.quant_max,
            has_customized_qrange=self.has_customized_qrange, eps=self.eps)


class ObserverBase(nnx.Module):
    """torch's ``ObserverBase`` as an NNX module over a functional core.

    Attributes:
      core: the static :class:`ObserverCore`.
      state: an :class:`ObserverState` holding ``core.init()`` and its updates.

    The core's fields (``dtype``, ``is_dynamic``, ``qscheme``...) and the state's entries
    (``min_val``, ``max_val``...) read as attributes of the module.
    """

    with_args = classmethod(_with_args)
    with_callable_args = classmethod(_with_callable_args)

    def __init__(self, core: ObserverCore):
        if not isinstance(core, ObserverCore):
            raise TypeError(f"core must be an ObserverCore; got {type(core).__name__}")
        self.core = core
        self.state = ObserverState(core.init())

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: expose core fields and state entries.
        if not name.startswith("_"):
            core = self.__dict__.get("core")
            if core is not None and name in {f.name for f in dataclasses.fields(core)}:
                return getattr(core, name)
            state = self.__dict__.get("state")
            if state is not None:
                value = state.get_value()
                if isinstance(value, dict) and name in value:
                    return value[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __call__(self, x: jax.Array) -> jax.Array:
        """Records statistics of ``x`` and returns ``x`` unchanged."""
        self.state.set_value(self.core.update(self.state.get_value(), x))
        return x

    forward = __call__

    def calculate_qparams(self) -> tuple[jax.Array, jax.Array]:
        """``(scale, zero_point)`` from the statistics observed so far."""
        return self.core.calculate_qparams(self.state.get_value())

    def reset_min_max_vals(self) -> None:
        """Resets the statistics (torch raises for observers that cannot reset)."""
        self.state.set_value(self.core.reset(self.state.get_value()))


class UniformQuantizationObserverBase(ObserverBase):
    """torch's ``UniformQuantizationObserverBase``: min/max-based observers.

    Subclasses pass a :class:`UniformQuantizationCore` to ``__init__``.
    :meth:`calculate_qparams` adds torch's eager checks (warning when never observed,
    ``ValueError`` when ``min_val > max_val``) around the core whenever the state is
    concrete; under ``jit`` only the core runs.
    """

    core: UniformQuantizationCore

    def __init__(self, core: UniformQuantizationCore):
        if not isinstance(core, UniformQuantizationCore):
            raise TypeError("core must be a UniformQuantizationCore; got "
                            f"{type(core).__name__}")
        super().__init__(core)

    def _calculate_qparams(self, min_val: jax.Array, max_val: jax.Array
                           ) -> tuple[jax.Array, jax.Array]:
        """torch's ``_calculate_qparams`` with its eager checks."""
        _check_observed(min_val, max_val)
        return self.core._calculate_qparams(min_val, max_val)

    def calculate_qparams(self) -> tuple[jax.Array, jax.Array]:
        state = self.state.get_value()
        if "min_val" in state and "max_val" in state:
            _check_observed(state["min_val"], state["max_val"])
        return self.core.calculate_qparams(state)
