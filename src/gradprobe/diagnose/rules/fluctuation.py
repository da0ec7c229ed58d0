"""``fluctuation``: a plain ReLU stack too narrow for its depth.

At finite width the signal's length wanders from layer to layer around the mean-field
prediction: for He-initialised ReLU layers of widths n_l, the log of the squared length of
an example's activations (and of its gradient) has a variance of about 5 β with
β = Σ 1/n_l (Hanin & Rolnick 2018; Hanin 2018). At β ≥ ``narrow_width`` (= 1, a spread of
e^±2.2 ≈ 9× between examples and between init draws) the verdicts of one draw say little
and training is erratic; in layers of a few units, whole examples die (every unit ≤ 0: Lu
et al. 2019). No init fixes it — the model may already have He's — so this is a warning
whose remedy is the architecture: wider layers, normalisation, residual connections. It
applies to plain stacks without normalisation whose hidden activations can die (ReLU).
"""

from __future__ import annotations

from ..context import Context
from ..expected import narrow_sum
from ..finding import Finding
from ..remedies import narrow
from . import RULES


@RULES.register("fluctuation")
def fluctuation(ctx: Context) -> list[Finding]:
    s = ctx.structure
    if not ctx.steps or not s.plain or ctx.has_normalisation or len(ctx.chain) < 2:
        return []
    if not any(m.activation == "relu" for m in ctx.modules):
        return []
    beta, widths = narrow_sum(ctx)
    if beta < ctx.t.narrow_width:
        return []
    return [
        Finding(
            kind="fluctuation",
            layer=ctx.chain[0].name,
            severity="warning",
            step=ctx.steps[0],
            onset=ctx.steps[0],
            evidence={
                "sum_inverse_width": beta,
                "threshold": ctx.t.narrow_width,
                "hidden_widths": widths,
                "log_variance": 5 * beta,
            },
            remedy=narrow(ctx, beta),
            message=(
                f"{len(widths)} hidden ReLU layers as narrow as {min(widths)} units: Σ 1/width "
                f"= {beta:.3g} (threshold {ctx.t.narrow_width:g}), so the signal's length "
                f"varies by about e^±{(5 * beta) ** 0.5:.2g} between examples and init draws"
            ),
        )
    ]
