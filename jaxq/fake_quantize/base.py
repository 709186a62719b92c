"""FakeQuantizeBase and the enable/disable helpers.

A fake-quantize module keeps its flags (``fake_quant_enabled``, ``observer_enabled``,
torch's ``uint8`` buffers of shape ``[1]``) and its current ``scale``/``zero_point``
in one :class:`~jaxq.observer.ObserverState` variable, ``self.state``. Because the
flags are state, not Python attributes, toggling them does not recompile an
``nnx.jit``-compiled training step: traced flags select their branch with
``lax.cond``; concrete (eager) flags use plain Python branches like torch.

``enable_fake_quant(model)`` and friends accept one module or a whole NNX tree
(torch applies them with ``model.apply(fn)``; here the tree walk is built in).

Example:
  >>> from flax import nnx
  >>> from jaxq.fake_quantize import FakeQuantize, disable_observer
  >>> fq = FakeQuantize()
  >>> disable_observer(fq)
  >>> int(fq.observer_enabled[0])
  0
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.observer.base import ObserverState, is_concrete
from jaxq.observer.partial import _with_args, _with_callable_args

__all__ = ["FakeQuantizeBase", "enable_fake_quant", "disable_fake_quant",
           "enable_observer", "disable_observer", "branch"]


def branch(flag: jax.Array, on: Callable[[Any], Any], off: Callable[[Any], Any],
           operand: Any, what: str = "flag") -> Any:
    """``on(operand)`` if ``flag[0] == 1`` else ``off(operand)``.

    A concrete flag takes a Python branch (eager, like torch); a traced one uses
    ``lax.cond``, so the compiled step serves both values of the flag.

    Raises:
      ValueError: under tracing, when the two branches give different shapes (an
        observer state that is not sized yet; size it ahead of time).
    """
    if is_concrete(flag):
        return on(operand) if int(np.asarray(flag).reshape(-1)[0]) == 1 else off(operand)
    on_shape = jax.eval_shape(on, operand)
    off_shape = jax.eval_shape(off, operand)
    if jax.tree_util.tree_structure(on_shape) != jax.tree_util.tree_structure(off_shape) \
            or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(
                jax.tree_util.tree_leaves(on_shape), jax.tree_util.tree_leaves(off_shape))):
        raise ValueError(
            f"{what} is traced but the enabled and disabled branches give different "
            "shapes (a per-channel observer that is not sized yet?). Size the observer "
            "ahead of time (num_channels=...) or run the module once eagerly")
    return jax.lax.cond(jnp.asarray(flag).reshape(-1)[0] == 1, on, off, operand)


class FakeQuantizeBase(nnx.Module):
    """torch's ``FakeQuantizeBase``: the two flags and their toggles.

    Attributes:
      state: :class:`ObserverState` with ``fake_quant_enabled`` and
        ``observer_enabled`` (``[1]`` arrays of ``flag_dtype``; torch uses uint8, and
        int64 for the fused module, which jaxq stores as int32).

    State entries read as attributes (``fq.fake_quant_enabled``, ``fq.scale``...).
    """

    with_args = classmethod(_with_args)
    with_callable_args = classmethod(_with_callable_args)

    def __init__(self, flag_dtype: Any = jnp.uint8):
        self.state = ObserverState({
            "fake_quant_enabled": jnp.ones((1,), flag_dtype),
            "observer_enabled": jnp.ones((1,), flag_dtype)})

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_"):
            state = self.__dict__.get("state")
            if state is not None:
                value = state.get_value()
                if isinstance(value, dict) and name in value:
                    return value[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _set_state(self, **entries: Any) -> None:
        value = dict(self.state.get_value())
        value.update({name: jnp.asarray(new) for name, new in entries.items()})
        self.state.set_value(value)

    def _set_flag(self, name: str, enabled: Any) -> None:
        # Works with a Python bool and with a traced bool (inside nnx.jit).
        current = self.state.get_value()[name]
        self._set_state(**{name: jnp.where(jnp.asarray(enabled, bool), 1, 0).astype(
            current.dtype).reshape(current.shape)})

    def enable_fake_quant(self, enabled: bool = True) -> None:
        self._set_flag("fake_quant_enabled", enabled)

    def disable_fake_quant(self) -> None:
        self.enable_fake_quant(False)

    def enable_observer(self, enabled: bool = True) -> None:
        self._set_flag("observer_enabled", enabled)

    def disable_observer(self) -> None:
        self.enable_observer(False)

    def calculate_qparams(self) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError(f"{type(self).__name__} must implement calculate_qparams")


def _fake_quant_modules(model: Any):
    if isinstance(model, FakeQuantizeBase):
        yield model
        return
    if isinstance(model, nnx.Module):
        for _, module in nnx.iter_modules(model):
            if isinstance(module, FakeQuantizeBase):
                yield module


def disable_fake_quant(mod: Any) -> None:
    """Disables fake quantization of ``mod`` or of every fake-quant module in it."""
    for module in _fake_quant_modules(mod):
        module.disable_fake_quant()


def enable_fake_quant(mod: Any) -> None:
    """Enables fake quantization of ``mod`` or of every fake-quant module in it."""
    for module in _fake_quant_modules(mod):
        module.enable_fake_quant()


def disable_observer(mod: Any) -> None:
    """Disables observation in ``mod`` or in every fake-quant module in it."""
    for module in _fake_quant_modules(mod):
        module.disable_observer()


def enable_observer(mod: Any) -> None:
    """Enables observation in ``mod`` or in every fake-quant module in it."""
    for module in _fake_quant_modules(mod):
        module.enable_observer()
