"""Build hook: ship the native kernels' C++ sources inside the package.

The sources live in ``kernels/cpu/`` at the repository root; the library is compiled on
first use against the jaxlib installed next to jaxq (``jaxq/kernels/cpu/build.py``), so an
installed jaxq needs the sources, not a binary. An editable install reads them from the
checkout; a wheel carries a copy in ``jaxq/kernels/cpu/csrc/``, made here.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

KERNEL_SOURCES = Path(__file__).resolve().parent / "kernels" / "cpu"


class BuildPyWithKernelSources(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "jaxq" / "kernels" / "cpu" / "csrc"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(KERNEL_SOURCES.iterdir()):
            if source.suffix in (".cc", ".h"):
                self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildPyWithKernelSources})
