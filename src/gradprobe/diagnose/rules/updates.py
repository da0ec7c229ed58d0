"""``large_updates`` / ``small_updates``: the update ratio ‖Δw‖/‖w‖ of each weight.

Judged step by step over the first ``early_update_steps`` steps (the probe measures every
logged step there): Adam's first step moves every weight by ≈ lr, so its ratio is
lr / rms(w), and a step that changes a weight by more than ``early_update_ratio`` (25 %)
of its norm, 250× the usual ~1e-3, is what a missing warm-up or a too-high learning rate
does (Xiong et al. 2020; Liu et al. 2020). A median over the run would hide it: the
ratio falls once Adam's second moments fill in. The line sits above what healthy runs
show (up to 0.10: Adam at lr 1e-2 on an LSTM of width 32, whose weights have rms 0.1;
docs/DIAGNOSIS.md) and below the broken ones (0.39 to > 1). Over the whole run the
median is judged too: above ``large_update_ratio`` (10 %) the learning rate stays too
high; below ``small_update_ratio`` the weights do not move.

One finding per kind names the weight that is furthest off and lists the others
(``per_weight``); its onset is the first step any weight crossed. Frozen weights
(``meta["frozen_params"]``, or without a gradient on any step) are skipped: their ratio is
0 by design. Steps where the recorded learning rate is 0 (a warm-up's first) do not count
towards ``small_updates``. Weights whose norm is exactly 0 at the first logged step (a
zero-initialised output layer, the γ = 0 of a residual branch's last norm, Goyal et al.
2017; a zero output projection, DiT style) are not judged on their first
``early_update_steps``: a weight growing from 0 moves by ~1/k of its norm at step k
whatever the learning rate, so its ratio there measures its start, not its step — and
logged on every one of those steps it would set its median too (the later steps count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from ..series import loss_series, sig
from ..training import lr_collapse, lr_collapse_remedy, lr_series, raise_lr, step_size
from . import RULES
from ._precision import ROUNDOFF, low_precision, rounded_away

TOP = 8  # weights listed by name in the evidence
#: a typical (median over the weights) update ratio 10× below the usual ~1e-3: every weight
#: moves too little, whichever of them crossed ``small_update_ratio``
TYPICAL_SMALL = 1e-4


def _frozen(ctx: Context, params: list[str]) -> set[str]:
    """Parameters that are not trained: listed in ``meta["frozen_params"]`` by the probe
    (``requires_grad=False``), or without a gradient on any logged step (frozen, or not used
    by the forward): their update ratio is 0 by design, not a too-low learning rate."""
    frozen = set(ctx.run.meta.get("frozen_params") or [])
    if ("param_grad", "rms") in set(ctx.run.quantities()):
        with_grad = set(ctx.run.matrix("param_grad", "rms")[0])
        frozen |= {n for n in params if n not in with_grad}
    return frozen


def _trained_weights(ctx: Context) -> list[str]:
    """The run's weight parameters (``_is_weight``) that are trained (not ``_frozen``)."""
    params = [la.name for la in ctx.run.layers("param") if _is_weight(la.name)]
    frozen = _frozen(ctx, params)
    return [n for n in params if n not in frozen]


def _from_zero(ctx: Context, names: list[str]) -> np.ndarray:
    """Per weight: its recorded norm at the first logged step is exactly 0 (initialised to
    zero): ‖Δw‖/‖w‖ of its first steps is the ~1/k of a weight growing from nothing (1.7 at
    step 1 for a ResNet's zero-γ BatchNorm under SGD momentum, then 0.8, 0.5, 0.4, ...)."""
    if ("weight", "norm") not in set(ctx.run.quantities()) or not ctx.steps:
        return np.zeros(len(names), dtype=bool)
    w = ctx.matrix("weight", "norm", names)
    return np.asarray(w[:, 0] == 0, dtype=bool)


def _is_weight(name: str) -> bool:
    if "parametrizations." in name:  # torch's weight_norm / spectral_norm: the weight's
        # ``original`` (or original0/1) under ``parametrizations.weight``
        name = name.split("parametrizations.", 1)[1].split(".", 1)[0]
    return name.rsplit(".", 1)[-1].startswith("weight")  # weight, weight_ih_l0, weight_hh_l0


