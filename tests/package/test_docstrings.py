"""Every docstring example in tfzoo runs and shows what it says (doctest)."""

import doctest
import importlib
import pkgutil

import pytest

import tfzoo

# Modules whose import needs what the default suite does not install or run.
SKIP = ()


def _modules():
    names = ["tfzoo"]
    for info in pkgutil.walk_packages(tfzoo.__path__, "tfzoo."):
        if not info.name.endswith("__main__") and info.name not in SKIP:
            names.append(info.name)
    return sorted(names)


def _has_examples(name):
    module = importlib.import_module(name)
    return any(t.examples for t in doctest.DocTestFinder(exclude_empty=True).find(module))


MODULES = [n for n in _modules() if _has_examples(n)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in doctest.DocTestFinder(exclude_empty=True).find(module):
        runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)
