"""Backend registry and dispatch for the quantized matmul / conv entry points.

A backend registers itself once, at import, with :func:`register_backend`: the platform
it lowers for (a JAX platform name: ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``), a
static predicate on the problem, and the functions that run it. At trace time the entry
point keeps, per platform, the highest-priority backend that is available and accepts the
problem, and wraps the candidates in ``jax.lax.platform_dependent``: the choice is made
when the computation is lowered for its device, and the XLA reference
(:mod:`jaxq.kernels.xla`) is the default everywhere else. Nothing is decided from
values, so a second call with the same shapes never recompiles.

Example (a toy backend that just calls the reference):
  >>> from jaxq.kernels import registry, xla
  >>> registry.register_backend(registry.Backend(
  ...     name="toy", platform="cpu", matmul=xla.xla_matmul,
  ...     supports=lambda problem: problem.m > 4096, priority=-1))
  >>> registry.unregister_backend("toy")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["Backend", "register_backend", "unregister_backend", "registered_backends",
           "select_backends", "dispatch"]


def _always(problem) -> bool:
    return True


def _yes() -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Backend:
    """A quantized-matmul (and optionally conv) implementation.

    Attributes:
      name: unique name (``backend=`` argument of the entry points).
      platform: the JAX platform it runs on.
      matmul: ``matmul(problem: MatmulProblem, args: MatmulArgs) -> (m, n) array``;
        traceable. Must match :func:`jaxq.kernels.xla.xla_matmul` exactly (int paths) or
        to float rounding (weight-only).
      supports: static predicate on a :class:`~jaxq.kernels.problem.MatmulProblem`.
      available: whether it can run in this process (library built, CPU features...).
      priority: higher wins among the backends of one platform.
      conv2d: optional ``conv2d(problem: Conv2dProblem, args: Conv2dArgs) -> NHWC``.
      supports_conv2d: static predicate on a :class:`~jaxq.kernels.conv.Conv2dProblem`.
    """

    name: str
    platform: str
    matmul: Callable[..., jax.Array] | None = None
    supports: Callable[[Any], bool] = _always
    available: Callable[[], bool] = _yes
    priority: int = 0
    conv2d: Callable[..., jax.Array] | None = None
    supports_conv2d: Callable[[Any], bool] = _always


_BACKENDS: dict[str, Backend] = {}
REFERENCE = "xla"


def register_backend(backend: Backend) -> None:
    """Adds or replaces ``backend`` (by name). ``"xla"`` is reserved for the reference."""
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a Backend; got {type(backend).__name__}")
    if backend.name == REFERENCE:
        raise ValueError(f"backend name {REFERENCE!r} is reserved for the XLA reference")
    _BACKENDS[backend.name] = backend


def unregister_backend(name: str) -> None:
    """Removes a backend; unknown names raise ValueError."""
    if name not in _BACKENDS:
        raise ValueError(f"no backend named {name!r}; registered: {sorted(_BACKENDS)}")
    del _BACKENDS[name]


def registered_backends() -> dict[str, Backend]:
    """All registered backends (available or not), by name."""
    return dict(_BACKENDS)


def _accepts(backend: Backend, kind: str, problem) -> bool:
    if kind == "matmul":
        return backend.matmul is not None and bool(backend.supports(problem))
    return backend.conv2d is not None and bool(backend.supports_conv2d(problem))


def select_backends(kind: str, problem) -> dict[str, Backend]:
    """Per platform, the best available backend that accepts ``problem``."""
    chosen: dict[str, Backend] = {}
    for backend in _BACKENDS.values():
        if not backend.available() or not _accepts(backend, kind, problem):
            continue
        best = chosen.get(backend.platform)
        if best is None or backend.priority > best.priority:
            chosen[backend.platform] = backend
    return chosen


def dispatch(kind: str, problem, args, reference: Callable, backend: str | None = None):
    """Runs ``problem`` on the chosen backend(s); see the module docstring.

    Args:
      kind: ``"matmul"`` or ``"conv2d"``.
      problem: the static problem (hashable).
      args: a pytree of arrays (the backend's second argument).
      reference: the XLA implementation, ``reference(problem, args)``.
      backend: None (automatic), ``"xla"``, or a registered name (forced; ValueError if it
        is unavailable or does not support the problem).
    """
    if backend == REFERENCE:
        return reference(problem, args)
    if backend is not None:
        if backend not in _BACKENDS:
            raise ValueError(f"backend={backend!r} is not registered; choose from "
                             f"{[REFERENCE] + sorted(_BACKENDS)}")
        chosen = _BACKENDS[backend]
        if not chosen.available():
            raise ValueError(f"backend={backend!r} is not available in this process")
        if not _accepts(chosen, kind, problem):
            raise ValueError(f"backend={backend!r} does not support this {kind}: {problem}")
        return getattr(chosen, kind)(problem, args)
    per_platform = select_backends(kind, problem)
    if not per_platform:
        return reference(problem, args)
    leaves, treedef = jax.tree_util.tree_flatten(args)

    def branch(fn):
        return lambda *flat: fn(problem, jax.tree_util.tree_unflatten(treedef, flat))

    branches = {platform: branch(getattr(b, kind)) for platform, b in per_platform.items()}
    return jax.lax.platform_dependent(*leaves, default=branch(reference), **branches)
