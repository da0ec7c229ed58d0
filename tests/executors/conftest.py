"""The executors' tests: a test experiment registered for one test at a time."""

from __future__ import annotations

import _sweep  # tests/executors is on sys.path (pytest's rootdir-relative import)
import pytest

from gradprobe.experiments import EXPERIMENTS


@pytest.fixture
def sweep(monkeypatch, tmp_path):
    """The test experiment's name, registered; its units log their starts to ``log``."""
    EXPERIMENTS.names()  # the built-in ones first
    monkeypatch.setitem(EXPERIMENTS._items, _sweep.NAME, _sweep.EXPERIMENT)
    return _sweep.NAME


def started(log) -> list[int]:
    """The seeds of the units that started, in order."""
    return [int(s) for s in log.read_text().split()] if log.exists() else []
