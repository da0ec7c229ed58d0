"""``saturated``: tanh/sigmoid-like layers whose units sit on the flat part of the curve."""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from ..remedies import reinit
from . import RULES


@RULES.register("saturated")
def saturated(ctx: Context) -> list[Finding]:
    layers = [m.name for m in ctx.modules if (m.activation or "").startswith("saturating")]
    if not layers:
        return []
    values = ctx.matrix("activation", "saturated", layers)
    findings = []
    for name, row in zip(layers, values, strict=True):
        over = np.nonzero(row > ctx.t.saturated_fraction)[0]
        if not over.size:
            continue
        first = int(over[0])
        frac = float(row[first])
        base = reinit(ctx)
        remedy = Remedy(
            f"{base.text}; if it appears during training, lower the learning rate or add "
            f"normalisation before the activation",
            base.scheme,
            base.code,
        )
        findings.append(
            Finding(
                kind="saturated",
                layer=name,
                severity="error" if frac > ctx.t.saturated_error_fraction else "warning",
                step=ctx.steps[first],
                evidence={
                    "saturated_fraction": frac,
                    "threshold": ctx.t.saturated_fraction,
                    "max_fraction": float(np.nanmax(row)),
                    "steps_affected": int(over.size),
                },
                remedy=remedy,
                message=(
                    f"{frac:.0%} of {ctx.module_type(name)} outputs are saturated (within 1% "
                    f"of its range from a bound; threshold {ctx.t.saturated_fraction:.0%})"
                ),
            )
        )
    return findings
