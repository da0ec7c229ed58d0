"""What the remedies read to decide whether they fit: the baseline trial's findings and
loss-curve symptoms, an untrained copy of the model, the optimizer and the recorded norms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .options import OptimizerSpec

SERIOUS = ("warning", "error")


@dataclass
class Situation:
    """The baseline as the catalog sees it. ``notes`` collects why a remedy that could have
    fitted was not offered (e.g. functional activations, a model torch.fx cannot trace)."""

    findings: list  # gp.Finding of the baseline trial
    symptoms: list  # fix.symptoms.Symptom of the baseline's loss curve
    model: nn.Module  # an untrained copy: read it, or change a deep copy of it
    optimizer: OptimizerSpec
    grad_norms: list[float]
    losses: list[float]
    steps: int
    sample: Any = None
    seed: int = 0
    update_ratio: float | None = None  # median ‖Δw‖/‖w‖ of the weights over the logged steps
    gates: tuple[str, ...] = ()  # modules whose tanh/sigmoid output gates a tensor (run meta)
    notes: list[str] = field(default_factory=list)

    def _serious(self) -> list:
        return [f for f in [*self.findings, *self.symptoms] if f.severity in SERIOUS]

    @property
    def kinds(self) -> set[str]:
        """Kinds of every warning or error, from the layers and from the loss curve."""
        return {f.kind for f in self._serious()}

    def present(self, kinds) -> tuple[str, ...]:
        """Which of ``kinds`` the baseline shows (the reason a remedy fits), sorted."""
        return tuple(sorted(self.kinds & set(kinds)))

    def at_init(self, kinds) -> tuple[str, ...]:
        """Which of ``kinds`` were already there at the first logged step (the init)."""
        return tuple(
            sorted({f.kind for f in self._serious() if f.kind in kinds and _onset(f) == 0})
        )

    def during(self, kinds) -> tuple[str, ...]:
        """Which of ``kinds`` appeared only during training (after the first step)."""
        early = set(self.at_init(kinds))
        late = {f.kind for f in self._serious() if f.kind in kinds and (_onset(f) or 0) > 0}
        return tuple(sorted(late - early))

    def early(self, kinds, fraction: float) -> tuple[str, ...]:
        """Which of ``kinds`` set in within the first ``fraction`` of the steps."""
        limit = max(1, int(self.steps * fraction))
        found = {f.kind for f in self._serious() if f.kind in kinds and (_onset(f) or 0) < limit}
        return tuple(sorted(found))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _onset(finding) -> int | None:
    onset = getattr(finding, "onset", None)
    return onset if onset is not None else getattr(finding, "step", None)
