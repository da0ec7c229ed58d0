"""``vanishing`` and ``exploding`` through time: ∂L/∂x_t of a recurrent layer across t.

The probe records the norm of the gradient reaching each time step's input (which
carries everything that flowed back through the recurrence). Going back from the loss,
a contracting recurrence divides it by a factor per step, so it is within ``time_ratio``
of its largest only over the last R steps (the *reach*). A healthy gated cell at its
authors' init has a short reach too, and trains: PyTorch's GRU R = 8-14 steps (update
gate ≈ 0.5, ×0.6 per step), an LSTM with forget-gate bias 1 R = 16-38 (docs/DIAGNOSIS.md,
"Through time"). What a healthy init does not show is a reach that is a small share of the
sequence the loss reads (R < ``time_reach_fraction`` · T: PyTorch's default LSTM over 200
steps reaches 9-10) or of a few steps only (R < ``time_min_reach``, a recurrence that contracts
faster than any gated init: forget-gate bias −3). A cell without gates (``nn.RNN``) has no
gate to learn to keep its state: it is judged against its healthy inits (orthogonal or
identity recurrent weights reach 15-52 steps, PyTorch's U(±1/√n) 6-9), R <
``time_ungated_reach``. That is vanishing (the remedy is the cell's init or gating). A loss
at every step keeps ∂L/∂x_t flat: nothing to flag.

If ∂L/∂x at t=0 is more than ``time_exploding_ratio`` (100×) what the last time step gets,
the gradient grows as it goes back in time (exploding, Bengio et al. 1994; Pascanu et al.
2013): the remedy is gradient clipping, with a max-norm read from the recorded global
norms. A series that holds Inf at early time steps while the last ones are finite has
exploded.

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
    """exp of the least-squares slope of log ‖∂L/∂x_t‖ against t (finite, positive values)."""
    ok = np.isfinite(norms) & (norms > 0)
    t = np.arange(norms.size)[ok]
    if t.size < 2:
        return float("nan")
    return float(np.exp(np.polyfit(t, np.log(norms[ok]), 1)[0]))


def _reach(norms: np.ndarray, level: float) -> int:
    """How many of the last time steps get at least ``level`` × the largest ∂L/∂x_t."""
    within = np.nonzero(norms >= level * norms.max())[0]
    return int(norms.size - within[0]) if within.size else 0


def _out_of_reach(ctx: Context, norms: np.ndarray, gated: bool) -> bool:
    """The earliest step is out of reach and the reach is short for the sequence (or, in
    a cell without gates, short for what its healthy inits reach)."""
    if not (np.isfinite(norms).all() and norms.max() > 0):
        return False
    if norms[0] >= ctx.t.time_ratio * norms.max():
        return False
    reach = _reach(norms, ctx.t.time_ratio)
    least = ctx.t.time_min_reach if gated else ctx.t.time_ungated_reach
    return reach < ctx.t.time_reach_fraction * norms.size or reach < least


@RULES.register("through_time")
def through_time(ctx: Context) -> list[Finding]:
    findings = []
    for name in ctx.recurrent:
        gated = ctx.module_type(name) != "RNN"
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
            if vanishing is None and _out_of_reach(ctx, norms, gated):
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
    reach = _reach(norms, ctx.t.time_ratio)
    peak = int(np.argmax(norms))
    decay = 1 / _decay(norms[: peak + 1])  # per step back, over the part before the largest
    tau = -1 / np.log(decay) if 0 < decay < 1 else float("inf")
    gated = module_type != "RNN"
    healthy = "a healthy gated init" if gated else "an orthogonal or identity init"
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
            "steps_within_threshold": reach,
            "reach_fraction": reach / norms.size,
            "reach_fraction_threshold": ctx.t.time_reach_fraction,
            "min_reach": ctx.t.time_min_reach if gated else ctx.t.time_ungated_reach,
            "decay_per_time_step": decay,
            "memory_time_steps": float(tau),
            "grad_norm_t": norms.tolist(),
        },
        remedy=recurrent(ctx, module_type, decay),
        message=(
            f"{module_type} {name}: ∂L/∂x at t=0 is {ratio:.3g}× its largest over "
            f"{norms.size} time steps; only the last {reach} steps ({reach / norms.size:.0%} of "
            f"the sequence, line {ctx.t.time_reach_fraction:.0%}) get more than "
            f"{ctx.t.time_ratio:g} of it (×{decay:.2f} per step back; {healthy} reaches "
            f"{'8-38' if gated else '15-52'} steps)"
        ),
    )
