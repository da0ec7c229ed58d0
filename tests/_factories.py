"""Helpers the command-line tests share (tests/app, tests/fix, tests/report): a user's
module of model factories, importable as ``MODULE:FACTORY`` for the length of one test, and
the CLI called as a function that returns its exit status.

Imported as ``from _factories import ...``: the folder of tests/conftest.py (this one) is on
``sys.path`` in pytest's default import mode.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gradprobe.cli import main


@contextmanager
def user_module(folder: Path, monkeypatch, name: str, source: str) -> Iterator[Path]:
    """``source`` written to ``folder/name.py``, the working directory ``folder`` and the
    module importable; forgotten afterwards, so the next test imports its own version."""
    (folder / f"{name}.py").write_text(source)
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    try:
        yield folder
    finally:
        sys.modules.pop(name, None)


def run_cli(args: list[str]) -> int:
    """``gradprobe ARGS`` in this process; the exit status (0 when it returns normally)."""
    try:
        main(args)
    except SystemExit as done:
        return done.code or 0
    return 0
