"""``Trial`` (one remedy trained on a copy, and its proof) and ``FixResult`` (the trials
ranked best first: a table when printed, one HTML file with the loss curves)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from .recipe import Env, OptimizerSpec, Recipe

#: columns of words (wrapped, never cut); how long a column stays as it narrows (88: score)
_WRAPPED = ("remedy", "problems", "other seed")
_KEEP = {"rank": 95, "remedy": 100, "problems": 90, "metric": 89, "accuracy": 80,
         "other seed": 45, "train loss": 40, "s": 20}  # fmt: skip

#: two outcomes closer than this (relative) are a tie, which goes to the healthier trial
TIE = 0.01
#: ... and so are two outcomes closer than this share of what the best gained over the baseline
GAIN_TIE = 0.05


@dataclass(frozen=True)
class Repeat:
    """The same trial trained again with another seed (another batch order and init draw)."""

    seed: int
    final_loss: float
    metric: float | None
    healthy: bool
    problems: tuple[str, ...]
    losses: list[float] = field(default_factory=list, repr=False)
    error: str | None = None


@dataclass
class Trial:
    """One trained trial. ``final_loss``: the held-out (else training) loss after the last step."""

    name: str
    code: str
    losses: list[float]
    final_loss: float
    metric: float | None
    findings: list
    healthy: bool
    seconds: float
    recipe: Recipe = field(default_factory=Recipe, repr=False)
    symptoms: list = field(default_factory=list)
    accuracy: float | None = None
    grad_norms: list[float] = field(default_factory=list, repr=False)
    error: str | None = None
    optimizer_spec: OptimizerSpec | None = field(default=None, repr=False)
    batch: Any = field(default=None, repr=False)  # the inputs LSUV used
    seed: int = 0
    run_path: str | None = None
    keep: Any = field(default=None, repr=False, compare=False)  # holds the runs' folder
    repeats: list[Repeat] = field(default_factory=list)  # confirmations on other seeds

    @property
    def is_baseline(self) -> bool:
        return not self.recipe.changes

    def apply(self, model: nn.Module) -> nn.Module:
        """Change ``model`` as the model lines of :attr:`code` do; returns the model to use
        (a new object when layers were inserted). Training changes (optimizer, clipping,
        warm-up) are in :meth:`make_optimizer`, :attr:`max_norm` and :attr:`warmup`."""
        return self.recipe.apply(model, Env(self.batch, self.seed))

    def make_optimizer(self, params):
        """The optimizer this trial trained with, on ``params``."""
        assert self.optimizer_spec is not None
        return self.optimizer_spec.build(params)

    @property
    def max_norm(self) -> float | None:
        return self.recipe.loop().get("max_norm")

    @property
    def warmup(self) -> int | None:
        return self.recipe.loop().get("warmup")

    @property
    def train_loss(self) -> float:
        """Mean training loss over the last tenth of the steps (NaN when it diverged)."""
        if not self.losses:
            return math.nan
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return float(np.mean(tail))

    @property
    def run(self):
        """The trial's watched run (loaded from its file)."""
        from ..run import Run

        if self.run_path is None:
            raise ValueError(f"trial {self.name!r} kept no run file")
        return Run.load(self.run_path)

    @property
    def problems(self) -> list[str]:
        """Kinds of its warnings and errors, from the layers and the loss curve (on every
        seed it was trained with)."""
        kinds = [f.kind for f in self.findings if f.severity in ("warning", "error")]
        kinds += [s.kind for s in self.symptoms if s.severity in ("warning", "error")]
        kinds += [k for r in self.repeats for k in r.problems]
        return list(dict.fromkeys(kinds))

    @property
    def confirmed(self) -> bool:
        return bool(self.repeats)

    def outcome(self, higher: bool) -> float:
        """What the ranking sorts by (lower is better): the held-out loss, or minus the
        metric; the worst over the seeds it was trained with; inf when it failed."""
        worst = -math.inf
        runs = [(self.error, self.metric, self.final_loss)]
        runs += [(r.error, r.metric, r.final_loss) for r in self.repeats]
        for error, metric, loss in runs:
            value = metric if higher else loss
            if error or value is None or not math.isfinite(value):
                return math.inf
            worst = max(worst, -value if higher else value)
        return worst

    def add_repeat(self, repeat: Repeat) -> None:
        self.repeats.append(repeat)
        self.healthy = self.healthy and repeat.healthy

    def health_key(self) -> tuple[int, int]:
        errors = sum(f.severity == "error" for f in [*self.findings, *self.symptoms])
        return (errors, len(self.problems))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "final_loss": _finite(self.final_loss),
            "train_loss": _finite(self.train_loss),
            "metric": self.metric,
            "accuracy": self.accuracy,
            "healthy": self.healthy,
            "seconds": self.seconds,
            "error": self.error,
            "changes": [c.label for c in self.recipe.changes],
            "findings": [f.to_dict() for f in self.findings],
            "symptoms": [s.to_dict() for s in self.symptoms],
            "losses": [_finite(v) for v in self.losses],
            "repeats": [
                {
                    "seed": r.seed,
                    "final_loss": _finite(r.final_loss),
                    "metric": r.metric,
                    "healthy": r.healthy,
                    "problems": list(r.problems),
                    "error": r.error,
                }
                for r in self.repeats
            ],
        }


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _other(r: Repeat, higher: bool) -> str:
    value = r.metric if higher else r.final_loss
    return "failed" if r.error else "" if value is None else f"{value:.4g}"


