"""Symptoms in a trial's loss curve: what AUTOTRAINER (Zhang et al., ICSE 2021) watches for.

The per-step training losses of one trial are read in windows of ``w = max(1, n // 10)``
steps; ``first`` and ``last`` are the mean loss of the first and last window, ``ref`` the
loss of the best constant prediction (the class prior's entropy for cross-entropy, the
targets' variance for MSE; None for a loss of the user's own).

* ``diverging``: a non-finite loss, or ``last > 1.5 · first``.
* ``not_learning``: ``last ≥ 0.8 · min(first, ref)``, i.e. less than 20 % below the
  constant prediction (or below the start when there is no ``ref``): what a model reaches
  by learning the class prior alone, or by barely moving.
* ``oscillating``: over the second half, the mean |loss_t − loss_{t−1}| exceeds
  ``0.25 · scale`` (``scale`` = ``ref``, else ``first``) while the loss is no longer falling
  by more than that: the optimiser jumps across the valley instead of descending it.
* ``slow_convergence``: learning, but ``last > 0.5 · scale`` and the last quarter is still
  more than 5 % below the third: it would need many more steps.

* ``initial_loss``: the first step's loss above ``3 · ref``: the outputs start far too
  large (Karpathy 2019, "A recipe for training neural networks": a classifier should start
  near −log(1/C), the constant prediction's loss); the init's scale is the cause. Only a
  note (severity info) when training then went well: unscaled inputs start high too, and
  Adam copes.

These guide which remedies are tried (they are permissive on purpose: the training of each
candidate decides); a trial with a symptom is not healthy. When the diagnosis itself reads
the loss (``not_learning``, ``diverging``, ``oscillating`` findings), both are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

KINDS = ("diverging", "not_learning", "oscillating", "slow_convergence", "initial_loss")


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


def loss_symptoms(losses: list[float], ref: float | None = None) -> list[Symptom]:
    """The symptoms of one loss curve (see module docstring)."""
    values = np.asarray(losses, dtype=float)
    n = values.size
    if n == 0:
        return []
    bad = np.nonzero(~np.isfinite(values))[0]
    if bad.size:
        return [
            Symptom(
                "diverging",
                int(bad[0]),
                {"non_finite_at_step": int(bad[0])},
                f"the loss became {values[bad[0]]} at step {int(bad[0])}",
                "error",
            )
        ]
    if n < 8:
        return []
    w = max(1, n // 10)
    first, last = float(values[:w].mean()), float(values[-w:].mean())
    scale = ref if ref is not None and math.isfinite(ref) and ref > 0 else first
    ev = {"first_window": first, "last_window": last, "reference": ref, "window": w}
    if last > 1.5 * first:
        step = int(np.argmax(values > 1.5 * first))
        return [Symptom("diverging", step, ev, f"the loss rose from {first:.3g} to {last:.3g}")]
    out = []
    if ref is not None and math.isfinite(ref) and ref > 0 and values[0] > 3 * ref:
        out.append(
            Symptom(
                "initial_loss",
                0,
                {"initial_loss": float(values[0]), "reference": ref, "ratio": values[0] / ref},
                f"the loss starts at {values[0]:.3g}, {values[0] / ref:.3g}× the constant "
                f"prediction's {ref:.3g}: the outputs start far too large",
            )
        )
    floor = min(first, ref) if ref is not None and math.isfinite(ref) else first
    if last >= 0.8 * floor:
        what = "the constant prediction's" if ref is not None else "its starting"
        out.append(
            Symptom(
                "not_learning",
                0,
                ev,
                f"after {n} steps the loss is {last:.3g}, not 20 % below {what} {floor:.3g}",
            )
        )
    half = values[n // 2 :]
    jump = float(np.abs(np.diff(half)).mean()) if half.size > 1 else 0.0
    fall = float(half[: max(1, half.size // 4)].mean() - half[-max(1, half.size // 4) :].mean())
    if jump > 0.25 * scale and fall < jump:
        out.append(
            Symptom(
                "oscillating",
                n // 2,
                {**ev, "mean_abs_step_change": jump, "fall_over_second_half": fall},
                f"the loss jumps by {jump:.3g} per step on average over the second half "
                f"(> 0.25 × {scale:.3g}) without going down",
            )
        )
    q = max(1, n // 4)
    third, fourth = float(values[-2 * q : -q].mean()), float(values[-q:].mean())
    learning = not any(x.kind in ("not_learning", "oscillating") for x in out)
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
    if len(out) == 1 and out[0].kind == "initial_loss":  # and then it trained well
        out[0] = replace(out[0], severity="info")
    return out
