"""The per-layer table of a stored run (rich); the ``gradprobe report`` command's body is in
:mod:`gradprobe.app.report`."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..run import Run
from .summary import COLUMNS, fmt, layer_rows


def layer_table(run: Run, step: int | None = None) -> Table:
    """The per-layer table at ``step`` (default: last logged), columns that were recorded."""
    step, rows = layer_rows(run, step)
    columns = [(k, name) for k, name, *_ in COLUMNS if any(r[k] is not None for r in rows)]
    table = Table(title=f"layers at step {step}", title_justify="left")
    table.add_column("layer")
    table.add_column("type")
    for _, name in columns:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(Text(r["layer"]), Text(r["type"]), *[fmt(r[k]) for k, _ in columns])
    return table
