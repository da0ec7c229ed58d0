"""``large_updates`` / ``small_updates``: the update ratio ‖Δw‖/‖w‖ per parameter per step."""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding, Kind, Remedy
from . import RULES


def _frozen(ctx: Context, params: list[str]) -> set[str]:
    """Parameters that are not trained: listed in ``meta["frozen_params"]`` by the probe
    (``requires_grad=False``), or without a gradient on any logged step (frozen, or not used
    by the forward): their update ratio is 0 by design, not a too-low learning rate."""
    frozen = set(ctx.run.meta.get("frozen_params") or [])
    if ("param_grad", "rms") in set(ctx.run.quantities()):
        with_grad = set(ctx.run.matrix("param_grad", "rms")[0])
        frozen |= {n for n in params if n not in with_grad}
    return frozen


@RULES.register("updates")
def updates(ctx: Context) -> list[Finding]:
    params = [la.name for la in ctx.run.layers("param") if la.name.endswith("weight")]
    if not params:
        return []
    frozen = _frozen(ctx, params)
    params = [n for n in params if n not in frozen]
    if not params:
        return []
    ratios = ctx.matrix("update", "ratio", params)
    findings = []
    for name, row in zip(params, ratios, strict=True):
        finite = row[np.isfinite(row)]
        if not finite.size:
            continue
        median = float(np.median(finite))
        cases: tuple[tuple[Kind, bool, float, str], ...] = (
            (
                "large_updates",
                median > ctx.t.large_update_ratio,
                ctx.t.large_update_ratio,
                "the learning rate is too high for this layer: lower it, clip gradients, or "
                "use warm-up",
            ),
            (
                "small_updates",
                median < ctx.t.small_update_ratio,
                ctx.t.small_update_ratio,
                "the weights barely move: its gradient vanishes (see other findings) or the "
                "learning rate is too low",
            ),
        )
        for kind, bad, limit, text in cases:
            if bad:
                findings.append(
                    Finding(
                        kind=kind,
                        layer=name,
                        severity="warning",
                        step=ctx.steps[int(np.nonzero(np.isfinite(row))[0][0])],
                        evidence={"median_update_ratio": median, "threshold": limit},
                        remedy=Remedy(text),
                        message=f"median ‖Δw‖/‖w‖ = {median:.3g} per step (threshold {limit:g})",
                    )
                )
    return findings
