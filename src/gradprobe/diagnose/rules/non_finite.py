"""``non_finite``: the first module whose output (forward) or gradient (backward) had NaN/Inf."""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from . import RULES

_INPUT = ("(input)", "input", None)


def _remedy(ctx: Context, event) -> Remedy:
    if event.layer in _INPUT or event.layer == "(input)":
        return Remedy(
            "the data already contains NaN/Inf: clean the batch before the model "
            "(drop or impute the rows; torch.nan_to_num for a quick look)",
            None,
            "assert torch.isfinite(x).all()",
        )
    grew = ctx.activation_matrix
    if grew.size and np.nanmax(np.abs(grew[np.isfinite(grew)]), initial=0) > 1e18:
        return Remedy(
            "activations grow until they overflow: the init scale is too large for this "
            "depth; re-initialise (Kaiming/Xavier/LSUV) and clip gradients",
            "kaiming_normal",
            "gp.init.apply(model, 'kaiming_normal')",
        )
    kind = ctx.module_type(event.layer)
    return Remedy(
        f"{kind or 'this module'} turned finite inputs into NaN/Inf: a log or sqrt of a "
        f"value ≤ 0, a division by ~0, or an exp that overflows; clamp the input "
        f"(x.clamp_min(eps)), use stable forms (log_softmax, logsumexp, log1p), or compute "
        f"in float32 under autocast",
    )


@RULES.register("non_finite")
def non_finite(ctx: Context) -> list[Finding]:
    findings = []
    for event in ctx.run.events():
        where = "produced" if event.phase == "forward" else "received a gradient with"
        layer = event.layer if event.layer is not None else "(input)"
        findings.append(
            Finding(
                kind="non_finite",
                layer=layer,
                severity="error",
                step=event.step,
                evidence={"phase": event.phase, "detail": event.detail},
                remedy=_remedy(ctx, event),
                message=(
                    f"first non-finite value in the {event.phase} pass at step {event.step}: "
                    f"{layer} {where} NaN/Inf {event.detail}".rstrip()
                ),
            )
        )
    return findings
