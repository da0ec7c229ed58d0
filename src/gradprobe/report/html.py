"""The HTML report: one self-contained file (figures as base64 PNG, no network).

Rendered with jinja2 and autoescape on, so every recorded string (layer names, meta,
findings) is escaped: a ModuleDict key ``<script>`` shows as text. The page's only script
is the template's own (sortable table, and a status line a browser test reads).
"""

from __future__ import annotations

import base64
import io
import json
import math
import platform
import sys
from pathlib import Path

from ..errors import GradprobeError, InvalidInputError
from ..run import Run
from .figures import FIGURES, as_run, run_figures
from .summary import cell, fmt, pct, per_layer, verdict, when, words
from .tables import RANKING_COLUMNS, ranking_cells

TEMPLATES = Path(__file__).parent / "templates"


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["cell"] = lambda value, key: cell(key, value)
    env.filters["sortkey"] = _sortkey
    return env


def _sortkey(value) -> str:
    """A number as the table's sorting script reads it (JavaScript's ``Number``): Inf as
    ``Infinity``; NaN and a missing value sort with the blanks."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def png_base64(fig, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def environment() -> dict[str, str]:
    """Versions of what rendered the report (the run's own meta says what recorded it)."""
    import numpy

    from .._version import __version__

    env = {
        "gradprobe": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
    }
    for name in ("torch", "matplotlib", "jinja2"):
        module = sys.modules.get(name)
        if module is not None:
            env[name] = getattr(module, "__version__", "?")
    return env


def _evidence(evidence) -> list[tuple[str, str]]:
    """Evidence as (key, text): floats with three digits; shares (``*_fraction``, and the
    threshold beside one) as percentages, as the tables write them."""
    evidence = dict(evidence)
    shares = any(str(k).endswith("fraction") for k in evidence)
    out = []
    for key, value in evidence.items():
        share = str(key).endswith("fraction") or (shares and key == "threshold")
        if isinstance(value, dict):
            items = [f"{k}: {_num(v)}" for k, v in list(value.items())[:6]]
            text = "{" + ", ".join(items) + (", …" if len(value) > 6 else "") + "}"
        elif isinstance(value, (list, tuple)):
            shown = ", ".join(_num(v) for v in value[:6])
            text = f"[{shown}{', …' if len(value) > 6 else ''}] ({len(value)} values)"
        else:
            text = _num(value, share)
        out.append((str(key), text))
    return out


def _num(v, share: bool = False) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if share:
        return pct(v)
    return fmt(v) if isinstance(v, float) else str(v)


def _findings(findings, training: bool = True) -> list[dict]:
    """Each finding as the template shows it: the kind and its plain words, where, when
    (:func:`~gradprobe.report.summary.when`), the message, evidence, causes and remedy."""
    rows = []
    for f in findings:
        where = f.layer if f.layer is not None else "model"
        if getattr(f, "time_step", None) is not None:
            where += f" (t = {f.time_step})"
        rows.append(
            {
                "severity": f.severity,
                "kind": f.kind,
                "words": words(f.kind),
                "when": when(f, training),
                "where": where,
                "step": f.step,
                "message": f.message,
                "evidence": _evidence(f.evidence),
                "remedy": getattr(f.remedy, "text", str(f.remedy)),
                "code": getattr(f.remedy, "code", None),
                **_when(f),
            }
        )
    return rows


def _when(f) -> dict:
    """The timeline's columns of a finding: onset, end of its step range, its causes."""
    onset, end = getattr(f, "onset", None), getattr(f, "end", None)
    causes = [getattr(c, "summary", str(c)) for c in getattr(f, "causes", ())]
    return {
        "onset": onset,
        "end": end if end is not None and end != onset else None,
        "causes": causes,
    }


def _timeline(findings, drawn, training: bool = True) -> dict | None:
    """The timeline section: its figure (when drawn) and the findings in order of onset."""
    figure = next(
        ({"title": s.title, "png": png_base64(f)} for s, f in drawn if s.name == "timeline"), None
    )
    rows = sorted(
        (r for r in _findings(findings, training) if r["onset"] is not None),
        key=lambda r: r["onset"],
    )
    if figure is None and not any(r["end"] is not None or r["causes"] for r in rows):
        return None
    return {"figure": figure, "rows": rows}


def _ranking(rows: list[dict] | None) -> dict | None:
    """The ranking section: the terminal's headers and cells (report.tables.ranking_cells),
    and per row whether it is the pick (rank 1), the model's own init, and its code."""
    if not rows:
        return None
    headers, cells = ranking_cells(rows)
    return {
        "headers": headers,
        "left": [kind != "number" for _, _, kind, _ in RANKING_COLUMNS],
        "rows": [
            {
                "cells": c,
                "pick": i == 0,
                "own": bool(r.get("own")),
                "healthy": bool(r.get("healthy")),
                "code": r.get("code") or "",
            }
            for i, (r, c) in enumerate(zip(rows, cells, strict=True))
        ],
        "pick": rows[0].get("code") or "",
    }


def render_html(
    run: Run | str | Path,
    findings=None,
    *,
    title: str | None = None,
    fragment: bool = False,
    figures: list[str] | None = None,
    drawn: tuple[list, list] | None = None,
    extra: list[tuple[str, str | Path]] = (),
    story: list[str] = (),
    ranking: list[dict] | None = None,
) -> str:
    """The report as a string. ``findings``: default ``gp.diagnose(run)``; ``fragment``: a
    ``<div>`` for Jupyter instead of a whole page; ``figures``: names from
    :data:`gradprobe.report.figures.FIGURES` (default all); ``drawn``: figures already drawn,
    as :func:`~gradprobe.report.figures.run_figures` returns them; ``extra``: more figures as
    ``(title, PNG file)``; ``story``: paragraphs shown under the verdict (the demo's)."""
    run = as_run(run)
    if findings is None:
        from ..diagnose import diagnose

        findings = list(diagnose(run))
    table = per_layer(run)
    drawn, notes = drawn if drawn is not None else run_figures(run, only=figures)
    meta = run.meta
    theory = meta.get("theory") or []
    training = len(run.steps) > 1
    context = {
        "title": title or f"gradprobe report: {meta.get('label') or meta.get('model') or 'run'}",
        "verdict": verdict(findings, run),
        "findings": _findings(findings, training),
        "step": table.step,
        "columns": table.columns,
        "reference": table.reference,
        "rows": table.rows,
        "timeline": _timeline(findings, drawn, training),
        "ranking": _ranking(ranking),
        "figures": [
            {"name": s.name, "title": s.title, "png": png_base64(f)}
            for s, f in drawn
            if s.name != "timeline"  # drawn in its own section
        ],
        "extra": [
            {
                "name": Path(p).stem,
                "title": t,
                "png": base64.b64encode(Path(p).read_bytes()).decode(),
            }
            for t, p in extra
        ],
        "story": list(story),
        "notes": [{"title": s.title, "needs": s.needs, "why": why} for s, why in notes],
        "theory": theory,
        "meta": json.dumps(meta, indent=2, default=str, ensure_ascii=False),
        "source": str(run.path) if run.path else "in memory",
        "environment": environment(),
        "fragment": fragment,
    }
    return _env().get_template("report.html.j2").render(**context)


def write_html(run: Run | str | Path, path: str | Path, findings=None, **kwargs) -> Path:
    """Write :func:`render_html` to ``path`` (creating the folder); returns the path."""
    path = Path(path)
    if path.suffix.lower() not in {".html", ".htm"}:
        raise InvalidInputError(f"write the report to a .html file, got {path.name!r}")
    text = render_html(run, findings, **kwargs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise GradprobeError(
            f"cannot write the report to {path}: {err}; pass another path"
        ) from None
    return path


class Report:
    """A stored run's report: displays itself in Jupyter (verdict, findings, layer table, the
    depth profile) and ``save(path)`` writes the full self-contained page.

    >>> Report("runs/mlp.sqlite")                    # doctest: +SKIP
    """

    def __init__(self, run: Run | str | Path, findings=None, title: str | None = None) -> None:
        self.run = as_run(run)
        self.findings = findings
        self.title = title

    def _findings(self):
        if self.findings is None:
            from ..diagnose import diagnose

            self.findings = list(diagnose(self.run))
        return self.findings

    def _repr_html_(self) -> str:
        return render_html(
            self.run, self._findings(), title=self.title, fragment=True, figures=["profile"]
        )

    def save(self, path: str | Path) -> Path:
        return write_html(self.run, path, self._findings(), title=self.title)


__all__ = ["FIGURES", "Report", "render_html", "write_html"]
