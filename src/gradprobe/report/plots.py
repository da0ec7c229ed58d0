"""Figures with matplotlib (imported lazily, Agg backend). Each function returns a Figure.

Plotting reads computed numbers only; it never runs an experiment itself. Figures are made
without pyplot, on their own Agg canvas: no global backend switch (a notebook keeps its
own), and no figure to close.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

# gradprobe.experiments.matrix_chain.ChainResult: not imported, report sits below experiments
ChainResult = Any

_EVENT_STYLE = {"0": ("v", "exactly 0"), "Inf": ("^", "Inf"), "NaN": ("X", "NaN")}


def _figure(**kwargs) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=100, layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def matrix_chain_figure(
    results: Mapping[str, ChainResult],
    spread: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> Figure:
    """Std of ``x`` per layer on a log axis, one line per setting.

    A log axis cannot show 0, Inf or NaN, so where a chain first hits one of them the
    line stops and a marker sits on the bottom (0) or top (Inf, NaN) edge, labelled with
    the layer. ``spread`` (setting -> per-seed std, shape ``(seeds, depth + 1)``) adds a
    right-hand panel that zooms on those settings, one thin line per seed: the
    finite-width drift that the left panel's scale hides.
    """
    if not results:
        raise InvalidInputError("matrix_chain_figure needs at least one chain result")
    colors = {name: f"C{i}" for i, name in enumerate(results)}
    if spread:
        fig = _figure(figsize=(9, 4.4))
        ax, zoom = fig.subplots(1, 2, width_ratios=[1.6, 1])
    else:
        fig = _figure(figsize=(6.5, 4.4))
        ax = fig.subplots()
    depth = max(r.depth for r in results.values())
    for name, r in results.items():
        _chain_line(ax, r, colors[name])
    ax.set_yscale("log")
    ax.set_xlim(0, depth + 1)
    ax.set_xlabel("layer")
    ax.set_ylabel("std of x (log scale)")
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.set_title(title or "x = x @ W, layer after layer (float32)", fontsize=10)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 0.1), frameon=False)
    if spread:
        for name, per_seed in spread.items():
            for k, row in enumerate(per_seed.tolist()):
                label = results[name].setting.label if k == 0 and name in results else None
                zoom.plot(row, color=colors.get(name, "k"), lw=0.8, alpha=0.6, label=label)
        zoom.set_yscale("log")
        zoom.set_xlim(0, depth)
        zoom.axhline(1.0, color="grey", lw=0.6, ls=":")
        zoom.set_xlabel("layer")
        zoom.set_title(f"finite width: {len(per_seed)} seeds each", fontsize=10)
        zoom.legend(fontsize=8, loc="lower left", frameon=False)
    return fig


def _chain_line(ax, r: ChainResult, color: str) -> None:
    from matplotlib.transforms import blended_transform_factory

    edge = blended_transform_factory(ax.transData, ax.transAxes)
    ok = [(layer, s) for layer, s in enumerate(r.std.tolist()) if math.isfinite(s) and s > 0]
    ax.plot([p[0] for p in ok], [p[1] for p in ok], color=color, lw=1.8, label=r.setting.label)
    for what, layer in r.events():
        if layer is None:
            continue
        marker, words = _EVENT_STYLE[what]
        y = 0.03 if what == "0" else (0.97 if what == "Inf" else 0.89)
        ax.plot([layer], [y], marker=marker, ms=9, color=color, transform=edge, clip_on=False)
        ax.annotate(
            f"{words} at layer {layer}",
            (layer, y),
            xycoords=edge,
            xytext=(-8, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=8,
            color=color,
        )


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save ``fig`` as PNG or SVG (from the suffix), creating the folder."""
    path = Path(path)
    if path.suffix.lower() not in {".png", ".svg"}:
        raise InvalidInputError(f"save figures as .png or .svg, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
