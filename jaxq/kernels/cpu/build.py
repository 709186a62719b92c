"""Compiles the native CPU kernels (``kernels/cpu/*.cc``) into a cached shared library.

The library is built on first use, not at install time: it must be compiled against the
XLA FFI headers of the jaxlib that will load it (``jax.ffi.include_dir()``), which is the
one installed next to jaxq, not one a build-isolated ``pip install`` would fetch. The
result is cached under ``$JAXQ_CACHE_DIR`` (default ``~/.cache/jaxq``) in a directory
named by a hash of the sources, flags, compiler and FFI headers, so a build happens once
per machine and configuration, deterministically, and concurrent processes wait on a
file lock instead of racing. ``python -m jaxq.kernels.cpu.build`` builds it ahead of time.

Each instruction set lives in its own translation unit compiled with its own ``-m`` flags
(``kernels_avx512.cc``: AVX512-VNNI; ``kernels_avx2.cc``: AVX2 + FMA); the dispatcher
(``jaxq_cpu.cc``) is compiled for baseline x86-64 and picks one at run time from
``__builtin_cpu_supports``, so the library runs on any x86-64 CPU (and refuses, rather
than crashes, on one with neither). All units use ``-ffp-contract=off``: the float
epilogues must round exactly where the reference does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["BuildError", "SOURCE_DIR", "build", "library_path"]

# A source checkout (editable install) reads kernels/cpu/ at the repository root; a wheel
# carries a copy of those files in jaxq/kernels/cpu/csrc/ (setup.py puts it there).
CHECKOUT_SOURCE_DIR = Path(__file__).resolve().parents[3] / "kernels" / "cpu"
PACKAGED_SOURCE_DIR = Path(__file__).resolve().parent / "csrc"
SOURCE_DIR = next((d for d in (CHECKOUT_SOURCE_DIR, PACKAGED_SOURCE_DIR)
                   if (d / "jaxq_cpu.cc").is_file()), CHECKOUT_SOURCE_DIR)
LIBRARY_NAME = "libjaxq_cpu.so"

_COMMON = ["-std=c++17", "-fPIC", "-ffp-contract=off", "-fno-math-errno",
           "-fvisibility=hidden", "-Wall", "-Wno-unused-function"]
_UNITS = {
    "jaxq_cpu.cc": [],
    "kernels_avx2.cc": ["-mavx2", "-mfma"],
    "kernels_avx512.cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
                          "-mavx512vnni", "-mfma"],
}
VARIANTS = {
    "release": ["-O3"],
    # Bounds-checked build for the tests: AddressSanitizer + UBSan (load it with libasan
    # preloaded), libstdc++ assertions.
    "asan": ["-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined", "-D_GLIBCXX_ASSERTIONS"],
}


class BuildError(RuntimeError):
    """The native library could not be built (no compiler, missing headers, ...)."""


def _compiler() -> str:
    candidates = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    for name in candidates:
        if name and shutil.which(name):
            return shutil.which(name)
    raise BuildError("no C++ compiler found (set CXX or install g++)")


def _include_dir() -> str:
    import jax.ffi
    path = jax.ffi.include_dir()
    if not (Path(path) / "xla" / "ffi" / "api" / "ffi.h").exists():
        raise BuildError(f"XLA FFI headers not found under {path}")
    return path


def _sources() -> list[Path]:
    if not (SOURCE_DIR / "jaxq_cpu.cc").is_file():
        raise BuildError(f"kernel sources not found in {CHECKOUT_SOURCE_DIR} or "
                         f"{PACKAGED_SOURCE_DIR} (install jaxq from a source checkout or a "
                         "wheel built by its setup.py)")
    return sorted(p for p in SOURCE_DIR.iterdir() if p.suffix in (".cc", ".h"))


def _key(compiler: str, include: str, variant: str) -> str:
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(repr((_COMMON, _UNITS, VARIANTS[variant])).encode())
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             check=False).stdout
    digest.update(version.encode())
    digest.update((Path(include) / "xla" / "ffi" / "api" / "c_api.h").read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("JAXQ_CACHE_DIR") or Path.home() / ".cache" / "jaxq")


def library_path(variant: str = "release") -> Path:
    """Where the library for this configuration lives (built or not)."""
    compiler, include = _compiler(), _include_dir()
    return cache_root() / f"cpu-{variant}-{_key(compiler, include, variant)}" / LIBRARY_NAME


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise BuildError(f"{' '.join(cmd[:2])} ... failed:\n{result.stderr[-4000:]}")


def build(variant: str = "release", force: bool = False) -> Path:
    """Builds (or finds in the cache) the library; returns its path.

    Raises:
      BuildError: no compiler, no sources or headers, or a compile error.
      ValueError: unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} must be one of {sorted(VARIANTS)}")
    target = library_path(variant)
    if target.exists() and not force:
        return target
    compiler, include = _compiler(), _include_dir()
    with _locked(target.parent.with_suffix(".lock")):
        if target.exists() and not force:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            objects = []
            for unit, flags in _UNITS.items():
                obj = Path(tmp) / (unit + ".o")
                _run([compiler, *_COMMON, *VARIANTS[variant], *flags, "-I", include,
                      "-I", str(SOURCE_DIR), "-c", str(SOURCE_DIR / unit), "-o", str(obj)])
                objects.append(str(obj))
            staged = Path(tmp) / LIBRARY_NAME
            _run([compiler, "-shared", *VARIANTS[variant], *objects, "-o", str(staged),
                  "-lpthread"])
            os.replace(staged, target)
    return target


if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "release"
    print(build(chosen, force="--force" in sys.argv))
