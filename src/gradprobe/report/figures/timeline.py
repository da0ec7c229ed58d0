"""The run's timeline: the loss over the steps with the onset of every finding marked, and
below it the per-layer lines that explain them — each cause's own quantity divided by its
threshold, so every line crosses 1 where its rule fired.

Needs the loss on two or more steps (``probe.step(loss=loss)``); findings default to
``gp.diagnose(run)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...diagnose.finding import SYMPTOMS
from ...diagnose.series import loss_series, model_series
from ...run import Run
from ._base import MissingData, as_run, figure, short

HOW = "pass the loss to the probe on every step: probe.step(loss=loss)"
COLOURS = {"error": "#c62828", "warning": "#b07d00", "info": "#2d6aa3"}


def explaining_line(run: Run, f) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(label, steps, value / threshold) of the quantity behind cause ``f``, or None."""
    e = f.evidence
    if f.kind in ("large_updates", "small_updates"):
        found = _row(run, "update", "ratio", f.layer)
        what = "‖Δw‖/‖w‖"
    elif f.kind == "dead_units":
        found, what = _row(run, "activation", "dead", f.layer), "dead share"
    elif f.kind == "saturated":
        found, what = _row(run, "activation", "saturated", f.layer), "saturated share"
    elif f.kind == "attention_logits":
        found, what = _row(run, "attention", "max_logit", f.layer), "max logit"
    elif f.kind == "overflow":
        found = _row(run, e.get("quantity", "activation"), "range_used", f.layer)
        what = "max|x| / dtype max"
    elif f.kind == "exploding" and f.layer is None and "baseline" in e:
        s = model_series(run, "grad_norm", "global")
        if s is None:
            return None
        limit = float(e["baseline"]) * float(e["threshold"])
        return "‖∇L‖ (global)", s.steps, s.values / limit
    else:
        return None
    threshold = e.get("threshold")
    if found is None or not isinstance(threshold, (int, float)) or threshold <= 0:
        return None
    steps, values = found
    return f"{what} {short(f.layer or 'model', 22)}", steps, values / threshold


def _row(run: Run, quantity: str, stat: str, layer: str | None):
    if layer is None or (quantity, stat) not in set(run.quantities()):
        return None
    names, steps, values = run.matrix(quantity, stat, role=None)
    if layer not in names:
        return None
    row = values[names.index(layer)]
    keep = np.isfinite(row)
    return np.asarray(steps)[keep], row[keep]


def timeline_figure(run: Run | str | Path, findings=None):
    """Loss (top) with every finding's onset marked — a symptom's step range shaded — and
    (bottom) one line per cause, its quantity over its threshold (log y, 1 = the line)."""
    run = as_run(run)
    loss = loss_series(run)
    if loss is None or len(loss) < 2:
        raise MissingData(f"the run has no loss on two or more steps; {HOW}")
    if findings is None:
        from ...diagnose import diagnose

        findings = diagnose(run)
    findings = [f for f in findings if f.onset is not None]
    lines = []
    for f in findings:
        line = explaining_line(run, f) if f.kind not in SYMPTOMS else None
        if line is not None and line[1].size:
            lines.append(line)
    fig = figure(figsize=(9, 5.2 if lines else 3.4))
    axes = fig.subplots(2 if lines else 1, 1, sharex=True, squeeze=False)[:, 0]
    top = axes[0]
    ok = np.isfinite(loss.values)
    top.plot(loss.steps[ok], loss.values[ok], color="0.25", lw=0.9, label="loss")
    if (~ok).any():
        top.plot(
            loss.steps[~ok],
            np.full((~ok).sum(), 0.97),
            "x",
            color=COLOURS["error"],
            transform=top.get_xaxis_transform(),
            label="NaN/Inf loss",
        )
    positive = loss.values[ok]
    if positive.size and positive.min() > 0 and positive.max() / positive.min() > 30:
        top.set_yscale("log")
    for i, f in enumerate(sorted(findings, key=lambda f: f.onset)):
        colour = COLOURS.get(f.severity, "0.5")
        style = "-" if f.kind in SYMPTOMS else "--"
        for ax in axes:
            ax.axvline(f.onset, color=colour, lw=1.0, ls=style, alpha=0.8)
        end = getattr(f, "end", None)
        if f.kind in SYMPTOMS and end is not None and end > f.onset:
            top.axvspan(f.onset, end, color=colour, alpha=0.08)
        where = f" {short(f.layer, 16)}" if f.layer and f.layer != "(loss)" else ""
        top.annotate(
            f"{f.kind}{where}",
            (f.onset, 1.0 - 0.09 * (i % 6)),
            xycoords=("data", "axes fraction"),
            xytext=(3, -2),
            textcoords="offset points",
            fontsize=7,
            color=colour,
            va="top",
        )
    top.set_ylabel("loss")
    top.set_title(
        "loss, with the onset of each finding (solid: in the loss; dashed: in the layers)",
        fontsize=10,
        loc="left",
    )
    if lines:
        bottom = axes[1]
        for k, (label, steps, values) in enumerate(lines):
            good = np.isfinite(values) & (values > 0)
            bottom.plot(steps[good], values[good], lw=1.2, color=f"C{k % 10}", label=label)
        bottom.axhline(1.0, color="0.4", lw=0.8, ls=":")
        bottom.set_yscale("log")
        bottom.set_ylabel("value / threshold")
        bottom.legend(fontsize=7, frameon=False, ncol=2)
        bottom.set_title("what explains them (1 = the rule's threshold)", fontsize=10, loc="left")
    axes[-1].set_xlabel("step")
    return fig