@dataclass(frozen=True)
class Ratios:
    """Update ratios of the trained weights: ``values[weight, step]`` at ``steps``."""

    names: list[str]
    steps: np.ndarray
    values: np.ndarray

    def early(self, until: int) -> np.ndarray:
        return self.values[:, self.steps < until]

    def medians(self) -> np.ndarray:
        return _rows(self.values, np.median)


def _rows(a: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` of each row's finite values (NaN for a row without any)."""
    out = np.full(a.shape[0], np.nan)
    for i, row in enumerate(a):
        finite = row[np.isfinite(row)]
        if finite.size:
            out[i] = reduce(finite)
    return out


def _row_max(a: np.ndarray) -> np.ndarray:
    return _rows(a, np.max)


def ratios(ctx: Context) -> Ratios | None:
    """The update ratios the rule judges (None when the run has none)."""
    if ("update", "ratio") not in set(ctx.run.quantities()):
        return None
    params = _trained_weights(ctx)
    if not params:
        return None
    values = ctx.matrix("update", "ratio", params)
    lr = lr_series(ctx)
    steps = np.asarray(ctx.steps, dtype=int)
    if lr is not None:  # a warm-up's lr = 0 step moves nothing by design
        zero = np.array([(lr.at(int(s)) or 0.0) == 0.0 for s in steps])
        values = np.where(zero[None, :], np.nan, values)
    broken = _unrecovered(ctx)
    if broken is not None:  # weights NaN/Inf for good: their "updates" measure nothing
        values = np.where((steps >= broken)[None, :], np.nan, values)
    # a weight that starts at exactly 0 moves by ~1/k of its norm at step k: its first steps
    # measure its start (and, logged on every step, would set its median), not the lr
    grown = _from_zero(ctx, params)
    values = np.where(grown[:, None] & (steps < ctx.t.early_update_steps)[None, :], np.nan, values)
    if not np.isfinite(values).any():
        return None
    return Ratios(params, steps, values)


def _top(names, values, reverse: bool) -> dict[str, float]:
    order = sorted(range(len(names)), key=lambda i: values[i], reverse=reverse)
    return {names[i]: float(values[i]) for i in order[:TOP]}


@RULES.register("updates")
def updates(ctx: Context) -> list[Finding]:
    stuck = [f for f in (_stuck_at_zero(ctx), _zero_gradient(ctx)) if f is not None]
    r = ratios(ctx)
    found = [f for f in (_large(ctx, r), _small(ctx, r)) if f is not None] if r else []
    return stuck + found


def _zero_gradient(ctx: Context) -> Finding | None:
    """Trained weights that are not 0 whose gradient is exactly 0 on every one of at least 3
    measured steps, from the first, while other weights' gradients are not: something
    between them and the loss has a derivative of 0 everywhere (torch.round, floor, sign,
    argmax, a comparison or a cast to an integer in the forward), so the optimizer never
    moves them. A frozen or unused weight has no gradient at all (``_frozen``); a weight
    and its partner both 0 is ``_stuck_at_zero``; units that die during training leave
    nonzero gradients on the first steps."""
    if not {("weight", "norm"), ("param_grad", "rms")} <= set(ctx.run.quantities()):
        return None
    params = _trained_weights(ctx)
    if len(params) < 2:
        return None
    w = ctx.matrix("weight", "norm", params)
    g = ctx.matrix("param_grad", "rms", params)
    both = np.isfinite(w) & np.isfinite(g)
    if not both.any():
        return None
    first = int(np.nonzero(both.any(axis=0))[0][0])
    zero = (both.sum(axis=1) >= 3) & both[:, first]
    zero &= ((g == 0) | ~both).all(axis=1) & ((w > 0) | ~both).all(axis=1)
    moving = ((g > 0) & both).any(axis=1)
    if not zero.any() or not moving.any():
        return None
    names = [params[i] for i in np.nonzero(zero)[0]]
    steps = int(both[zero].sum(axis=1).min())
    where = _gradient_stops(ctx)
    what = (
        f"{len(names)} of {len(params)} weights ({', '.join(names[:3])}"
        f"{', ...' if len(names) > 3 else ''}) get a gradient of exactly 0 on all {steps} "
        f"measured steps, from the first, while the others' are not 0"
        + (f"; coming down from the loss, it first stops at {where}" if where else "")
    )
    remedy = Remedy(
        f"{what}: an operation between them and the loss has a derivative of 0 everywhere "
        f"(torch.round, floor, sign, argmax, a comparison, a cast to an integer), so no "
        f"learning rate moves them; pass the gradient through it with a straight-through "
        f"estimator (Bengio et al. 2013): the rounded value in the forward, the identity in "
        f"the backward",
        None,
        "x = x + (torch.round(x) - x).detach()  # straight-through: round forward, identity "
        "backward",
    )
    return Finding(
        kind="small_updates",
        layer=names[0],
        severity="warning",
        step=0,
        onset=int(ctx.steps[first]) if ctx.steps else 0,
        evidence={
            "median_update_ratio": 0.0,
            "updated": "never (gradient exactly 0)",
            "weights_never_updated": len(names),
            "weights": len(params),
            "steps_measured": steps,
            "never_updated": names[:TOP],
            "gradient_stops_at": where,
        },
        remedy=remedy,
        message=what,
    )


def _gradient_stops(ctx: Context) -> str | None:
    """The module (in forward order) right above the last one whose output's gradient is
    exactly 0 on every logged step: the one that passes no gradient to its input."""
    if ("grad_output", "rms") not in set(ctx.run.quantities()):
        return None
    names = [la.name for la in ctx.run.layers("module") if la.name != "(model)"]
    g = ctx.matrix("grad_output", "rms", names)
    seen = np.isfinite(g).any(axis=1)
    dead = seen & np.where(np.isfinite(g), g == 0, True).all(axis=1)
    live = seen & ~dead
    idx = np.nonzero(dead)[0]
    for i in idx[::-1]:
        after = [j for j in range(int(i) + 1, len(names)) if live[j]]
        if after:
            j = after[0]
            return f"{names[j]} ({ctx.module_type(names[j])})"
    return None


def _stuck_at_zero(ctx: Context) -> Finding | None:
    """Trained weights that are exactly 0, with a gradient exactly 0, on every one of at
    least 3 measured steps: each only ever multiplies another factor that is 0 too (a LoRA
    adapter whose A and B both start at zero, two zero-initialised layers in a row), so its
    gradient stays 0 and no optimizer moves it (their update ratio is 0/0: never judged)."""
    if not {("weight", "norm"), ("param_grad", "rms")} <= set(ctx.run.quantities()):
        return None
    params = _trained_weights(ctx)
    if not params:
        return None
    w = ctx.matrix("weight", "norm", params)
    g = ctx.matrix("param_grad", "rms", params)
    both = np.isfinite(w) & np.isfinite(g)
    stuck = (both.sum(axis=1) >= 3) & ((w == 0) | ~both).all(axis=1)
    stuck &= ((g == 0) | ~both).all(axis=1)
    if not stuck.any():
        return None
    names = [params[i] for i in np.nonzero(stuck)[0]]
    every = len(names) == len(params)
    steps = int(both[stuck].sum(axis=1).min())
    what = (
        f"{'every trained weight' if every else f'{len(names)} of {len(params)} weights'} "
        f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}) stays exactly 0 with a "
        f"gradient of exactly 0 on all {steps} measured steps"
    )
    remedy = Remedy(
        f"{what}: each only multiplies another factor that is 0 too (a LoRA adapter with both "
        f"A and B zero-initialised, two zero-initialised layers in a row), so its gradient "
        f"is 0 and no learning rate moves it; initialise one factor of each pair randomly "
        f"(LoRA: A Kaiming-uniform, B zero)",
        None,
        f"torch.nn.init.kaiming_uniform_(model.get_parameter({names[0]!r}), a=5**0.5)"
        "  # one factor random, the other may stay 0",
    )
    return Finding(
        kind="small_updates",
        layer=names[0],
        severity="error" if every else "warning",
        step=0,
        onset=0,
        evidence={
            "median_update_ratio": 0.0,
            "updated": "never (stuck at 0)",
            "weights_never_updated": len(names),
            "weights": len(params),
            "steps_measured": steps,
            "never_updated": names[:TOP],
        },
        remedy=remedy,
        message=what,
    )


def _large(ctx: Context, r: Ratios) -> Finding | None:
    limit, first_limit = ctx.t.large_update_ratio, ctx.t.early_update_ratio
    early = r.early(ctx.t.early_update_steps)
    medians = r.medians()
    peaks = _row_max(early)
    over_early = peaks > first_limit
    # no first step over the line, but every one of the first steps (their median) moves
    # the weight by more than ``limit``: a step size 100× the usual held, not one large
    # first step (RAdam's rectified first steps, a warm-up to a peak far too high)
    sustained = _rows(early, np.median) > limit
    over_early = over_early | sustained
    over_median = medians > limit
    over = over_early | over_median
    if not over.any():
        return None
    # the triggering value of each weight: its early peak, else its median over the run
    value = np.where(over_early, peaks, medians)
    first: dict[int, tuple[int, float]] = {}  # weight -> (step it first crossed, its ratio then)
    for i in np.nonzero(over)[0]:
        row, line = (early[i], first_limit) if over_early[i] else (r.values[i], limit)
        if sustained[i] and not peaks[i] > first_limit:
            line = limit
        crossed = np.nonzero(row > line)[0]
        k = int(crossed[0]) if crossed.size else int(np.nanargmax(row))
        first[int(i)] = (int(r.steps[k]), float(row[k]))
    onset = min(step for step, _ in first.values())
    worst = int(np.nanargmax(np.where(over, value, -np.inf)))
    name, peak = r.names[worst], float(value[worst])
    early_seen = bool(over_early[worst])
    row = early[worst] if early_seen else r.values[worst]
    at = int(r.steps[int(np.argmax(np.where(np.isfinite(row), row, -np.inf)))])
    names = [r.names[i] for i in np.nonzero(over)[0]]
    line = first_limit if early_seen else limit
    held = bool(sustained[worst]) and not peaks[worst] > first_limit
    if held:
        line = limit
        what = (
            f"the first {int(np.isfinite(early[worst]).sum())} updates moved {name} by a "
            f"median {float(np.nanmedian(early[worst])):.3g} of its norm a step (up to "
            f"{peak:.3g} at step {at}; ~1e-3 is usual)"
        )
    elif early_seen:
        what = (
            f"the first updates moved {name} by {peak:.3g} of its norm in one step (step "
            f"{at}; ~1e-3 is usual)"
        )
    else:
        what = f"the updates move {name} by a median {peak:.3g} of its norm per step"
    more = f"; {len(names) - 1} other weight(s) too" if len(names) > 1 else ""
    # the learning rate is scaled by the ratio where the weight first crossed: later ratios
    # of a run that is already blowing up measure the blow-up, not the learning rate
    start_step, start_ratio = first[worst]
    return Finding(
        kind="large_updates",
        layer=name,
        severity="error" if peak > 1.0 else "warning",
        step=onset,
        onset=onset,
        evidence={
            "update_ratio": peak,
            "judged_on": "first steps" if early_seen else "median over the run",
            "at_step": at,
            "first_over": start_ratio,
            "first_over_step": start_step,
            "median_update_ratio": float(medians[worst]),
            "threshold": line,
            "weights_over": len(names),
            "per_weight": _top(names, [float(value[r.names.index(n)]) for n in names], True),
            "early_ratios": [float(v) for v in early[worst] if math.isfinite(v)],
        },
        remedy=step_size(ctx, start_ratio, start_step, what),
        message=f"{what}{more}",
    )


def _unrecovered(ctx: Context) -> int | None:
    """The step from which the loss is NaN/Inf to the end of the run (None if it ends
    finite): the weights are no longer numbers from there."""
    s = loss_series(ctx.run)
    if s is None or not len(s) or np.isfinite(s.values[-1]):
        return None
    ok = np.nonzero(np.isfinite(s.values))[0]
    return int(s.steps[int(ok[-1]) + 1]) if ok.size else int(s.steps[0])


def _never_updated(ctx: Context, r: Ratios) -> Finding | None:
    """Weights whose every measured update is exactly 0 although they get a gradient: the
    optimizer does not hold them (built over another instance's parameters, or over part of
    the model), or ``zero_grad()`` runs between ``backward()`` and ``step()``. Not a small
    learning rate: any learning rate times a zero step is zero."""
    finite = np.isfinite(r.values)
    zero = (r.values == 0) & finite
    grads = ctx.matrix("param_grad", "rms", r.names)
    with np.errstate(invalid="ignore"):
        moved_grad = np.nanmax(np.where(np.isfinite(grads), grads, np.nan), axis=1, initial=0)
    never = (finite.sum(axis=1) >= 3) & (zero.sum(axis=1) == finite.sum(axis=1)) & (moved_grad > 0)
    never &= _visible(ctx, r)
    if not never.any():
        return None
    names = [r.names[i] for i in np.nonzero(never)[0]]
    every = len(names) == len(r.names)
    steps = int(finite[never].sum(axis=1).min())
    onset = int(r.steps[np.nonzero(finite[int(np.nonzero(never)[0][0])])[0][0]])
    what = (
        "no parameter is updated"
        if every
        else f"{len(names)} of {len(r.names)} weights are never updated ({names[0]}, ...)"
    )
    message = (
        f"{what}: their update ‖Δw‖ is exactly 0 on all {steps} measured steps although their "
        f"gradients are not 0 (rms up to {float(moved_grad[never].max()):.3g})"
    )
    remedy = Remedy(
        f"{what} although gradients reach them, so no learning rate would help: build the "
        f"optimizer over this model's parameters (not another instance's, not a part of it; "
        f"after the model is built and moved), and call opt.zero_grad() before loss.backward(), "
        f"not between backward() and opt.step()",
        None,
        "opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # the model that is trained\n"
        "opt.zero_grad(); loss.backward(); opt.step()  # in this order",
    )
    return Finding(
        kind="small_updates",
        layer=names[0],
        severity="error" if every else "warning",
        step=onset,
        onset=onset,
        evidence={
            "median_update_ratio": 0.0,
            "updated": "never",
            "weights_never_updated": len(names),
            "weights": len(r.names),
            "steps_measured": steps,
            "never_updated": names[:TOP],
        },
        remedy=remedy,
        message=message,
    )


#: the smallest ‖lr·g‖/‖w‖ whose step float32 always shows: an element changes only if its
#: step exceeds half its ulp (6e-8 of it), so at 1e-6 most elements of a weight move, and
#: ‖Δw‖ = 0 means the step was not applied; far below it (a gradient that vanished to 1e-12)
#: w + lr·g rounds back to w and ‖Δw‖ = 0 is the vanishing gradient, not the optimizer
VISIBLE_STEP = 1e-6


def _visible(ctx: Context, r: Ratios) -> np.ndarray:
    """Per weight: whether lr·‖g‖/‖w‖ reached VISIBLE_STEP on some measured step, so a zero
    update cannot be float32 rounding (without a recorded lr, ‖g‖/‖w‖ ≥ 1e-3: any lr above
    1e-3 would show). True where the norms were not recorded (nothing to tell it by)."""
    quantities = set(ctx.run.quantities())
    if not {("param_grad", "norm"), ("weight", "norm")} <= quantities:
        return np.ones(len(r.names), dtype=bool)
    g = ctx.matrix("param_grad", "norm", r.names)
    w = ctx.matrix("weight", "norm", r.names)
    lr = lr_series(ctx)
    if lr is not None:
        rates = np.array([lr.at(int(s)) or np.nan for s in r.steps])
        line = VISIBLE_STEP
    else:
        rates, line = np.ones(len(r.steps)), 1e-3
    # a bfloat16/float16 weight shows only a step over half its spacing (_precision)
    low = low_precision(ctx, r.names)
    lines = np.array([max(line, ROUNDOFF[low[n]]) if n in low else line for n in r.names])
    with np.errstate(invalid="ignore", divide="ignore"):
        step = rates[None, :] * g / w
    known = np.isfinite(step).any(axis=1)
    with np.errstate(invalid="ignore"):
        return ~known | (np.where(np.isfinite(step), step, 0) >= lines[:, None]).any(axis=1)


def _small(ctx: Context, r: Ratios) -> Finding | None:
    never = _never_updated(ctx, r)
    if never is not None:
        return never
    rounded = rounded_away(ctx, r.names, r.steps, r.values)
    if rounded is not None:  # weights in bfloat16/float16 whose steps round to nothing
        return rounded
    limit = ctx.t.small_update_ratio
    # a step whose update is exactly 0 applied nothing (skipped by a GradScaler or a guard):
    # it says nothing about the learning rate
    r = Ratios(r.names, r.steps, np.where(r.values == 0, np.nan, r.values))
    counts = np.isfinite(r.values).sum(axis=1)
    medians = r.medians()
    under = (medians < limit) & (counts >= 1)
    if not under.any():
        return _lr_stopped(ctx, r)
    idx = np.nonzero(under)[0]
    worst = int(idx[np.argmin(medians[idx])])
    name, median = r.names[worst], float(medians[worst])
    onset = int(r.steps[np.nonzero(np.isfinite(r.values[worst]))[0][0]])
    names = [r.names[i] for i in idx]
    everywhere = len(names) * 2 > len(r.names)
    # the weights in general (not only those under the line) move 10× less than the usual
    # ~1e-3: the learning rate is too low for all of them (Adam's step is ≈ lr per element,
    # so the ratio is lr / rms(w): large-norm weights cross the line, the rest sit near it)
    moving = medians[np.isfinite(medians) & (medians > 0)]
    typical = float(np.median(moving)) if moving.size else median
    if everywhere or typical < TYPICAL_SMALL:
        remedy = raise_lr(ctx, float(np.median(medians[idx])) if everywhere else typical)
    else:
        remedy = Remedy(
            "the weights barely move: its gradient vanishes (see other findings) or the "
            "learning rate is too low"
        )
    more = f"; {len(names) - 1} other weight(s) too" if len(names) > 1 else ""
    return Finding(
        kind="small_updates",
        layer=name,
        severity="warning",
        step=onset,
        onset=onset,
        evidence={
            "median_update_ratio": median,
            "threshold": limit,
            "weights_under": len(names),
            "weights": len(r.names),
            "per_weight": _top(names, [float(medians[r.names.index(n)]) for n in names], False),
        },
        remedy=remedy,
        message=f"median ‖Δw‖/‖w‖ of {name} = {median:.3g} per step (threshold {limit:g}){more}",
    )


def _lr_stopped(ctx: Context, r: Ratios) -> Finding | None:
    """The schedule took the learning rate to 0 (or under ``LR_COLLAPSE`` of its peak) at a
    step and kept it there for at least half the run (:func:`lr_collapse`), and the weights
    stopped moving there: the steps with lr 0 are left out of the ratios (a warm-up's first
    moves nothing by design), so a warm-up whose lambda returns 0 after it left only its
    own, moving, steps to judge and no finding."""
    collapsed = lr_collapse(ctx)
    if collapsed is None:
        return None
    step, peak, last = collapsed
    raw = ctx.matrix("update", "ratio", r.names)[:, r.steps >= step]
    after = raw[np.isfinite(raw)]
    if not after.size or float(np.median(after)) >= ctx.t.small_update_ratio:
        return None
    median = float(np.median(after))
    what = (
        f"the weights stopped moving at step {step}: median ‖Δw‖/‖w‖ {median:.2g} per step "
        f"after it, with the learning rate at {sig(last, 2):g} (it had reached {sig(peak, 3):g})"
    )
    return Finding(
        kind="small_updates",
        layer=r.names[0],
        severity="warning",
        step=step,
        onset=step,
        evidence={
            "median_update_ratio": median,
            "threshold": ctx.t.small_update_ratio,
            "lr_collapsed_at": step,
            "lr_peak": peak,
            "lr_last": last,
            "weights_under": len(r.names),
            "weights": len(r.names),
        },
        remedy=lr_collapse_remedy(step, peak, last, what),
        message=what,
    )


def peak_before(ctx: Context, step: int | None, layer: str | None = None) -> float | None:
    """The largest update ratio measured up to ``step`` (of the weights of module ``layer``
    when it has any, else of every weight): what the weights went through before a problem
    that appeared during training."""
    r = ratios(ctx)
    if r is None or step is None:
        return None
    rows = [i for i, n in enumerate(r.names) if layer and n.startswith(layer + ".")]
    values = r.values[rows or list(range(len(r.names))), :][:, r.steps <= step]
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else None


def first_ratio(ctx: Context) -> float | None:
    """The largest update ratio of the first measured step: lr / rms(w) for Adam, what the
    learning rate does before any feedback (later ratios of a run that blows up measure the
    blow-up). The ratio a lower learning rate is scaled by."""
    r = ratios(ctx)
    if r is None:
        return None
    for k in range(r.values.shape[1]):
        col = r.values[:, k]
        finite = col[np.isfinite(col)]
        if finite.size:
            return float(finite.max())
    return None
