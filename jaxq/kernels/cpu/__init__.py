"""Native CPU backend (``"cpu_native"``): AVX512-VNNI / AVX2 int8 kernels via XLA's FFI.

Importing this package registers the backend and its weight layouts; nothing is compiled
until the backend is first asked whether it is available (the first quantized matmul or
``pack_weight`` on a CPU). See :mod:`jaxq.kernels.cpu.build` for how and where the
library is built, and ``kernels/cpu/`` for the sources.

Functions:
  available(): whether the kernels run here (builds them on first call).
  unavailable_reason(): why not, or None.
  isa(): ``"avx512_vnni"``, ``"avx2"`` or ``"none"`` (the path in use).
  force_isa(name): use a lower ISA than detected (tests of the AVX2 path), or None to
    restore the detected one.
  num_threads() / set_num_threads(n): the most threads one kernel call uses (the calling
    thread plus helpers; capped by the size of XLA's intra-op thread pool).
    ``JAXQ_NUM_THREADS`` sets it at startup; default: the CPUs this process may use.

The helpers are jaxq's own workers: after a call each polls for the next one for
``JAXQ_SPIN_US`` microseconds (default 300, yielding the core to any other runnable
thread as it polls), then sleeps, so back-to-back calls find them awake. ``JAXQ_SPIN_US=0``
puts them to sleep at once (each call then wakes them: tens of microseconds). While one
call holds the workers, a concurrent call uses XLA's intra-op pool instead.

Packed int8 weights with at least one 2 MiB-aligned 2 MiB stretch are moved to huge pages
the first time the int8 GEMM reads them (``MADV_HUGEPAGE`` + ``MADV_COLLAPSE``; the bytes do
not change): the hardware prefetchers stop at every 4 KiB page boundary, which costs the
matrix-vector products that stream a large weight from L3. ``JAXQ_HUGE_PAGES=0`` turns it
off; on kernels or settings that refuse, nothing happens.
"""

from __future__ import annotations

from jaxq.kernels import registry, weights
from jaxq.kernels.cpu import native
from jaxq.kernels.cpu.backend import (
    LAYOUTS, available, conv2d, default_layout, matmul, supports, supports_conv2d)

__all__ = ["BACKEND_NAME", "available", "force_isa", "isa", "num_threads",
           "set_num_threads", "unavailable_reason"]

BACKEND_NAME = "cpu_native"

for _layout in LAYOUTS:
    weights.register_weight_layout(_layout)
weights.add_default_layout_hook(default_layout)
registry.register_backend(registry.Backend(
    name=BACKEND_NAME, platform="cpu", matmul=matmul, supports=supports,
    available=available, priority=10, conv2d=conv2d, supports_conv2d=supports_conv2d))


def unavailable_reason() -> str | None:
    return native.unavailable_reason()


def _lib():
    lib = native.load()
    if lib is None:
        raise RuntimeError(f"the native CPU backend is unavailable: {unavailable_reason()}")
    return lib


def isa() -> str:
    lib = native.load()
    return "none" if lib is None else native.ISA_NAMES[lib.jaxq_cpu_isa()]


def force_isa(name: str | None) -> str:
    """Selects the kernels' instruction set (None: the detected one); returns it."""
    codes = {None: -1, "avx2": 1, "avx512_vnni": 2}
    if name not in codes:
        raise ValueError(f"name={name!r} must be None, 'avx2' or 'avx512_vnni'")
    return native.ISA_NAMES[_lib().jaxq_cpu_set_isa(codes[name])]


def num_threads() -> int:
    return _lib().jaxq_cpu_num_threads()


def set_num_threads(threads: int) -> int:
    """Sets the most threads one kernel call uses; returns it."""
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be a positive int")
    return _lib().jaxq_cpu_set_num_threads(threads)
