"""The ``>>>`` examples in the init zoo's docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "gradprobe.init",
    "gradprobe.init.functional",
    "gradprobe.init.gains",
    "gradprobe.init.policies",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
