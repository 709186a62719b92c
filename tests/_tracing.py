"""``counting_jit``: ``jax.jit`` that counts how often its function is traced.

Tests of "a second call with the same shapes does not recompile" count traces instead of
reading ``jitted._cache_size()``: the C++ dispatch cache was seen empty after two calls in
full parallel runs (never alone), while a recompile always means a new trace.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax


class CountingJit:
    """``jax.jit(fn, **jit_kwargs)``; ``traces`` is how many times ``fn`` was traced."""

    def __init__(self, fn: Callable, **jit_kwargs: Any):
        self.traces = 0

        @functools.wraps(fn)
        def traced(*args, **kwargs):
            self.traces += 1
            return fn(*args, **kwargs)

        self._jitted = jax.jit(traced, **jit_kwargs)

    def __call__(self, *args, **kwargs):
        return self._jitted(*args, **kwargs)


def counting_jit(fn: Callable, **jit_kwargs: Any) -> CountingJit:
    """See :class:`CountingJit`."""
    return CountingJit(fn, **jit_kwargs)
