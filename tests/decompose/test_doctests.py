"""The Examples in `modjax.decompose` docstrings run and hold."""

import doctest
import importlib

import pytest

STEPS = ["parent", "identify", "channel", "decompose", "module", "pipeline"]
MODULES = [f"{kind}.{step}" for kind in ("dense", "cnn") for step in STEPS] + [
    "io",
    "samples",
    "vote",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"modjax.decompose.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