def better(a: Trial, b: Trial, higher: bool) -> bool:
    """``a`` beats ``b`` by more than a tie."""
    x, y = a.outcome(higher), b.outcome(higher)
    if math.isinf(x):
        return False
    if math.isinf(y):
        return True
    return x < y - TIE * max(abs(x), abs(y))


def rank(trials: list[Trial], higher: bool) -> list[Trial]:
    """Best outcome first; trials tied with a group's leader are ordered by health (fewer
    errors, then fewer problems), then fewer changes, then outcome. A tie: within
    :data:`TIE` (relative) of the leader, or within :data:`GAIN_TIE` of what the best trial
    gained over the baseline (a difference small beside the repair itself: then the healthier
    remedy is the one to trust on another batch order)."""
    ordered = sorted(trials, key=lambda t: (t.outcome(higher), len(t.recipe.changes)))
    base = [t.outcome(higher) for t in trials if t.is_baseline]
    best = ordered[0].outcome(higher) if ordered else math.inf
    gain = base[0] - best if base and math.isfinite(base[0]) and math.isfinite(best) else 0.0
    out: list[Trial] = []
    while ordered:
        lead = ordered[0].outcome(higher)
        if math.isinf(lead):
            out.extend(ordered)
            break
        band = max(TIE * abs(lead), GAIN_TIE * gain)
        tied = [t for t in ordered if t.outcome(higher) - lead <= band]
        tied.sort(key=lambda t: (t.health_key(), len(t.recipe.changes), t.outcome(higher)))
        out.append(tied[0])
        ordered.remove(tied[0])
    return out


