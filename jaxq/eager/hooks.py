"""torch's observer forward hooks on NNX modules: the ``Observed<Cls>`` subclasses.

NNX modules have no forward hooks. ``prepare`` gives a module an
``activation_post_process`` child (an observer or fake-quantize built from
``qconfig.activation()``) and swaps the module's class for ``Observed<Cls>``, a
subclass of its own class whose ``__call__`` is::

    return self.activation_post_process(super().__call__(*args, **kwargs))

(torch's ``_observer_forward_hook``), or, for qconfigs whose activation observer is
memoryless (torch's ``_observer_forward_pre_hook``), observes the first input instead.
One subclass per (base class, hook kind), created once and cached: the class is part of
an NNX graphdef, so every prepared model of the same structure has the same graphdef and
``nnx.jit`` compiles once. ``convert`` (or :func:`remove_activation_post_process`)
restores the base class.

The subclass's name is ``"Observed" + base.__name__`` with the base as its only base
class; ``jaxq.nn`` modules' ``from_float`` look through it by that rule.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.observer import MinMaxObserver
  >>> linear = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> add_activation_post_process(linear, MinMaxObserver())
  >>> type(linear).__name__, type_before_observation(linear) is nnx.Linear
  ('ObservedLinear', True)
  >>> _ = linear(jnp.ones((1, 2)))
  >>> bool(linear.activation_post_process.min_val <= linear.activation_post_process.max_val)
  True
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxq.fake_quantize.base import FakeQuantizeBase
from jaxq.observer.base import ObserverBase

__all__ = ["observed_class", "is_observed", "type_before_observation",
           "is_activation_post_process", "add_activation_post_process",
           "remove_activation_post_process", "observes_input"]

_OBSERVED_CLASSES: dict[tuple[type, bool], type] = {}


def is_activation_post_process(module: Any) -> bool:
    """Whether ``module`` is an observer or fake-quantize module (torch's
    ``_is_activation_post_process``)."""
    return isinstance(module, (ObserverBase, FakeQuantizeBase))


def _observed_base(cls: type) -> type | None:
    return cls.__dict__.get("_jaxq_observed_base")


def type_before_observation(module: Any) -> type:
    """``type(module)`` with the ``Observed<Cls>`` subclass looked through (torch's
    ``type_before_parametrizations`` plays this role for its hooks-free types).

    Example:
      >>> from flax import nnx
      >>> type_before_observation(nnx.Linear(1, 1, rngs=nnx.Rngs(0))) is nnx.Linear
      True
    """
    cls = type(module)
    base = _observed_base(cls)
    return cls if base is None else base


def is_observed(module: Any) -> bool:
    """Whether ``module``'s class is an ``Observed<Cls>`` subclass."""
    return _observed_base(type(module)) is not None


def observes_input(module: Any) -> bool:
    """Whether an observed module observes its input (pre-hook) rather than its output."""
    return bool(type(module).__dict__.get("_jaxq_observes_input", False))


def observed_class(cls: type, pre_hook: bool = False) -> type:
    """The cached ``Observed<cls>`` subclass.

    Args:
      cls: an ``nnx.Module`` subclass (not itself an observed class).
      pre_hook: observe the first positional input instead of the output.

    Raises:
      TypeError: ``cls`` is not an ``nnx.Module`` subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, nnx.Module)):
        raise TypeError(f"cls={cls!r} must be an nnx.Module subclass")
    base = _observed_base(cls)
    if base is not None:
        cls = base
    key = (cls, bool(pre_hook))
    observed = _OBSERVED_CLASSES.get(key)
    if observed is not None:
        return observed

    if pre_hook:
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if not args:
                raise TypeError(f"{type(self).__name__} observes its first positional "
                                "input, but was called without one")
            args = (self.activation_post_process(args[0]),) + args[1:]
            return super(observed, self).__call__(*args, **kwargs)
    else:
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self.activation_post_process(
                super(observed, self).__call__(*args, **kwargs))

    __call__.__doc__ = (f"``{cls.__name__}.__call__`` with the "
                        f"{'input' if pre_hook else 'output'} passed through "
                        "``self.activation_post_process``.")
    observed = type(f"Observed{cls.__name__}", (cls,), {
        "__call__": __call__,
        "__module__": cls.__module__,
        "__qualname__": f"Observed{cls.__qualname__}",
        "__doc__": f"{cls.__name__} with torch's observer forward "
                   f"{'pre-hook' if pre_hook else 'hook'} (created by jaxq.eager.prepare).",
        "_jaxq_observed_base": cls,
        "_jaxq_observes_input": bool(pre_hook),
    })
    _OBSERVED_CLASSES[key] = observed
    return observed


def add_activation_post_process(module: nnx.Module, activation_post_process: nnx.Module,
                                pre_hook: bool = False) -> None:
    """Attaches ``activation_post_process`` and makes ``module`` call it (in place).

    torch's ``add_module("activation_post_process", ...)`` plus
    ``_register_activation_post_process_hook``. A module that is already observed gets
    the new observer (torch would stack a second hook; jaxq keeps one).

    Raises:
      TypeError: ``module`` is not an ``nnx.Module`` or the observer is not a module.
    """
    if not isinstance(module, nnx.Module):
        raise TypeError(f"module must be an nnx.Module; got {type(module).__name__}")
    if not isinstance(activation_post_process, nnx.Module):
        raise TypeError("activation_post_process must be an observer / fake-quantize "
                        f"module; got {type(activation_post_process).__name__}")
    module.activation_post_process = activation_post_process
    module.__class__ = observed_class(type(module), pre_hook)


def remove_activation_post_process(module: nnx.Module) -> None:
    """Removes the observer attached by :func:`add_activation_post_process` and restores
    the base class (torch's ``_remove_activation_post_process``). Other modules are left
    as they are."""
    if hasattr(module, "activation_post_process") and is_activation_post_process(
            module.activation_post_process):
        del module.activation_post_process
    base = _observed_base(type(module))
    if base is not None:
        module.__class__ = base
