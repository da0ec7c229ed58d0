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


_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def findings_table(findings):
    """Findings in colour: severity, kind, where, what was measured, the remedy."""
    from rich.table import Table
    from rich.text import Text

    if not findings:
        return Text("No findings: gradients and activations look healthy.", style="green")
    table = Table(title="findings", title_justify="left", show_lines=True)
    for column in ("severity", "kind", "where", "what", "remedy"):
        table.add_column(column)
    for f in findings:
        where = f.layer or "model"
        if f.time_step is not None:
            where += f" (t={f.time_step})"
        if f.step is not None:
            where += f", step {f.step}"
        table.add_row(
            Text(f.severity, style=_SEVERITY_STYLE[f.severity]),
            f.kind,
            Text(where),
            Text(f.message),
            Text(str(f.remedy)),
        )
    return table
