"""``exploding`` over training: the global gradient norm grows far beyond where it began.

The probe records ‖∇L‖ over all parameters on every step (``(model)/grad_norm/global``).
Its median over the first ten steps is the baseline (over fewer, when the norm already
rose 10× above its first value before: an explosion from step 2 must not set its own
baseline); a later step whose norm exceeds ``grad_norm_growth`` (100×) that baseline, or
turns NaN/Inf after growing past 10× it, is an explosion (healthy runs move within ~7×:
the norm often rises a few times as the loss falls); a NaN/Inf that follows a steady norm
is not (``_sudden``: an operation made it, the non_finite rule names it). The remedy is
clipping at the baseline norm (Pascanu et al. 2013), with a lower learning rate; for
recurrent nets the through-time rule says where it grows. When the probe saw a backward
begin on the last step's unchanged ``.grad`` (``meta["grads_not_zeroed"]``:
``optimizer.zero_grad()`` is missing), that is the finding: the growth is the sum of every
gradient so far.
"""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from ..series import (
    data_nonfinite_steps,
    loss_series,
    model_series,
    skipped_steps,
    without_guard_skips,
)
from ..training import clip, healthy_norms
from . import RULES
from .loss import loss
from .updates import ratios

BASELINE = 10  # first steps whose median norm is the baseline
HARMLESS_STEPS = 5  # steps with update ratios, from the growth on, to call it harmless


def _not_an_explosion(ctx: Context, s) -> np.ndarray:
    """Non-finite norms that are not the gradients growing: at a step whose loss is NaN/Inf
    already (the loss is the origin: non_finite and the loss rule judge it), or a step the
    run skipped and went on from (series.skipped_steps: a GradScaler's overflow steps)."""
    loss = loss_series(ctx.run)
    skipped = skipped_steps(ctx.run)
    bad_loss: set[int] = set()
    if loss is not None:
        bad = ~np.isfinite(loss.values)
        bad_loss = {int(t) for t in loss.steps[bad]}
    return np.array([int(t) in skipped or int(t) in bad_loss for t in s.steps], dtype=bool)


def _sudden(values: np.ndarray, start: int, band: float) -> np.ndarray:
    """NaN/Inf norms not reached by growth: every finite norm from ``start`` up to them
    stayed within ``band`` (√``grad_norm_growth`` × the baseline, 10×: healthy runs move
    within ~7×). Gradients that explode grow through finite values first — a norm does not
    jump from its usual size past float32's 3.4e38 in one step —, so a NaN/Inf arriving from
    a steady norm was made by an operation (a sqrt or log at 0, a division by 0, an
    overflowing weight gradient): the non_finite rule names it; clipping would not help (a
    NaN norm makes ``clip_grad_norm_`` NaN everything)."""
    out = np.zeros(len(values), dtype=bool)
    grown = False
    for i in range(start, len(values)):
        v = values[i]
        if np.isfinite(v):
            grown = grown or v > band
        elif not grown:
            out[i] = True
    return out


#: ``evidence["measured_on"]`` of gradients that are never zeroed (link.py ranks it first)
KEPT = "p.grad kept across optimizer steps"


def _never_zeroed(ctx: Context, kept: dict) -> Finding:
    """The probe saw a backward begin with the last step's ``.grad`` still in place (never
    zeroed): each step applies the sum of every gradient so far, a step that grows with the
    step count (SGD: lr·Σg), whatever the init or the learning rate."""
    step, param = int(kept.get("step", 1)), kept.get("param")
    s = model_series(ctx.run, "grad_norm", "global")
    evidence: dict = {"measured_on": KEPT, "grads_not_zeroed": step, "param": param}
    if s is not None and len(s) > 1 and np.isfinite(s.values[0]):
        finite = s.values[np.isfinite(s.values)]
        evidence.update(first_norm=float(s.values[0]), peak_norm=float(finite.max()))
    grew = (
        f" (the recorded norm of .grad went from {evidence['first_norm']:.3g} to "
        f"{evidence['peak_norm']:.3g})"
        if "peak_norm" in evidence
        else ""
    )
    return Finding(
        kind="exploding",
        layer=None,
        severity="error",
        step=step,
        onset=step,
        evidence=evidence,
        remedy=Remedy(
            "the gradients are never zeroed: from step "
            f"{step} each backward added to the .grad of the step before ({param}'s was "
            "still there, unchanged), so each optimizer step applies the sum of every "
            "gradient so far and grows with the step count; call optimizer.zero_grad() "
            "after each optimizer.step() (or before each backward)",
            None,
            "opt.step()\nopt.zero_grad()  # every step: .grad holds this step's gradient only",
        ),
        message=f"the gradients were never zeroed between optimizer steps: from step {step} "
        f"every backward added to the last step's .grad{grew}",
    )


