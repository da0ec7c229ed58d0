"""Per-layer profile at one step: activation std and gradient size against depth (log axis).

Where the run holds a mean-field prediction (``run.meta["theory"]``, the rows of
``gp.theory.predict(model).to_rows()``; :func:`attach_theory` stores it), the prediction is
drawn as a band: √q for the affine layers' outputs, and the gradient's std scaled from the
last layer by √(E[δ²]/E[δ_L²]), within a factor of 2 either way (finite-width drift).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...run import Run
from ._base import MissingData, as_run, figure, pick_step, short_names

BAND = 2.0  # the band spans prediction / BAND .. prediction * BAND


def attach_theory(run: Run, model) -> bool:
    """Store ``gp.theory.predict(model)`` in a writable run's meta; False where theory refuses
    the model (it is not a plain stack), so figures draw no band."""
    from ...theory import attach

    return attach(run, model)


def theory_rows(run: Run) -> dict[str, dict]:
    rows = run.meta.get("theory") or []
    return {r["name"]: r for r in rows if isinstance(r, dict) and "name" in r}


def _column(run: Run, quantity: str, stat: str, step: int) -> dict[str, float]:
    """Module name -> its value at ``step``, for the modules that recorded one (a value
    recorded as NaN is NaN here; one never recorded is absent)."""
    modules = {la.name for la in run.layers()}
    return {
        layer: float(v)
        for _, layer, q, s, v in run.rows(step)
        if q == quantity and s == stat and layer in modules
    }


def _edges(ax, x, y, color, labels: bool = True) -> None:
    """What a log axis cannot show, on its edges: exact zeros at the bottom (▼), NaN/Inf at
    the top (✕), so a broken layer is never just a gap in the line."""
    zero = np.isfinite(y) & (y <= 0)
    bad = ~np.isfinite(y)
    for mask, at, marker, words in ((zero, 0.02, "v", "exactly 0"), (bad, 0.98, "X", "NaN/Inf")):
        if mask.any():
            ax.plot(
                x[mask],
                np.full(mask.sum(), at),
                marker,
                color=color,
                ms=7,
                ls="none",
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                label=words if labels else None,
            )


def profile_figure(run: Run | str | Path, step: int | None = None):
    """Two panels against depth at ``step`` (default: the last): activation std, and
    ∂L/∂output std; log y axis. Needs activation/std and grad_output/std (any watch)."""
    run = as_run(run)
    step = pick_step(run, step)
    act = _column(run, "activation", "std", step)
    grad = _column(run, "grad_output", "std", step)
    if not act and not grad:
        raise MissingData(f"no activation or gradient std at step {step}; watch a backward pass")
    order = [la.name for la in run.layers() if la.name in act or la.name in grad]
    theory = theory_rows(run)
    fig = figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2, sharex=True)
    x = np.arange(len(order))
    for ax, values, what in ((axes[0], act, "activation std"), (axes[1], grad, "∂L/∂output std")):
        y = np.array([values.get(n, math.nan) for n in order])
        ok = np.isfinite(y) & (y > 0)
        ax.plot(x[ok], y[ok], "o-", color="C0", ms=4, lw=1.5, label="measured")
        recorded = np.array([n in values for n in order], dtype=bool)
        _edges(ax, x[recorded], y[recorded], "C3")
        ax.set_yscale("log")
        ax.set_ylabel(what + " (log)")
        ax.set_title(f"{what} by depth, step {step}", fontsize=10, loc="left")
    if theory:
        _bands(axes, order, act, grad, theory)
    for ax in axes:
        ax.set_xticks(x, short_names(order, 10), rotation=60, fontsize=7)
        ax.set_xlabel("layer (input → output)")
        ax.legend(fontsize=7, frameon=False)
    return fig


def _bands(axes, order, act, grad, theory) -> None:
    idx = {n: i for i, n in enumerate(order)}
    rows = [r for n, r in theory.items() if n in idx]
    if not rows:
        return
    xs = np.array([idx[r["name"]] for r in rows])
    q = np.array([r["q"] if r["q"] is not None else math.nan for r in rows], float)
    _band(axes[0], xs, np.sqrt(q), "theory √q (×/÷ 2)")
    last = rows[-1]["name"]
    g_last = grad.get(last, math.nan)
    gv = np.array([r["grad_var"] if r["grad_var"] is not None else math.nan for r in rows])
    if math.isfinite(g_last) and g_last > 0:
        _band(axes[1], xs, g_last * np.sqrt(gv), "theory, from the last layer (×/÷ 2)")


def _band(ax, xs, centre, label) -> None:
    ok = np.isfinite(centre) & (centre > 0)
    if ok.sum() == 0:
        return
    ax.fill_between(
        xs[ok], centre[ok] / BAND, centre[ok] * BAND, color="C1", alpha=0.25, lw=0, label=label
    )
    ax.plot(xs[ok], centre[ok], color="C1", lw=1, ls="--")


def profiles_figure(
    runs, labels, quantity: str = "grad_output", stat: str = "std", step: int | None = None
):
    """Several runs on one log axis: ``quantity``/``stat`` of each affine layer against
    depth (layer 1 = nearest the input), one line per run; ``step`` default: each run's first
    logged step (the network as initialised)."""
    from ._base import AFFINE_TYPES

    runs = [as_run(r) for r in runs]
    labels = list(labels)
    if not runs or len(labels) != len(runs):
        raise MissingData("profiles_figure needs runs and one label per run")
    fig = figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        s = run.steps[0] if step is None and run.steps else pick_step(run, step)
        values = _column(run, quantity, stat, s)
        affine = {la.name for la in run.layers() if la.module_type in AFFINE_TYPES}
        names = [la.name for la in run.layers() if la.name in values and la.name in affine]
        if not names:
            raise MissingData(f"run {label!r} has no {quantity}/{stat} of affine layers")
        y = np.array([values[n] for n in names])
        x = np.arange(1, len(y) + 1)
        ok = np.isfinite(y) & (y > 0)
        ax.plot(x[ok], y[ok], "o-", ms=3, lw=1.5, color=f"C{i}", label=label)
        _edges(ax, x, y, f"C{i}", labels=False)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = nearest the input)")
    what = {"grad_output": "∂L/∂(layer output)", "activation": "activation"}.get(quantity, quantity)
    ax.set_ylabel(f"{stat} of {what} (log)")
    ax.set_title(f"{stat} of {what} by depth, as initialised", fontsize=10, loc="left")
    ax.legend(fontsize=8, frameon=False)
    return fig
