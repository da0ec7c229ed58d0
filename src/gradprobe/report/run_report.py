"""``gradprobe report RUN``: a terminal summary of a stored run, its figures as PNG, and the
self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from ..run import Run
from .summary import COLUMNS, fmt, layer_rows, verdict
from .terminal import console, findings_table

_STYLE = {"healthy": "bold green", "warnings": "bold yellow", "errors": "bold red"}


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


def run_report(run: str | Path, html: Path | None = None, png: Path | None = None) -> int:
    """Print the summary; write PNGs to ``png`` and the report to ``html`` when given."""
    from ..diagnose import diagnose
    from .figures import as_run, run_figures, save

    run = as_run(_experiment_unit(run))
    out = console()
    findings = list(diagnose(run))
    v = verdict(findings)
    out.print(Text(f"{run.path}: {len(run.steps)} logged step(s), {len(run.layers())} layers"))
    out.print(Text(v.sentence, style=_STYLE[v.word]))
    out.print(layer_table(run))
    out.print(findings_table(findings))
    drawn = run_figures(run) if png is not None or html is not None else ([], [])
    if png is not None:
        for spec, fig in drawn[0]:
            out.print(f"figure: {save(fig, Path(png) / f'{spec.name}.png')}")
        for spec, why in drawn[1]:
            out.print(Text(f"not drawn: {spec.title}: {why}", style="dim"))
    if html is not None:
        from .html import write_html

        path = write_html(run, html, findings, drawn=drawn)
        out.print(f"report: {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


def _experiment_unit(path):
    """An experiment folder (``gradprobe run``) holds one run per unit: name them."""
    p = Path(path)
    if p.is_dir() and not (p / "run.sqlite").exists():
        units = sorted(p.glob("units/*/*.sqlite"))
        if units:
            from ..errors import InvalidInputError

            shown = "\n  ".join(str(u) for u in units[:8]) + ("\n  ..." if len(units) > 8 else "")
            raise InvalidInputError(
                f"{p} is an experiment folder with {len(units)} runs; report one of them:\n  "
                + shown
            )
    return path