def _harmless(ctx: Context, since: int) -> dict | None:
    """Evidence that a growth of the gradient norm did not reach the weights: the update ratios
    were measured on at least ``HARMLESS_STEPS`` steps from ``since`` on and their median over
    the weights stayed under ``large_update_ratio`` on every one, and the loss, recorded, has no
    warning or error. An optimizer that normalises its step (Adam: ≈ lr per weight) does not
    follow the gradient's size; a deep ReLU stack at torch's default init starts with a
    gradient norm of ~0.1 (vanishing at init) and reads 100-300× that once it learns, with
    update ratios of 2e-3-1e-2 and a loss that falls 2.3 → 0.2. None where the run has no
    update ratios or no loss: there the growth alone is the evidence."""
    r = ratios(ctx)
    if r is None or loss_series(ctx.run) is None:
        return None
    cols = r.steps >= since
    per_step = [
        float(np.median(c[np.isfinite(c)])) for c in r.values[:, cols].T if np.isfinite(c).any()
    ]
    if len(per_step) < HARMLESS_STEPS or max(per_step) >= ctx.t.large_update_ratio:
        return None
    if any(f.severity in ("warning", "error") for f in loss(ctx)):  # the loss rule's verdict
        return None
    return {"update_ratio_max": max(per_step), "update_steps": len(per_step)}


@RULES.register("grad_norm")
def grad_norm(ctx: Context) -> list[Finding]:
    kept = ctx.run.meta.get("grads_not_zeroed")
    if isinstance(kept, dict):  # the growth below is that sum's: the cause is the loop
        return [_never_zeroed(ctx, kept)]
    s = without_guard_skips(model_series(ctx.run, "grad_norm", "global"), ctx.run)
    if s is None or len(s) <= BASELINE:
        return []
    head = healthy_norms(s)
    if not head.size:
        return []
    base = float(np.median(head))
    data_bad = np.isin(s.steps, sorted(data_nonfinite_steps(ctx.run)))  # non_finite's case
    first = int(np.nonzero(np.isfinite(s.values) & (s.values > 0))[0][0])
    bad = ~np.isfinite(s.values) & ~data_bad & ~_not_an_explosion(ctx, s)
    bad &= ~_sudden(s.values, first + head.size, ctx.t.grad_norm_growth**0.5 * base)
    with np.errstate(invalid="ignore"):
        over = (np.isfinite(s.values) & (s.values > ctx.t.grad_norm_growth * base)) | bad
    over[: first + head.size] = False
    idx = np.nonzero(over)[0]
    if not idx.size:
        return []
    i = int(idx[0])
    step = int(s.steps[i])
    finite = s.values[np.isfinite(s.values)]
    peak = float(finite.max()) if finite.size else float("nan")
    rising = int(s.steps[first + head.size]) if first + head.size < i else step
    value = float(s.values[i])
    what = (
        f"the global gradient norm grew from {base:.3g} (median of its first {head.size} steps) "
        f"to {value:.3g} at step {step}"
        + (f" (rising from step {rising})" if rising < step else "")
        + (f", peak {peak:.3g}" if np.isfinite(peak) and peak > value else "")
    )
    recurrent = bool(ctx.recurrent)
    severe = value > ctx.t.grad_norm_growth**2 * base or not np.isfinite(value)
    harmless = None if severe else _harmless(ctx, rising)
    if harmless:
        what += (
            f"; but the updates stayed small (median ‖Δw‖/‖w‖ at most "
            f"{harmless['update_ratio_max']:.3g} per step from step {rising} on, over "
            f"{harmless['update_steps']} measured steps; the line is "
            f"{ctx.t.large_update_ratio:g}) and the loss shows no problem: the norm grew from a "
            f"small start as the network learnt, which the optimizer's steps do not follow"
        )
    return [
        Finding(
            kind="exploding",
            layer=None,
            severity="error" if severe else "info" if harmless else "warning",
            step=step,
            onset=step,
            evidence={
                "measured_on": "global gradient norm over training",
                "grad_norm": value,
                "baseline": base,
                "growth": value / base if np.isfinite(value) else float("inf"),
                "threshold": ctx.t.grad_norm_growth,
                "rising_from": rising,
                "peak": peak,
                "steps_over": int(idx.size),
                **(harmless or {}),
            },
            remedy=clip(
                ctx,
                None,
                "the gradients explode during training"
                + (" through the recurrence" if recurrent else ""),
            ),
            message=what,
        )
    ]
