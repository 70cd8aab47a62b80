"""The Examples in `modjax.decompose` docstrings run and hold."""

import doctest
import importlib

import pytest

MODULES = [
    "_channel",
    "_cnn_identify",
    "_cnn_modularize",
    "_cnn_module",
    "_cnn_net",
    "_cnn_panrajan",
    "_dense",
    "_identify",
    "_module",
    "_panrajan",
    "_pipeline",
    "_samples",
    "_vote",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"modjax.decompose.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
