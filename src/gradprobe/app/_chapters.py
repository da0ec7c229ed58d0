"""The demo's chapters: a list in story order, and :func:`chapter` to append one.

Each chapter prints rich tables (and a progress bar for anything over ~2 s), writes its
figures to ``out`` and returns its numbers, so tests assert on what the demo showed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError


@dataclass(frozen=True)
class Chapter:
    """One chapter: ``run(out, seed)`` prints, writes figures under ``out``, returns numbers."""

    name: str
    title: str
    run: Callable[[Path, int], dict[str, Any]]


CHAPTERS: list[Chapter] = []


def chapter(name: str, title: str) -> Callable:
    """Decorator: append ``run(out, seed)`` to the demo as a chapter."""

    def add(run: Callable[[Path, int], dict[str, Any]]) -> Callable:
        if any(c.name == name for c in CHAPTERS):
            raise InvalidInputError(f"demo chapter {name!r} exists already; pick another name")
        CHAPTERS.append(Chapter(name, title, run))
        return run

    return add
