"""The progress bar of a run (a rich bar on the terminal; nothing when quiet): units done of
all, how many are running and failed, the time spent and the time left."""

from __future__ import annotations

from types import TracebackType
from typing import Any


class Progress:
    """``with Progress("he2015 (quick)", total=8, done=2, quiet=False) as bar: bar.advance()``."""

    def __init__(self, label: str, total: int, done: int = 0, quiet: bool = False) -> None:
        self.label, self.total, self.done, self.quiet = label, total, done, quiet
        self.running, self.failed = 0, 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from ..report.terminal import console

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[state]}"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=console(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                self.label, total=self.total, completed=self.done, state=self._state()
            )
        return self

    def _state(self) -> str:
        return f"running {self.running}" + (f", failed {self.failed}" if self.failed else "")

    def update(self, running: int | None = None, failed: int = 0) -> None:
        """Units running now (None: as before) and ``failed`` more that failed."""
        self.running = self.running if running is None else running
        self.failed += failed
        if self._bar is not None:
            self._bar.update(self._task, state=self._state())

    def advance(self, running: int | None = None) -> None:
        """One more unit done; ``running``: how many run now."""
        self.done += 1
        self.update(running)
        if self._bar is not None:
            self._bar.advance(self._task)

    def __exit__(
        self, kind: type | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
