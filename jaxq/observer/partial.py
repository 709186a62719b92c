"""Class factories with bound constructor arguments: torch's ``_PartialWrapper``.

``Observer.with_args(**kwargs)`` returns a factory; calling it builds a fresh observer
with those arguments. ``with_callable_args(name=fn)`` binds arguments whose value is
computed by calling ``fn()`` at every construction. Both chain, later keywords win,
and keywords given at call time override everything, exactly as in
``torch.ao.quantization.observer``.

Example:
  >>> from jaxq.observer import MinMaxObserver
  >>> import jaxq
  >>> factory = MinMaxObserver.with_args(dtype=jaxq.qint8).with_args(reduce_range=True)
  >>> obs = factory()
  >>> obs.quant_min, obs.quant_max
  (-64, 63)
  >>> factory() is factory()
  False
"""

from __future__ import annotations

import functools
from typing import Any, Callable


class _PartialWrapper:
    """A constructor with bound keyword arguments (torch's ``_PartialWrapper``).

    Attributes:
      p: the ``functools.partial`` holding the class and its bound keywords (nested
        partials flatten, as ``functools.partial`` does).
      callable_args: keyword -> zero-argument callable evaluated at each construction.
    """

    def __init__(self, p: functools.partial):
        self.p = p
        self.callable_args: dict[str, Callable[[], Any]] = {}

    def __call__(self, *args: Any, **keywords: Any) -> Any:
        # Call-time keywords override callable args, as in torch.
        for name, factory in self.callable_args.items():
            if name not in keywords:
                keywords = {**keywords, name: factory()}
        return self.p(*args, **keywords)

    def __repr__(self) -> str:
        return self.p.__repr__() + self.callable_args.__repr__()

    def with_args(self, **kwargs: Any) -> _PartialWrapper:
        """A new factory with ``kwargs`` bound on top of this one's."""
        return _with_args(self, **kwargs)

    def with_callable_args(self, **kwargs: Callable[[], Any]) -> _PartialWrapper:
        """A new factory that also evaluates ``kwargs[name]()`` at each construction."""
        result = _PartialWrapper(p=self.p)
        result.callable_args = {**self.callable_args, **kwargs}
        return result


def _with_args(cls_or_self: Any, **kwargs: Any) -> _PartialWrapper:
    """Wraps ``cls_or_self`` into a factory with ``kwargs`` bound (torch's ``_with_args``).

    Chaining on a factory nests partials as torch does: the outer ``p`` calls the inner
    factory, which still evaluates its callable args.
    """
    return _PartialWrapper(functools.partial(cls_or_self, **kwargs))


def _with_callable_args(cls_or_self: Any, **kwargs: Callable[[], Any]) -> _PartialWrapper:
    """A factory that evaluates each ``kwargs[name]()`` at construction time."""
    return _PartialWrapper(functools.partial(cls_or_self)).with_callable_args(**kwargs)