class FixResult:
    """The trials ranked best first (``.trials``, the baseline among them), ``.best``,
    ``.baseline``; ``.not_tried`` lists what a budget left out, ``.notes`` what could not be
    offered and why."""

    def __init__(
        self,
        trials: list[Trial],
        baseline: Trial,
        *,
        higher: bool,
        not_tried: list[str],
        notes: list[str],
        seconds: float,
        budget_s: float | None,
        scored_on: str,
    ) -> None:
        self.trials = rank(trials, higher)
        self.baseline = baseline
        self.higher = higher
        self.not_tried = not_tried
        self.notes = notes
        self.seconds = seconds
        self.budget_s = budget_s
        self.scored_on = scored_on

    @property
    def best(self) -> Trial:
        return self.trials[0]

    @property
    def improved(self) -> bool:
        """The best trial is a remedy and beats the baseline by more than a tie."""
        return not self.best.is_baseline and better(self.best, self.baseline, self.higher)

    @property
    def exit_code(self) -> int:
        """0: the best trial is healthy and better than the baseline; 1: no remedy helps."""
        return 0 if self.improved and self.best.healthy else 1

    def sentence(self) -> str:
        b, base = self.best, self.baseline
        what = "metric" if self.higher else f"{self.scored_on} loss"

        def value(t: Trial) -> str:
            v = t.metric if self.higher else t.final_loss
            return "failed" if t.error else f"{v:.4g}" if v is not None else "-"

        if not self.improved:
            return (
                f"No remedy beat the model as given ({what} {value(base)}) by more than "
                f"{TIE:.0%} over {len(self.trials) - 1} trial(s)."
            )
        state = "healthy" if b.healthy else f"not healthy yet ({', '.join(b.problems)})"
        seeds = f", confirmed on {1 + len(b.repeats)} seeds" if b.repeats else ""
        return (
            f"Best: {b.name}: {what} {value(b)} against {value(base)} as given, "
            f"after {len(b.losses)} steps{seeds}; {state}."
        )

    def columns(self) -> list[str]:
        cols = ["rank", "remedy", f"{self.scored_on} loss"]
        if any(t.repeats for t in self.trials):
            cols.append("other seed")
        if self.higher:
            cols.append("metric")
        if any(t.accuracy is not None for t in self.trials):
            cols.append("accuracy")
        return [*cols, "train loss", "problems", "s"]

    def rows(self) -> list[list[str]]:
        acc = any(t.accuracy is not None for t in self.trials)
        out = []
        for i, t in enumerate(self.trials, 1):
            row = [str(i), t.name + (" ◀ as given" if t.is_baseline else "")]
            row.append("failed" if t.error else f"{t.final_loss:.4g}")
            if any(u.repeats for u in self.trials):
                row.append(", ".join(_other(r, self.higher) for r in t.repeats))
            if self.higher:
                row.append("" if t.metric is None else f"{t.metric:.4g}")
            if acc:
                row.append("" if t.accuracy is None else f"{t.accuracy:.1f} %")
            row.append(f"{t.train_loss:.4g}")
            row.append(t.error or ", ".join(t.problems) or "healthy")
            row.append(f"{t.seconds:.1f}")
            out.append(row)
        return out

    def table(self):
        """The trials as a table that fits the console it is printed on: numbers whole, the
        remedy and the problems wrapped onto more lines, never cut; where even that does
        not fit, the least important columns are left out and the caption names them
        (:class:`gradprobe.report.tables.FitTable`)."""
        from ..report.tables import Col, FitTable

        specs = []
        for c in self.columns():
            kind = "wrap" if c in _WRAPPED else "number"
            specs.append(Col(c, kind, _KEEP.get(c, 88), "left" if kind == "wrap" else "right"))
        title = f"gp.fix: {len(self.trials)} trials, best first"
        return FitTable(specs, self.rows(), title=title, title_justify="left")

    def __rich__(self):
        from rich.console import Group
        from rich.text import Text

        parts: list[Any] = [self.table(), Text(self.sentence())]
        if self.improved:
            parts += [Text("apply the best:", style="bold"), Text(self.best.code, style="bold")]
        if self.not_tried:
            parts.append(Text(f"not tried ({self._budget_words()}): {'; '.join(self.not_tried)}"))
        parts += [Text(n, style="italic") for n in self.notes]
        return Group(*parts)

    def _budget_words(self) -> str:
        return f"budget of {self.budget_s:g} s spent" if self.budget_s is not None else "stopped"

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=120, highlight=False, color_system=None).print(self)
        return buf.getvalue()

    def __repr__(self) -> str:
        best, n = self.best.name, len(self.trials)
        return f"FixResult(best={best!r}, trials={n}, improved={self.improved})"

    def to_dict(self) -> dict[str, Any]:
        """What ``gradprobe fix --json`` prints."""
        return {
            "improved": self.improved,
            "best": self.best.to_dict(),
            "baseline": self.baseline.name,
            "scored_on": self.scored_on,
            "trials": [t.to_dict() for t in self.trials],
            "not_tried": list(self.not_tried),
            "notes": list(self.notes),
            "seconds": self.seconds,
        }

    def save_html(self, path) -> object:
        """One self-contained HTML file: the ranking, every trial's loss curve beside the
        baseline's, each trial's findings and code, and the baseline run's full report."""
        from ..report.fix import curves_figure, write_fix_html
        from ..report.html import render_html

        curves = [(t.name, t.losses) for t in self.trials]
        fig = curves_figure(curves, self.baseline.losses, best=0)
        baseline_html = ""
        if self.baseline.run_path is not None:
            run = self.baseline.run
            baseline_html = render_html(
                run,
                self.baseline.findings,
                title="the baseline as given: its watched training run",
                fragment=True,
                figures=["profile", "grad_heatmap"],
            )
        trials = [
            {
                "name": t.name,
                "summary": t.error or ", ".join(t.problems) or "healthy",
                "code": t.code,
                "findings": [
                    {
                        "severity": f.severity,
                        "kind": f.kind,
                        "where": getattr(f, "layer", None),
                        "message": f.message,
                    }
                    for f in [*t.findings, *t.symptoms]
                ],
            }
            for t in self.trials
        ]
        word = "healthy" if self.exit_code == 0 else ("warnings" if self.improved else "errors")
        return write_fix_html(
            path,
            title="gradprobe fix: remedies trained on copies",
            word=word,
            sentence=self.sentence(),
            code=self.best.code if self.improved else None,
            columns=self.columns(),
            rows=self.rows(),
            figures=[("fix-curves", "loss curves side by side", fig)],
            trials=trials,
            not_tried=self.not_tried,
            notes=self.notes,
            baseline_html=baseline_html,
        )
