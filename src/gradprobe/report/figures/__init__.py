"""Figures from a stored run (matplotlib, imported lazily; each returns a Figure).

Every figure takes a :class:`~gradprobe.Run` or a run path, reads stored numbers only, and
raises :class:`MissingData` (a GradprobeError saying how to record what is missing) when
the run lacks them. :func:`run_figures` draws all that a run supports, with a note for the
rest: that is what ``gradprobe report --png`` and the HTML report use.

>>> fig = histograms_figure([run_standard, run_normalised], "grad_output")  # doctest: +SKIP
>>> save(fig, "glorot.png")                                                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...run import Run
from ._base import MissingData, as_run, save
from .histograms import histograms_figure
from .profile import attach_theory, profile_figure, profiles_figure
from .recurrent import recurrent_figure
from .theory import phase_diagram_figure, theory_points
from .timeline import timeline_figure
from .training import heatmap_figure, training_lines_figure

__all__ = [
    "FIGURES",
    "FigureSpec",
    "MissingData",
    "attach_theory",
    "heatmap_figure",
    "histograms_figure",
    "phase_diagram_figure",
    "profile_figure",
    "profiles_figure",
    "recurrent_figure",
    "run_figures",
    "save",
    "timeline_figure",
    "training_lines_figure",
]


@dataclass(frozen=True)
class FigureSpec:
    """A figure of one run: ``name`` (file stem), what it shows, how to draw it, what it
    needs, and ``applies``: whether it can apply to the run at all. A figure that cannot (a
    figure over training for a one-step check, the recurrent figure for a model without
    recurrent layers) is left out without a note; one that could but lacks data gets a note
    saying how to record it."""

    name: str
    title: str
    draw: Callable[[Run], object]
    needs: str
    applies: Callable[[Run], bool] = lambda run: True


def _several_steps(run: Run) -> bool:
    return len(run.steps) > 1


RECURRENT_TYPES = ("RNN", "LSTM", "GRU")


def _recurrent(run: Run) -> bool:
    return any(la.module_type in RECURRENT_TYPES for la in run.layers())


def _phase(run: Run):
    points = theory_points(run)
    rows = run.meta.get("theory") or []
    acts = [r.get("activation") for r in rows[:-1] if r.get("activation") not in (None, "linear")]
    if not points or not acts:
        raise MissingData(
            "no mean-field prediction stored with the run (gp.report.figures.attach_theory)"
        )
    return phase_diagram_figure(acts[0], points)


def _loss_recorded(run: Run) -> bool:
    """The loss was passed to the probe on two or more steps (a one-step check has none)."""
    if ("loss", "value") not in set(run.quantities()):
        return False
    return len(run.matrix("loss", "value", role=None)[1]) > 1


FIGURES: list[FigureSpec] = [
    FigureSpec(
        "timeline",
        "Timeline: the loss and the onset of each finding",
        timeline_figure,
        "the loss on two or more steps (probe.step(loss=loss))",
        _loss_recorded,
    ),
    FigureSpec(
        "profile",
        "Per-layer profile against depth",
        profile_figure,
        "activation and gradient std (any watched backward)",
    ),
    FigureSpec(
        "grad_histograms",
        "Back-propagated gradients, layer by layer",
        lambda r: histograms_figure(r, "grad_output"),
        "histograms=True",
    ),
    FigureSpec(
        "activation_histograms",
        "Activations, layer by layer",
        lambda r: histograms_figure(r, "activation"),
        "histograms=True",
    ),
    FigureSpec(
        "grad_heatmap",
        "Gradient norm per layer over training",
        heatmap_figure,
        "two or more logged steps",
        _several_steps,
    ),
    FigureSpec(
        "training_lines",
        "Gradient norm and update ratio per weight",
        training_lines_figure,
        "two or more logged steps with updates",
        _several_steps,
    ),
    FigureSpec(
        "recurrent", "Gradient through time", recurrent_figure, "an nn.RNN / LSTM / GRU", _recurrent
    ),
    FigureSpec(
        "phase_diagram",
        "Theory: phase diagram and trainability",
        _phase,
        "a stored mean-field prediction",
    ),
]


def run_figures(run: Run | str | Path, only: list[str] | None = None):
    """Draw every figure the run supports: ``(figures, notes)`` where ``figures`` is a list
    of ``(spec, Figure)`` and ``notes`` a list of ``(spec, why it was skipped)``; figures that
    cannot apply to the run (``spec.applies``) are left out of both."""
    run = as_run(run)
    figures, notes = [], []
    for spec in FIGURES:
        if only is not None and spec.name not in only:
            continue
        if not spec.applies(run):
            continue
        try:
            figures.append((spec, spec.draw(run)))
        except MissingData as missing:
            notes.append((spec, str(missing)))
    return figures, notes
