"""Terminal output with rich: one console, tables, progress bars."""

from __future__ import annotations

import functools

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@functools.cache
def console() -> Console:
    return Console(highlight=False)


def progress(**kwargs) -> Progress:
    """A progress bar for anything that takes more than a couple of seconds."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
        transient=kwargs.pop("transient", False),
        **kwargs,
    )
