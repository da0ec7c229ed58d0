"""The progress bar of a run (a rich bar on the terminal; nothing when quiet)."""

from __future__ import annotations

from types import TracebackType


class Progress:
    """``with Progress("he2015 (quick)", total=8, done=2, quiet=False) as bar: bar.advance()``."""

    def __init__(self, label: str, total: int, done: int = 0, quiet: bool = False) -> None:
        self.label, self.total, self.done, self.quiet = label, total, done, quiet
        self._bar = None
        self._task = None

    def __enter__(self) -> Progress:
        if not self.quiet:
            from ..report.terminal import progress

            self._bar = progress(transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done)
        return self

    def advance(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def __exit__(
        self, kind: type | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
