"""Every docstring example in jaxq runs and prints what it shows.

The brief asks for a short runnable example on public functions; this keeps them true.
One test per module, so a failure names the module and xdist spreads the work.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import jaxq

MODULES = sorted(info.name for info in pkgutil.walk_packages(jaxq.__path__, "jaxq."))


def test_every_module_is_collected():
    assert len(MODULES) > 100
    assert "jaxq.core.affine" in MODULES and "jaxq.kernels.activation" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    report: list[str] = []
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        # Only docstrings written in this module (not ones re-exported from elsewhere).
        if test.filename and module.__file__ and test.filename != module.__file__:
            continue
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    if results.failed:
        pytest.fail(f"{results.failed} of {results.attempted} examples failed in {name}:\n"
                    + "".join(report))
