"""``saturated``: tanh/sigmoid-like layers whose units sit on the flat part of the curve."""

from __future__ import annotations

from ..context import Context
from ..finding import Finding, Remedy
from ..remedies import reinit
from . import RULES
from ._fraction import fraction_findings
from ._onset import during_training


@RULES.register("saturated")
def saturated(ctx: Context) -> list[Finding]:
    layers = [m.name for m in ctx.modules if (m.activation or "").startswith("saturating")]
    base = reinit(ctx)
    remedy = Remedy(
        f"{base.text}; if it appears during training, lower the learning rate or add "
        f"normalisation before the activation",
        base.scheme,
        base.code,
    )
    found = fraction_findings(
        ctx,
        layers,
        "saturated",
        "saturated",
        ctx.t.saturated_fraction,
        ctx.t.saturated_error_fraction,
        remedy,
        lambda name, frac: (
            f"{frac:.0%} of {ctx.module_type(name)} outputs are saturated (within 1% of its "
            f"range from a bound; threshold {ctx.t.saturated_fraction:.0%})"
        ),
    )
    norm = "normalisation before the activation keeps its inputs in the curved range"
    return [during_training(ctx, f, "saturated", norm) for f in found]
