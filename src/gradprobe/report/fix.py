"""The report of ``gp.fix``: the trials ranked, their loss curves side by side, and the
baseline's own report below, in one self-contained HTML file.

Rendering only: it takes plain rows and curves (``FixResult.save_html`` builds them), so
this module never imports :mod:`gradprobe.fix`, which sits above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GradprobeError, InvalidInputError
from .figures._base import figure
from .html import _env, environment, png_base64


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Running mean over ``window`` steps (a NaN stays NaN: a diverged curve ends there)."""
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _line(ax, losses: Sequence[float], window: int, **style) -> None:
    """A running mean; a curve too short for it (it diverged at once) as its raw points."""
    values = np.asarray(losses, dtype=float)
    if values.size < 2 * window:
        ax.plot(np.arange(values.size), values, marker="o", ms=3, **style)
        return
    smooth = _smooth(values, window)
    ax.plot(np.arange(smooth.size) + window, smooth, **style)


def curves_figure(
    curves: Sequence[tuple[str, Sequence[float]]],
    baseline: Sequence[float] | None = None,
    columns: int = 4,
    best: int | None = 0,
):
    """One small panel per trial, side by side on shared axes: its training loss per step
    (a running mean over a twentieth of the steps), with the baseline's curve in grey behind.
    ``best``: index of the panel drawn in the winner's colour."""
    if not curves:
        raise InvalidInputError("curves_figure needs at least one (label, losses) curve")
    n = len(curves)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = figure(figsize=(2.6 * cols + 0.4, 2.1 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    steps = max((len(c) for _, c in curves), default=1)
    window = max(1, steps // 20)
    everything = [np.asarray(c, dtype=float) for _, c in curves]
    if baseline is not None:
        everything.append(np.asarray(baseline, dtype=float))
    positive = all((v[np.isfinite(v)] > 0).all() for v in everything)
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        label, losses = curves[i]
        if baseline is not None:
            _line(ax, baseline, window, color="0.7", lw=1.2)
        _line(ax, losses, window, color="C2" if i == best else "C0", lw=1.4)
        if len(losses) < steps:  # stopped early: the loss went NaN/Inf
            ax.axvline(len(losses), color="C3", lw=0.8, ls="--")
        ax.set_title(label if len(label) <= 34 else label[:33] + "…", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        if positive:
            ax.set_yscale("log")
    for ax in axes[-cols:]:
        ax.set_xlabel("step", fontsize=8)
    axes[0].set_ylabel("training loss", fontsize=8)
    fig.suptitle(
        "training loss per trial (grey: the baseline as given; red dashes: diverged)",
        fontsize=9,
        x=0.01,
        ha="left",
    )
    return fig


_TEMPLATE = """
{%- if not fragment %}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{{ title }}</title></head><body>{% endif %}
<div class="gp-report" id="fix">
<h1>{{ title }}</h1>
<div class="verdict {{ word }}" id="fix-verdict">{{ sentence }}</div>
{% if code %}<p><strong>Apply the best:</strong></p><pre id="fix-code">{{ code }}</pre>{% endif %}
<h2>Trials, best first</h2>
<table id="fix-table"><thead><tr>{% for c in columns %}<th class="name">{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in rows %}<tr>{% for c in r %}<td class="name">{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{% for fig in figures %}
<figure id="fig-{{ fig.name }}"><figcaption>{{ fig.title }}</figcaption><img alt="{{ fig.title }}" src="data:image/png;base64,{{ fig.png }}"></figure>
{% endfor %}
{% if not_tried %}<p class="note" id="fix-not-tried">Not tried: {{ not_tried|join("; ") }}</p>{% endif %}
{% for n in notes %}<p class="note">{{ n }}</p>{% endfor %}
<h2>Each trial</h2>
{% for t in trials %}
<details class="finding"><summary><strong>{{ t.name }}</strong>: {{ t.summary }}</summary>
<pre>{{ t.code }}</pre>
{% for f in t.findings %}<div><span class="sev {{ f.severity }}">{{ f.severity }}</span> <strong>{{ f.kind }}</strong>{% if f.where %} at <code>{{ f.where }}</code>{% endif %}: {{ f.message }}</div>{% endfor %}
</details>
{% endfor %}
<h2>Environment</h2>
<table>{% for k, v in environment.items() %}<tr><td class="name">{{ k }}</td><td class="name">{{ v }}</td></tr>{% endfor %}</table>
</div>
{{ baseline_html|safe }}
{% if not fragment %}</body></html>{% endif %}
"""  # noqa: E501  (the CSP line is the run report's own)


def render_fix_html(
    *,
    title: str,
    word: str,
    sentence: str,
    code: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    figures: Sequence[tuple[str, str, Any]] = (),
    trials: Sequence[dict] = (),
    not_tried: Sequence[str] = (),
    notes: Sequence[str] = (),
    baseline_html: str = "",
    fragment: bool = False,
) -> str:
    """The page as a string. ``figures``: (name, title, matplotlib Figure); ``trials``: dicts
    with ``name``, ``summary``, ``code`` and ``findings`` (dicts: severity, kind, where,
    message); ``baseline_html``: the baseline run's report fragment (trusted: rendered by
    :func:`gradprobe.report.html.render_html` with autoescape on)."""
    drawn = [{"name": n, "title": t, "png": png_base64(f)} for n, t, f in figures]
    return (
        _env()
        .from_string(_TEMPLATE)
        .render(
            title=title,
            word=word,
            sentence=sentence,
            code=code,
            columns=list(columns),
            rows=[[str(c) for c in r] for r in rows],
            figures=drawn,
            trials=list(trials),
            not_tried=list(not_tried),
            notes=list(notes),
            environment=environment(),
            baseline_html=baseline_html,
            fragment=fragment,
        )
    )


def write_fix_html(path: str | Path, **context: Any) -> Path:
    """Write :func:`render_fix_html` to ``path`` (a .html file; folders created)."""
    path = Path(path)
    if path.suffix.lower() not in {".html", ".htm"}:
        raise InvalidInputError(f"write the report to a .html file, got {path.name!r}")
    text = render_fix_html(**context)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise GradprobeError(
            f"cannot write the report to {path}: {err}; pass another path"
        ) from None
    return path
