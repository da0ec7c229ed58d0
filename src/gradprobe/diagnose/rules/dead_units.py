"""``dead_units``: ReLU-family units that are ≤ 0 for every example of the batch.

Dead at the first logged step: the init (biases, weight scale) is the cause. Dying later,
after large updates, is the step size's doing (a too-high learning rate pushes the
pre-activations of whole units below 0 for good): the remedy is then a lower learning rate
or warm-up, not an init the model already has."""

from __future__ import annotations

import dataclasses

from .. import remedies
from ..context import Context
from ..finding import Finding, Remedy
from . import RULES
from ._fraction import fraction_findings
from ._onset import during_training

REMEDY = Remedy(
    "units that never fire get no gradient: initialise biases to 0 (or a small positive "
    "value) with Kaiming weights, use LeakyReLU/GELU, or lower the learning rate if they "
    "die during training",
    "kaiming_normal",
    "gp.init.apply(model, 'kaiming_normal', bias='zeros')",
)


@RULES.register("dead_units")
def dead_units(ctx: Context) -> list[Finding]:
    found = fraction_findings(
        ctx,
        [m.name for m in ctx.modules if m.activation == "relu"],
        "dead",
        "dead_units",
        ctx.t.dead_fraction,
        ctx.t.dead_error_fraction,
        REMEDY,
        lambda name, frac: (
            f"{frac:.0%} of the units after {name}"
            + (f"'s {fn}" if (fn := ctx.functional_activations.get(name)) else "")
            + " are dead over the whole batch "
            f"(threshold {ctx.t.dead_fraction:.0%})"
        ),
        min_samples=ctx.t.min_dead_batch,  # on fewer examples "dead" is chance, see Thresholds
        chance=0.5,  # a healthy zero-bias unit is dead over a batch with p ≤ 1/2 (Thresholds)
    )
    leaky = "LeakyReLU keeps a gradient for negative inputs, so units can come back"
    found = [during_training(ctx, f, "dead", leaky) for f in found]
    # at init in a model that already has He weights and zero biases, no init revives them
    # (remedies.dead_at_init says why and what does: widen, LeakyReLU, normalisation)
    better = remedies.dead_at_init(ctx) if found else None
    if better is None:
        return found
    return [
        dataclasses.replace(f, remedy=better)
        if f.evidence.get("appeared") == "at initialisation"
        else f
        for f in found
    ]
