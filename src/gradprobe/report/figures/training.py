"""Over training: a layer × step heat map of one stat, and per-layer lines of the gradient
norm and the update ratio ‖Δw‖/‖w‖."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...run import Run
from ._base import MissingData, as_run, figure, require, short_names

HOW_STEPS = "watch more than one step: gp.watch(model, every=...) around the training loop"


def _diverging():
    """A perceptually uniform diverging colour map (matplotlib >= 3.10 ships 'berlin')."""
    from matplotlib import colormaps

    return colormaps["berlin"] if "berlin" in colormaps else colormaps["coolwarm"]


def heatmap_figure(
    run: Run | str | Path, quantity: str = "grad_output", stat: str = "norm", role="module"
):
    """Layer × step heat map of (quantity, stat). A stat that is never negative is drawn as
    log10 with 'viridis'; a signed one (e.g. a mean) on a diverging map centred on 0.
    Needs the stat on at least two logged steps."""
    run = as_run(run)
    require(run, quantity, stat, how=HOW_STEPS, steps=2)
    names, steps, values = run.matrix(quantity, stat, role=role)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise MissingData(f"{quantity}/{stat} is never finite in this run")
    fig = figure(figsize=(8, 1.6 + 0.22 * len(names)))
    ax = fig.subplots()
    extent = (-0.5, len(steps) - 0.5, len(names) - 0.5, -0.5)
    if (finite < 0).any():
        lim = float(np.abs(finite).max()) or 1.0
        image = ax.imshow(
            values,
            aspect="auto",
            cmap=_diverging(),
            vmin=-lim,
            vmax=lim,
            interpolation="nearest",
            extent=extent,
        )
        what = f"{quantity} {stat}"
    else:
        with np.errstate(divide="ignore"):
            logged = np.log10(values)
        logged[np.isneginf(logged)] = np.nan  # exact zeros: shown as missing (grey)
        from matplotlib import colormaps

        cmap = colormaps["viridis"].with_extremes(bad="0.8")
        image = ax.imshow(logged, aspect="auto", cmap=cmap, interpolation="nearest", extent=extent)
        what = f"log10 {quantity} {stat}"
    fig.colorbar(image, ax=ax, label=what, shrink=0.9)
    ax.set_yticks(range(len(names)), short_names(names), fontsize=7)
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int))
    ax.set_xticks(ticks, [str(steps[t]) for t in ticks])
    ax.set_xlabel("step")
    ax.set_ylabel("layer (input at the top)")
    ax.set_title(f"{what} per layer over training (grey: 0 or missing)", fontsize=10, loc="left")
    return fig


def training_lines_figure(run: Run | str | Path):
    """Two panels over steps, one line per weight: ‖∂L/∂W‖ and the update ratio ‖Δw‖/‖w‖
    (log y). Needs param_grad/norm and update/ratio on two steps (gp.watch; the update ratio
    is measured 10 steps apart by default, ``updates=1``: on every logged step)."""
    run = as_run(run)
    require(run, "param_grad", "norm", how=HOW_STEPS, steps=2)
    how = "watch with updates=1 (every logged step) or train for more than 10 steps; "
    require(run, "update", "ratio", how=how + HOW_STEPS, steps=2)
    fig = figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2, sharex=True)
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    cmap = colormaps["viridis"]
    for ax, (quantity, stat, title) in zip(
        axes,
        (("param_grad", "norm", "‖∂L/∂W‖"), ("update", "ratio", "update ratio ‖Δw‖/‖w‖")),
        strict=True,
    ):
        names, steps, values = run.matrix(quantity, stat, role="param")
        keep = [i for i, n in enumerate(names) if not n.endswith("bias")] or list(range(len(names)))
        shown = short_names([names[i] for i in keep], 14)
        for k, i in enumerate(keep):
            ok = np.isfinite(values[i]) & (values[i] > 0)
            ax.plot(
                np.array(steps)[ok],
                values[i][ok],
                color=cmap(0.85 * k / max(len(keep) - 1, 1)),
                lw=1.2,
                label=shown[k],
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title + " per weight", fontsize=10, loc="left")
    axes[1].axhline(1e-3, color="grey", lw=0.7, ls=":")  # the usual healthy order of magnitude
    axes[0].legend(fontsize=7, frameon=False, ncol=1 + len(keep) // 8)
    return fig
