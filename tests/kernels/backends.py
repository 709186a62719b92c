"""The quantized-matmul backends the kernel tests run against (those usable here)."""

from __future__ import annotations

import pytest


def native_available() -> bool:
    try:
        from jaxq.kernels import cpu
    except ImportError:
        return False
    return cpu.available()


def cpu_backends() -> list:
    """``"xla"`` always; ``"cpu_native"`` when it is built and this CPU runs it."""
    native = pytest.param(
        "cpu_native", marks=pytest.mark.skipif(not native_available(),
                                               reason="native CPU kernel unavailable"))
    return ["xla", native]
