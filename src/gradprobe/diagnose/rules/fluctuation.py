"""``fluctuation``: a healthy trend across depth, but a wild spread from layer to layer.

At finite width the per-layer norms wander around the mean-field prediction with a
log-spread growing like √(Σ 1/n_l) (Hanin & Rolnick 2018): a narrow deep network can be
"critical on average" and still have layers 10× apart. Flagged when the lowest/output
ratio is within the healthy band but max/min of the per-layer gradient rms exceeds
``fluctuation_spread``.
"""

from __future__ import annotations

from ..context import Context
from ..finding import Finding, Remedy
from . import RULES


@RULES.register("fluctuation")
def fluctuation(ctx: Context) -> list[Finding]:
    t = ctx.t
    for i, step in enumerate(ctx.steps):
        p = ctx.gradient_profile(i)
        if p is None or not (t.vanishing_ratio <= p.ratio <= t.exploding_ratio):
            continue
        spread = float(p.values.max() / p.values.min())
        if spread > t.fluctuation_spread:
            return [
                Finding(
                    kind="fluctuation",
                    layer=None,
                    severity="info",
                    step=step,
                    evidence={
                        "spread_max_over_min": spread,
                        "threshold": t.fluctuation_spread,
                        "ratio_lowest_to_output": p.ratio,
                        "largest": p.layers[int(p.values.argmax())],
                        "smallest": p.layers[int(p.values.argmin())],
                    },
                    remedy=Remedy(
                        "finite-width drift, not a bad scale: wider layers, normalisation, "
                        "or an orthogonal init shrink the spread"
                    ),
                    message=(
                        f"per-layer gradients are {spread:.3g}× apart although the lowest/output "
                        f"ratio {p.ratio:.3g} is healthy"
                    ),
                )
            ]
    return []
