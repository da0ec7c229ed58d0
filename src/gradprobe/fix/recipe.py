"""What a trial changes: a :class:`Recipe` is the changes of one trial (none for the
baseline), applied in the catalog's fixed order; its ``code`` is the Python text a user runs
to do the same. Plain data (picklable): a trial ships to a worker process as its recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .catalog import REMEDIES
from .options import Change, Env, OptimizerSpec, adam

__all__ = ["Change", "Env", "OptimizerSpec", "Recipe", "adam"]


@dataclass(frozen=True)
class Recipe:
    """The changes of one trial; empty for the baseline."""

    changes: tuple[Change, ...] = ()
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return " + ".join(c.label for c in self.changes) or "baseline (as given)"

    @property
    def families(self) -> frozenset[str]:
        return frozenset(c.remedy for c in self.changes)

    def ordered(self) -> list[tuple[Any, Change]]:
        pairs = [(REMEDIES.get(c.remedy), c) for c in self.changes]
        return sorted(pairs, key=lambda rc: rc[0].order)

    def apply(self, model: nn.Module, env: Env) -> nn.Module:
        """The model changed as the model lines of :meth:`code` say."""
        for remedy, change in self.ordered():
            if remedy.target == "model":
                model = remedy.apply(model, change, env)
        return model

    def optimizer(self, spec: OptimizerSpec) -> OptimizerSpec:
        for remedy, change in self.ordered():
            spec = remedy.optimizer(spec, change)
        return spec

    def loop(self) -> dict[str, Any]:
        """Training-loop options: ``max_norm`` (clipping) and ``warmup`` (steps)."""
        out: dict[str, Any] = {}
        for remedy, change in self.ordered():
            out.update(remedy.loop(change))
        return out

    def code(self, spec: OptimizerSpec, env: Env) -> str:
        """Python that applies the recipe to ``model`` (and its optimizer and loop)."""
        if not self.changes:
            return "# keep the model and its training as they are"
        lines: list[str] = []
        touches_training = False
        for remedy, change in self.ordered():
            if remedy.target == "model":
                lines.append(remedy.code(change, env))
            else:
                touches_training = True
        if touches_training:
            lines.append(self.optimizer(spec).code())
            for remedy, change in self.ordered():
                if remedy.target == "loop":
                    lines.append(remedy.code(change, env))
        return "\n".join(lines)
