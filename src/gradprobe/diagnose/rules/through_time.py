"""``vanishing`` through time: ∂L/∂x_t of a recurrent layer across its time steps.

The probe records the norm of the gradient reaching each time step's input (which
carries everything that flowed back through the recurrence). If the earliest step
receives less than ``time_ratio`` of the largest, the layer forgets its past.
"""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding
from ..remedies import recurrent
from . import RULES


@RULES.register("through_time")
def through_time(ctx: Context) -> list[Finding]:
    findings = []
    for name in ctx.recurrent:
        for step in ctx.steps:
            norms = ctx.run.series(name, "rnn_grad_input_t", step)
            if norms.size < 2 or not np.isfinite(norms).all() or norms.max() <= 0:
                continue
            ratio = float(norms[0] / norms.max())
            if ratio >= ctx.t.time_ratio:
                continue
            below = np.nonzero(norms >= ctx.t.time_ratio * norms.max())[0]
            horizon = int(norms.size - below[0]) if below.size else 0
            module_type = ctx.module_type(name)
            findings.append(
                Finding(
                    kind="vanishing",
                    layer=name,
                    severity="error" if ratio < ctx.t.vanishing_error_ratio else "warning",
                    step=step,
                    time_step=0,
                    evidence={
                        "ratio_first_to_max": ratio,
                        "threshold": ctx.t.time_ratio,
                        "time_steps": int(norms.size),
                        "steps_within_threshold": horizon,
                        "decay_per_time_step": float(
                            np.exp(np.polyfit(np.arange(norms.size), np.log(norms + 1e-300), 1)[0])
                        ),
                        "grad_norm_t": norms.tolist(),
                    },
                    remedy=recurrent(ctx, module_type),
                    message=(
                        f"{module_type} {name}: ∂L/∂x at t=0 is {ratio:.3g}× its largest over "
                        f"{norms.size} time steps; only the last {horizon} steps get more than "
                        f"{ctx.t.time_ratio:g} of it"
                    ),
                )
            )
            break  # the first logged step that shows it
    return findings
