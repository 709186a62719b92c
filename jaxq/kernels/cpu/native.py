"""Loads the native CPU library once and registers its XLA FFI targets.

``load()`` returns the ctypes handle, or None (after one warning line) when the library
cannot be used here: no compiler, a build error, a CPU with neither AVX512-VNNI nor AVX2,
or ``JAXQ_DISABLE_NATIVE=1``. ``JAXQ_NATIVE_VARIANT=asan`` loads the bounds-checked
build instead (the process must run with libasan preloaded).
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings

__all__ = ["FFI_QCONV2D", "FFI_QGEMM", "FFI_WEIGHT_ONLY", "ISA_NAMES", "load", "unavailable_reason"]

FFI_QGEMM = "jaxq_qgemm"
FFI_WEIGHT_ONLY = "jaxq_weight_only"
FFI_QCONV2D = "jaxq_qconv2d"
ISA_NAMES = {0: "none", 1: "avx2", 2: "avx512_vnni"}

_lock = threading.Lock()
_state: dict = {}


def _warn(reason: str) -> None:
    warnings.warn(f"jaxq: native CPU int8 kernels unavailable ({reason}); quantized "
                  "matmuls use the XLA path", RuntimeWarning, stacklevel=3)


def _load() -> ctypes.CDLL | None:
    if os.environ.get("JAXQ_DISABLE_NATIVE", "") not in ("", "0"):
        _state["reason"] = "disabled by JAXQ_DISABLE_NATIVE"
        return None
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        _state["reason"] = f"{platform.machine()} is not x86-64"
        _warn(_state["reason"])
        return None
    from jaxq.kernels.cpu import build
    variant = os.environ.get("JAXQ_NATIVE_VARIANT", "release")
    try:
        path = build.library_path(variant)
        if not path.exists():
            warnings.warn(f"jaxq: compiling the native CPU kernels into {path.parent} "
                          "(once per machine)", RuntimeWarning, stacklevel=3)
        path = build.build(variant)
        lib = ctypes.CDLL(str(path))
    except (build.BuildError, OSError) as error:
        _state["reason"] = f"build failed: {str(error).splitlines()[0]}"
        _warn(_state["reason"])
        return None
    lib.jaxq_cpu_detected_isa.restype = ctypes.c_int
    lib.jaxq_cpu_isa.restype = ctypes.c_int
    lib.jaxq_cpu_set_isa.restype = ctypes.c_int
    lib.jaxq_cpu_set_isa.argtypes = [ctypes.c_int]
    lib.jaxq_cpu_num_threads.restype = ctypes.c_int
    lib.jaxq_cpu_set_num_threads.restype = ctypes.c_int
    lib.jaxq_cpu_set_num_threads.argtypes = [ctypes.c_int]
    lib.jaxq_cpu_pool_selftest.restype = ctypes.c_int
    lib.jaxq_cpu_pool_selftest.argtypes = [ctypes.c_int, ctypes.c_int,
                                           ctypes.POINTER(ctypes.c_int)]
    if lib.jaxq_cpu_detected_isa() == 0:
        _state["reason"] = "this CPU has neither AVX512-VNNI nor AVX2+FMA"
        _warn(_state["reason"])
        return None
    import jax.ffi
    jax.ffi.register_ffi_target(FFI_QGEMM, jax.ffi.pycapsule(lib.JaxqQGemm), platform="cpu")
    jax.ffi.register_ffi_target(FFI_WEIGHT_ONLY, jax.ffi.pycapsule(lib.JaxqWeightOnly),
                                platform="cpu")
    jax.ffi.register_ffi_target(FFI_QCONV2D, jax.ffi.pycapsule(lib.JaxqQConv2d), platform="cpu")
    return lib


def load() -> ctypes.CDLL | None:
    """The loaded library (built on first call), or None when unusable here."""
    with _lock:
        if "lib" not in _state:
            _state["lib"] = _load()
        return _state["lib"]


def unavailable_reason() -> str | None:
    """Why :func:`load` returned None (None when it did not)."""
    load()
    return _state.get("reason") if _state.get("lib") is None else None
