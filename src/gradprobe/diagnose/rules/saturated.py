"""``saturated``: tanh/sigmoid-like layers whose units sit on the flat part of the curve.

A saturated unit passes ≤ 4 % of its gradient (tanh' = 1 − 0.98² at the 1 % band), as a
ReLU's zero passes none — and a healthy ReLU layer zeroes about half its outputs. So one
saturated layer alone cuts the gradient once, by its fraction, as a ReLU layer does; what
stalls learning is saturation that persists through the stack or the blocks (Glorot &
Bengio 2010: the top layer of a deep sigmoid net at ~100 %). Where a single layer crosses
the line and no other, and at most ``saturated_alone_fraction`` (90 %) of it is saturated,
the finding is ``info``: raw inputs of scale ~10 (``make_blobs``) saturated the first tanh
layer 30-62 % in models that train, and standardising them is the remedy.
"""

from __future__ import annotations

import dataclasses

from ..context import Context
from ..finding import Finding, Remedy
from ..remedies import gates_remedy, reinit
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
            f"{frac:.0%} of {_outputs(ctx, name)} are saturated (within 1% of its "
            f"range from a bound; threshold {ctx.t.saturated_fraction:.0%})"
        ),
    )
    if ctx.gates:  # a saturated gate keeps its function: its inputs' scale is the change
        gated = gates_remedy(ctx)
        found = [dataclasses.replace(f, remedy=gated) if f.layer in ctx.gates else f for f in found]
    norm = "normalisation before the activation keeps its inputs in the curved range"
    found = [during_training(ctx, f, "saturated", norm) for f in found]
    if len(found) == 1 and found[0].evidence["max_fraction"] <= ctx.t.saturated_alone_fraction:
        f = found[0]
        found = [
            dataclasses.replace(
                f,
                severity="info",
                evidence={**f.evidence, "alone_threshold": ctx.t.saturated_alone_fraction},
                message=f.message + "; it is the only saturated layer, so the gradient is cut "
                "once, as a ReLU layer cuts it",
                remedy=Remedy(
                    "standardise the inputs ((x - mean) / std per feature) if this layer reads "
                    f"them; else {f.remedy.text}",
                    f.remedy.scheme,
                    f.remedy.code,
                ),
            )
        ]
    return found


def _outputs(ctx: Context, name: str) -> str:
    """ "Tanh outputs", or "the tanh outputs after fc" (a function applied to fc's output)."""
    fn = ctx.functional_activations.get(name)
    return f"the {fn} outputs after {name}" if fn else f"{ctx.module_type(name)} outputs"
