"""``dead_units``: ReLU-family units that are ≤ 0 for every example of the batch."""

from __future__ import annotations

from ..context import Context
from ..finding import Finding, Remedy
from . import RULES
from ._fraction import fraction_findings

REMEDY = Remedy(
    "units that never fire get no gradient: initialise biases to 0 (or a small positive "
    "value) with Kaiming weights, use LeakyReLU/GELU, or lower the learning rate if they "
    "die during training",
    "kaiming_normal",
    "gp.init.apply(model, 'kaiming_normal', bias='zeros')",
)


@RULES.register("dead_units")
def dead_units(ctx: Context) -> list[Finding]:
    return fraction_findings(
        ctx,
        [m.name for m in ctx.modules if m.activation == "relu"],
        "dead",
        "dead_units",
        ctx.t.dead_fraction,
        ctx.t.dead_error_fraction,
        REMEDY,
        lambda name, frac: (
            f"{frac:.0%} of the units after {name} are dead over the whole batch "
            f"(threshold {ctx.t.dead_fraction:.0%})"
        ),
        min_samples=ctx.t.min_dead_batch,  # on fewer examples "dead" is chance, see Thresholds
    )
