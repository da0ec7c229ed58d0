"""The ``>>>`` examples in the theory docstrings run and hold."""

from __future__ import annotations

import doctest

import pytest

import gradprobe.theory
import gradprobe.theory.finite_width
import gradprobe.theory.trajectory


@pytest.mark.parametrize(
    "module", [gradprobe.theory, gradprobe.theory.trajectory, gradprobe.theory.finite_width]
)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
