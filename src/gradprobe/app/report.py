"""``gradprobe report RUN``: a terminal summary of a stored run, its figures as PNG, and the
self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from ..diagnose import diagnose
from ..errors import InvalidInputError
from ..report.figures import as_run, run_figures, save
from ..report.summary import verdict
from ..report.tables import layer_table
from ..report.terminal import console, findings_table

_STYLE = {"healthy": "bold green", "warnings": "bold yellow", "errors": "bold red"}


def run_report(run: str | Path, html: Path | None = None, png: Path | None = None) -> int:
    """Print the summary; write PNGs to ``png`` and the report to ``html`` when given.

    Returns the exit status, by the same rule as ``check``: 0 when no finding is a warning or
    an error, 1 otherwise."""
    _check_outputs(html, png)
    run = as_run(_experiment_unit(run))
    out = console()
    findings = list(diagnose(run))
    v = verdict(findings, run)
    on = f", on {run.meta['device']}" if run.meta.get("device") else ""
    out.print(Text(f"{run.path}: {len(run.steps)} logged step(s), {len(run.layers())} layers{on}"))
    out.print(Text(v.sentence, style=_STYLE[v.word]))
    out.print(layer_table(run))
    out.print(findings_table(findings, verdict=v, training=len(run.steps) > 1))
    drawn = run_figures(run) if png is not None or html is not None else ([], [])
    if png is not None:
        for spec, fig in drawn[0]:
            out.print(f"figure: {save(fig, Path(png) / f'{spec.name}.png')}")
        for spec, why in drawn[1]:
            out.print(Text(f"not drawn: {spec.title}: {why}", style="dim"))
    if html is not None:
        from ..report.html import write_html

        path = write_html(run, html, findings, drawn=drawn)
        out.print(f"report: {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return v.exit_code


def _check_outputs(html: Path | None, png: Path | None) -> None:
    """Refuse output paths that cannot be written before any work is done."""
    if png is not None and Path(png).exists() and not Path(png).is_dir():
        raise InvalidInputError(
            f"--png {png} is an existing file; --png takes a folder for the figures (it is "
            "created when missing)"
        )
    if html is not None and Path(html).is_dir():
        raise InvalidInputError(
            f"--html {html} is a folder; name the report file, e.g. {html}/report.html"
        )


def _experiment_unit(path):
    """An experiment folder (``gradprobe run``) holds one run per unit: name them."""
    p = Path(path)
    if p.is_dir() and not (p / "run.sqlite").exists():
        units = sorted(p.glob("units/*/*.sqlite"))
        if units:
            shown = "\n  ".join(str(u) for u in units[:8]) + ("\n  ..." if len(units) > 8 else "")
            raise InvalidInputError(
                f"{p} is an experiment folder with {len(units)} runs; report one of them:\n  "
                + shown
            )
    return path
