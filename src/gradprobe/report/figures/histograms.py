"""Per-layer histograms, the look of Glorot & Bengio (2010) figures 6-7.

One row per run, rows share the value axis, so "standard init above, normalised below" compares
at a glance. Each row overlays every layer's histogram (a line per layer, darker = deeper)
and has a narrow side panel with what a histogram cannot show: the fraction of values
that were exactly 0, NaN, +Inf or -Inf in each layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...run import Histogram, Run
from ._base import AFFINE_TYPES, MissingData, as_run, figure, pick_step, short_names

_WORDS = {"activation": "activation value", "grad_output": "back-propagated gradient ∂L/∂y"}
_SPECIAL = (("zero", "0"), ("nan", "NaN"), ("posinf", "+Inf"), ("neginf", "−Inf"))
HOW = "record them with gp.watch(model, histograms=True) or gp.check(model, x)"


def histogram_layers(run: Run, quantity: str, step: int) -> list[str]:
    """Layers with a ``quantity`` histogram at ``step``: for gradients the affine layers
    (∂L/∂pre-activation, as in Glorot's fig. 7), for activations the nonlinearities."""
    names = [la for la in run.layers() if run.histogram(la.name, quantity, step) is not None]
    if quantity == "grad_output":
        picked = [la for la in names if la.module_type in AFFINE_TYPES]
    else:
        picked = [la for la in names if la.activation is not None]
    return [la.name for la in (picked or names)]


def _density(h: Histogram) -> tuple[np.ndarray, np.ndarray] | None:
    if h.lo is None or h.hi is None or not np.isfinite([h.lo, h.hi]).all():
        return None  # nothing finite to bin: the side panel shows it
    total = h.counts.sum() + h.below + h.above + h.zero + h.nan + h.posinf + h.neginf
    width = (h.hi - h.lo) / len(h.counts) if h.hi > h.lo else 1.0
    return h.edges, h.counts / max(total, 1) / width


def histograms_figure(
    runs: Run | str | Path | Sequence[Run | str | Path],
    quantity: str = "grad_output",
    step: int | None = None,
    labels: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
):
    """Per-layer histograms of ``quantity`` ("activation" or "grad_output") at ``step``.

    ``runs``: one run or several (each a Run or a path), drawn one above the other with
    shared axes; ``labels`` names them. Needs histograms in the run (:data:`HOW`).
    Returns a Figure with two panels per run: the histograms, and the 0/NaN/Inf fractions.
    """
    if isinstance(runs, (Run, str, Path)):
        runs = [runs]
    runs = [as_run(r) for r in runs]
    if not runs:
        raise MissingData("histograms_figure needs at least one run")
    labels = list(labels) if labels is not None else [str(r.meta.get("label", "")) for r in runs]
    rows = []
    for run in runs:
        s = pick_step(run, step)
        names = list(layers) if layers is not None else histogram_layers(run, quantity, s)
        hists = [(n, run.histogram(n, quantity, s)) for n in names]
        hists = [(n, h) for n, h in hists if h is not None]
        if not hists:
            raise MissingData(f"no {quantity} histograms at step {s}; {HOW}")
        rows.append((s, hists))
    fig = figure(figsize=(8.5, 1.2 + 2.4 * len(runs)))
    axes = fig.subplots(len(runs), 2, sharex="col", width_ratios=[4, 1], squeeze=False)
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for (s, hists), label, (ax, side) in zip(rows, labels, axes, strict=True):
        n = len(hists)
        shown = short_names(name for name, _ in hists)
        for i, (_, h) in enumerate(hists):
            color = cmap(0.85 * i / max(n - 1, 1))
            binned = _density(h)
            if binned is not None:
                ax.stairs(binned[1], binned[0], color=color, lw=1.3, label=f"layer {shown[i]}")
        ax.set_ylabel("density")
        ax.set_title(
            f"{label + ': ' if label else ''}{_WORDS.get(quantity, quantity)}, step {s}",
            fontsize=10,
            loc="left",
        )
        ax.legend(fontsize=7, frameon=False, ncol=1 + n // 6, loc="upper right")
        _special(side, hists, cmap)
    axes[-1, 0].set_xlabel(_WORDS.get(quantity, quantity))
    return fig


def _special(ax, hists, cmap) -> None:
    """Grouped bars: fraction of exact zeros, NaN, +Inf, -Inf per layer (log-free, 0 to 1)."""
    n = len(hists)
    width = 0.8 / n
    for i, (_, h) in enumerate(hists):
        total = max(h.counts.sum() + h.below + h.above + h.zero + h.nan + h.posinf + h.neginf, 1)
        values = [getattr(h, key) / total for key, _ in _SPECIAL]
        x = np.arange(len(_SPECIAL)) + (i - (n - 1) / 2) * width
        ax.bar(x, values, width=width, color=cmap(0.85 * i / max(n - 1, 1)))
    ax.set_xticks(range(len(_SPECIAL)), [w for _, w in _SPECIAL], fontsize=8)
    ax.set_ylim(0, 1)
    if not any(getattr(h, key) for _, h in hists for key, _ in _SPECIAL):
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_title("fraction", fontsize=9)
