"""Recurrent layers: the size of ∂L/∂h_t (here ∂L/∂x_t, the gradient reaching each time
step's input) against t, on a log axis: vanishing through time is a falling line to the left."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...run import Run
from ._base import MissingData, as_run, figure, pick_step, short_names

SERIES = "rnn_grad_input_t"


def recurrent_layers(run: Run, step: int) -> list[str]:
    return [la.name for la in run.layers() if run.series(la.name, SERIES, step).size]


def recurrent_figure(run, step: int | None = None, labels=None):
    """One line per recurrent layer: ‖∂L/∂x_t‖ against t at ``step`` (log y). ``run``: a
    run, a path, or a list of them (``labels`` names each) to compare, e.g. RNN vs LSTM.
    Needs an nn.RNN/LSTM/GRU watched through a backward pass."""
    runs = [run] if isinstance(run, (Run, str, Path)) else list(run)
    labels = list(labels) if labels is not None else [""] * len(runs)
    lines = []
    for r, label in zip(runs, labels, strict=True):
        r = as_run(r)
        s = pick_step(r, step)
        lines += [(r, s, name, label) for name in recurrent_layers(r, s)]
    if not lines:
        raise MissingData(
            "no recurrent layer in this run: ∂L/∂h_t is recorded for nn.RNN, nn.LSTM and nn.GRU"
        )
    fig = figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    shown = short_names(name for _, _, name, _ in lines)
    for i, (run, step, name, label) in enumerate(lines):
        g = run.series(name, SERIES, step)
        t = np.arange(len(g))
        ok = np.isfinite(g) & (g > 0)
        ax.plot(t[ok], g[ok], "o-", ms=3, color=f"C{i}", label=label or shown[i])
        if (~ok).any():
            ax.plot(
                t[~ok],
                np.full((~ok).sum(), 0.02),
                "v",
                color=f"C{i}",
                transform=ax.get_xaxis_transform(),
                clip_on=False,
            )
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("‖∂L/∂x_t‖ (log)")
    ax.set_title("gradient reaching each time step", fontsize=10, loc="left")
    ax.legend(fontsize=8, frameon=False)
    return fig
