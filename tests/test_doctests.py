"""Every docstring example in the package runs and shows what it claims (TorchIO-style
docstrings are documentation only while they are true)."""

import doctest
import importlib
import pkgutil

import pytest

import bids_tspo

MODULES = sorted(m.name for m in pkgutil.walk_packages(bids_tspo.__path__, "bids_tspo.")
                 if not m.name.endswith("__main__"))  # importing it runs the app


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
