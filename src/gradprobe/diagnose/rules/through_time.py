"""``vanishing`` and ``exploding`` through time: ∂L/∂x_t of a recurrent layer across t.

The probe records the norm of the gradient reaching each time step's input (which
carries everything that flowed back through the recurrence). If the earliest step
receives less than ``time_ratio`` of the largest, the layer forgets its past (vanishing;
the remedy is the cell's init or gating). If it receives more than
``time_exploding_ratio`` (100×) what the last time step does, the gradient grows as it
goes back in time (exploding, Bengio et al. 1994; Pascanu et al. 2013): the remedy is
gradient clipping, with a max-norm read from the recorded global norms. A series that
holds Inf at early time steps while the last ones are finite has exploded.

Each is reported at the first logged step that shows it (``onset``); once a layer
explodes, a vanishing seen at other steps is left to the explosion (it is the same
recurrence, and clipping is what training needs).
"""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding
from ..remedies import recurrent
from ..training import clip
from . import RULES

SERIES = "rnn_grad_input_t"


def _decay(norms: np.ndarray) -> float:
    ok = np.isfinite(norms) & (norms > 0)
    t = np.arange(norms.size)[ok]
    if t.size < 2:
        return float("nan")
    return float(np.exp(np.polyfit(t, np.log(norms[ok]), 1)[0]))


@RULES.register("through_time")
def through_time(ctx: Context) -> list[Finding]:
    findings = []
    for name in ctx.recurrent:
        exploding = vanishing = None
        for step in ctx.steps:
            norms = ctx.run.series(name, SERIES, step)
            if norms.size < 2:
                continue
            last = norms[-1]
            if exploding is None and np.isfinite(last) and last > 0:
                with np.errstate(over="ignore", invalid="ignore"):
                    ratio = norms[0] / last
                if ratio > ctx.t.time_exploding_ratio or np.isposinf(norms[0]):
                    exploding = (step, float(ratio), norms)
            if (
                vanishing is None
                and np.isfinite(norms).all()
                and norms.max() > 0
                and norms[0] / norms.max() < ctx.t.time_ratio
            ):
                vanishing = (step, float(norms[0] / norms.max()), norms)
        if exploding is not None:
            findings.append(_exploding(ctx, name, *exploding))
        elif vanishing is not None:
            findings.append(_vanishing(ctx, name, *vanishing))
    return findings


def _exploding(ctx: Context, name: str, step: int, ratio: float, norms: np.ndarray) -> Finding:
    module_type = ctx.module_type(name)
    grow = _decay(norms)
    what = (
        f"{module_type} {name}: ∂L/∂x at t=0 is {ratio:.3g}× its value at the last of "
        f"{norms.size} time steps (step {step}): the gradient grows going back in time"
    )
    return Finding(
        kind="exploding",
        layer=name,
        severity="error" if ratio > ctx.t.exploding_error_ratio else "warning",
        step=step,
        onset=step,
        time_step=0,
        evidence={
            "measured_on": "gradient through time",
            "ratio_first_to_last": ratio,
            "threshold": ctx.t.time_exploding_ratio,
            "time_steps": int(norms.size),
            "growth_per_time_step_back": 1 / grow if grow and np.isfinite(grow) else float("nan"),
            "grad_norm_t": norms.tolist(),
        },
        remedy=clip(ctx, None, f"the gradient of {name} explodes through time"),
        message=what,
    )


def _vanishing(ctx: Context, name: str, step: int, ratio: float, norms: np.ndarray) -> Finding:
    module_type = ctx.module_type(name)
    below = np.nonzero(norms >= ctx.t.time_ratio * norms.max())[0]
    horizon = int(norms.size - below[0]) if below.size else 0
    return Finding(
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
