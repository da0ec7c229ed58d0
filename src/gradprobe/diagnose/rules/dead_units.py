"""``dead_units``: ReLU-family units that are ≤ 0 for every example of the batch."""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from . import RULES


@RULES.register("dead_units")
def dead_units(ctx: Context) -> list[Finding]:
    layers = [m.name for m in ctx.modules if m.activation == "relu"]
    if not layers:
        return []
    values = ctx.matrix("activation", "dead", layers)
    findings = []
    for name, row in zip(layers, values, strict=True):
        over = np.nonzero(row > ctx.t.dead_fraction)[0]
        if not over.size:
            continue
        first = int(over[0])
        frac = float(row[first])
        findings.append(
            Finding(
                kind="dead_units",
                layer=name,
                severity="error" if frac > ctx.t.dead_error_fraction else "warning",
                step=ctx.steps[first],
                evidence={
                    "dead_fraction": frac,
                    "threshold": ctx.t.dead_fraction,
                    "steps_affected": int(over.size),
                },
                remedy=Remedy(
                    "units that never fire get no gradient: initialise biases to 0 (or a small "
                    "positive value) with Kaiming weights, use LeakyReLU/GELU, or lower the "
                    "learning rate if they die during training",
                    "kaiming_normal",
                    "gp.init.apply(model, 'kaiming_normal', bias='zeros')",
                ),
                message=(
                    f"{frac:.0%} of the units after {name} are dead over the whole batch "
                    f"(threshold {ctx.t.dead_fraction:.0%})"
                ),
            )
        )
    return findings
