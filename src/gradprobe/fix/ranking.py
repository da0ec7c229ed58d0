"""Remedies applied and re-checked: re-initialise a copy of the model with each candidate
scheme, check it again, and rank the schemes by a health score.

Health score (lower is better, 0 is perfect):

    score = |log10(g_lowest / g_output)| + 2 · max saturated fraction
            + 2 · max dead fraction + 100 · [any NaN/Inf]

where g is the rms of the back-propagated gradient at a weight layer (the Glorot ratio
of the depth profile; 0 when the model has fewer than 3 weight layers), averaged over
``seeds`` draws of the init (one draw's score carries finite-width noise: on a 30-layer
ReLU net of width 64 Kaiming's ratio varied from 0.5 to 0.8 between seeds). Every scheme
is applied with ``nonlinearity="auto"``, so Xavier carries the activation's gain (√2
before a ReLU, where on square layers it equals Kaiming). The user's model is never
modified: every candidate runs on a deep copy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..diagnose import Context, Finding, Thresholds, diagnose
from ..errors import GradprobeError
from ..init import apply
from ..probe import record_step

CANDIDATES = (
    "as given",
    "kaiming_normal",
    "xavier_normal",
    "lecun_normal",
    "orthogonal",
    "lsuv",
    "standard",
    "default",
)


@dataclass
class Candidate:
    scheme: str
    score: float  # mean over seeds
    spread: float  # max - min over seeds
    ratio: float | None
    saturated: float
    dead: float
    non_finite: bool
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None

    @property
    def code(self) -> str:
        if self.scheme == "as given":
            return "# keep the model's current weights"
        if self.scheme == "lsuv":
            return "gp.init.apply(model, 'lsuv', data=batch)"
        return f"gp.init.apply(model, {self.scheme!r})"


@dataclass
class Ranking:
    """Candidates best first; ``best.code`` is the one line that applies the winner."""

    candidates: list[Candidate]

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def __rich__(self):
        from rich.table import Table

        t = Table(title="init schemes re-checked on a copy (lower score is healthier)")
        for c in ("rank", "scheme", "score", "±", "grad ratio", "max sat", "max dead", "findings"):
            t.add_column(c, justify="left" if c in ("scheme", "findings") else "right")
        for i, c in enumerate(self.candidates, 1):
            kinds = ", ".join(sorted({f.kind for f in c.findings if f.severity != "info"}))
            t.add_row(
                str(i),
                c.scheme,
                "failed" if c.error else f"{c.score:.3g}",
                "" if c.error else f"{c.spread / 2:.2g}",
                "" if c.ratio is None else f"{c.ratio:.3g}",
                f"{c.saturated:.0%}",
                f"{c.dead:.0%}",
                c.error or kinds or "healthy",
            )
        return t

    def __str__(self) -> str:
        lines = [f"{i}. {c.scheme}: score {c.score:.3g}" for i, c in enumerate(self.candidates, 1)]
        return "\n".join([*lines, f"apply the best: {self.best.code}"])


def score(run, thresholds: Thresholds | None = None) -> tuple[float, dict]:
    """The health score of a checked run (see module docstring) and its parts."""
    ctx = Context(run, thresholds or Thresholds())
    profile = ctx.gradient_profile(len(ctx.steps) - 1) if ctx.steps else None
    ratio = None if profile is None else profile.ratio
    sat_layers = [m.name for m in ctx.modules if (m.activation or "").startswith("saturating")]
    dead_layers = [m.name for m in ctx.modules if m.activation == "relu"]
    sat = ctx.matrix("activation", "saturated", sat_layers)
    dead = ctx.matrix("activation", "dead", dead_layers)
    parts = {
        "ratio": ratio,
        "saturated": float(np.nanmax(sat)) if sat.size and np.isfinite(sat).any() else 0.0,
        "dead": float(np.nanmax(dead)) if dead.size and np.isfinite(dead).any() else 0.0,
        "non_finite": bool(run.events()),
    }
    total = 0.0 if ratio is None else abs(math.log10(ratio))
    total += 2 * parts["saturated"] + 2 * parts["dead"] + 100 * parts["non_finite"]
    return total, parts


def try_remedies(
    model: nn.Module,
    inputs,
    target=None,
    loss_fn=None,
    schemes=CANDIDATES,
    seeds: int = 3,
    thresholds: Thresholds | None = None,
) -> Ranking:
    """Check copies of ``model`` re-initialised with each scheme; rank them, best first.

    The findings and numbers shown for a scheme are those of its first seed.
    """
    out = []
    for scheme in schemes:
        totals, first = [], None
        try:
            for seed in range(1 if scheme == "as given" else seeds):
                trial = copy.deepcopy(model)
                if scheme != "as given":
                    options = {"data": inputs} if scheme == "lsuv" else {}
                    apply(trial, scheme, generator=torch.Generator().manual_seed(seed), **options)
                run = record_step(trial, inputs, target, loss_fn, histograms=False).run
                total, parts = score(run, thresholds)
                totals.append(total)
                if first is None:
                    first = (parts, diagnose(run, thresholds))
        except GradprobeError as err:
            out.append(Candidate(scheme, math.inf, 0.0, None, 0.0, 0.0, False, error=str(err)))
            continue
        parts, findings = first
        out.append(
            Candidate(
                scheme,
                float(np.mean(totals)),
                float(np.ptp(totals)),
                parts["ratio"],
                parts["saturated"],
                parts["dead"],
                parts["non_finite"],
                findings,
            )
        )
    out.sort(key=lambda c: c.score)
    return Ranking(out)
