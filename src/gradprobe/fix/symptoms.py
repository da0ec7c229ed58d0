"""Symptoms in a trial's loss curve: the diagnosis's judgement of the loss, and what only
gp.fix can add to it.

The loss itself is judged by the diagnosis, as it judges any run
(:mod:`gradprobe.diagnose.rules.loss`: ``diverging`` — a NaN/Inf loss included —,
``not_learning`` against the start, ``stalled``, ``oscillating``, ``loss_spike``, each with
its step range): a trial passes its loss to the probe, so those are among the trial's
findings (layer ``"(loss)"``). gp.fix knows one thing the diagnosis does not: ``ref``, the
loss of the best constant prediction (the class prior's entropy for cross-entropy, the
targets' variance for MSE; None for a loss of the user's own). Read in windows of
``w = max(1, n // 10)`` steps (``first``, ``last``: the mean loss of the first and last
window), it adds, as AUTOTRAINER (Zhang et al., ICSE 2021) watches for:

* ``not_learning`` (against the prior): ``last ≥ 0.8 · min(first, ref)``, i.e. less than
  20 % below the constant prediction: what a model reaches by learning the class prior
  alone, which the diagnosis, blind to the prior, calls progress.
* ``slow_convergence``: learning (no ``not_learning``, ``oscillating``, ``stalled`` or
  ``diverging`` said), but ``last > 0.5 · scale`` (``scale`` = ``ref``, else ``first``) and
  the last quarter is still more than 5 % below the third: it would need many more steps.
* ``initial_loss``: the first step's loss above ``3 · ref``: the outputs start far too
  large (Karpathy 2019, "A recipe for training neural networks": a classifier should start
  near −log(1/C), the constant prediction's loss); the init's scale is the cause. Only a
  note (severity info) when training then went well: unscaled inputs start high too, and
  Adam copes.

* ``diverging``, only when the loss became NaN/Inf and the diagnosis said nothing of it
  (neither ``diverging`` nor ``non_finite``): a trial stops at its first non-finite loss,
  and a loss that is NaN from the first step leaves no curve to judge and, on a trial's
  cheap probe (``first_nonfinite=False``), no event either.

Without ``ref`` only ``slow_convergence`` (and that ``diverging``) is added. These guide
which remedies are tried (they are permissive on purpose: the training of each candidate
decides); a trial with a symptom or a warning/error finding is not healthy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..diagnose import Finding, Thresholds
from ..diagnose.rules.loss import judge
from ..diagnose.series import Series

KINDS = ("not_learning", "slow_convergence", "initial_loss")
LOSS = "(loss)"  # the layer of the diagnosis's findings on the loss curve
#: the diagnosis's loss findings after which a curve is not "learning, slowly"
_NOT_LEARNING = ("diverging", "not_learning", "oscillating", "stalled")


@dataclass(frozen=True)
class Symptom:
    """A problem seen in the loss curve: ``kind``, the first ``step`` it shows, the numbers."""

    kind: str
    step: int
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    severity: str = "warning"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.kind} (loss curve): {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step": self.step,
            "severity": self.severity,
            "message": self.message,
            "evidence": dict(self.evidence),
        }


def judge_losses(losses: Iterable[float], thresholds: Thresholds | None = None) -> list[Finding]:
    """The diagnosis's findings on a loss curve alone (one value per step from step 0):
    :func:`gradprobe.diagnose.rules.loss.judge`, what the loss rule says of a run."""
    values = np.asarray(list(losses), dtype=float)
    return judge(Series(np.arange(values.size), values), thresholds)


def loss_symptoms(
    losses: list[float], ref: float | None = None, judged: Iterable | None = None
) -> list[Symptom]:
    """What gp.fix adds to the diagnosis of one loss curve (see the module docstring).

    ``judged``: the diagnosis's findings of the trial's run (its ``"(loss)"`` ones are read);
    None: judged here from ``losses`` alone (:func:`judge_losses`)."""
    values = np.asarray(losses, dtype=float)
    n = values.size
    if judged is None:
        judged = judge_losses(values)
    judged = list(judged)
    bad = np.nonzero(~np.isfinite(values))[0]
    if bad.size:  # a NaN/Inf loss: the diagnosis's diverging, or its non_finite in a layer
        if any(f.kind in ("diverging", "non_finite") for f in judged):
            return []
        k = int(bad[0])  # e.g. NaN at the first step: no curve to judge, no event searched
        return [
            Symptom(
                "diverging",
                k,
                {"non_finite_at_step": k},
                f"the loss became {values[k]} at step {k}",
                "error",
            )
        ]
    if n < 8:
        return []
    loss_findings = [f for f in judged if getattr(f, "layer", None) == LOSS]
    said = {f.kind for f in loss_findings}
    serious = {f.kind for f in loss_findings if f.severity in ("warning", "error")}
    if "diverging" in said:  # rising: what the prior says adds nothing
        return []
    prior = float(ref) if ref is not None and math.isfinite(ref) and ref > 0 else None
    w = max(1, n // 10)
    first, last = float(values[:w].mean()), float(values[-w:].mean())
    scale = prior if prior is not None else first
    ev = {"first_window": first, "last_window": last, "reference": ref, "window": w}
    out = []
    if prior is not None and values[0] > 3 * prior:
        ratio = float(values[0]) / prior
        out.append(
            Symptom(
                "initial_loss",
                0,
                {"initial_loss": float(values[0]), "reference": prior, "ratio": ratio},
                f"the loss starts at {values[0]:.3g}, {ratio:.3g}× the constant "
                f"prediction's {prior:.3g}: the outputs start far too large",
            )
        )
    floor = min(first, prior) if prior is not None else first
    if prior is not None and last >= 0.8 * floor and "not_learning" not in said:
        out.append(
            Symptom(
                "not_learning",
                0,
                ev,
                f"after {n} steps the loss is {last:.3g}, not 20 % below the constant "
                f"prediction's {floor:.3g}",
            )
        )
    q = max(1, n // 4)
    third, fourth = float(values[-2 * q : -q].mean()), float(values[-q:].mean())
    learning = not (said & set(_NOT_LEARNING)) and not any(x.kind == "not_learning" for x in out)
    if learning and last > 0.5 * scale and fourth < 0.95 * third:
        out.append(
            Symptom(
                "slow_convergence",
                n - q,
                {**ev, "third_quarter": third, "fourth_quarter": fourth},
                f"the loss is still falling ({third:.3g} → {fourth:.3g} over the last two "
                f"quarters) but at {last:.3g} is more than half of {scale:.3g}",
            )
        )
    if len(out) == 1 and out[0].kind == "initial_loss" and not serious:  # then it trained well
        out[0] = replace(out[0], severity="info")
    return out
