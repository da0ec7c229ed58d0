"""What a per-layer problem that appeared during training (not at the first logged step)
is blamed on: the step size — the learning rate, a missing warm-up — not the init."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from ..training import step_size
from .updates import first_ratio, peak_before


def during_training(ctx: Context, f: Finding, stat: str, alternative: str) -> Finding:
    """``f`` with where it began in its evidence; if that was after the first logged step,
    the remedy is the step size (with ``alternative``, e.g. a LeakyReLU) instead of the
    init's."""
    if f.layer is None:
        return f
    row = ctx.matrix("activation", stat, [f.layer])[0]
    finite = np.nonzero(np.isfinite(row))[0]
    first = float(row[finite[0]]) if finite.size else float("nan")
    first_step = ctx.steps[int(finite[0])] if finite.size else None
    evidence = {**f.evidence, f"{stat}_fraction_at_first_step": first}
    if first_step is None or f.onset is None or f.onset <= first_step:
        return dataclasses.replace(f, evidence={**evidence, "appeared": "at initialisation"})
    evidence["appeared"] = "during training"
    frac = f.evidence.get(f"{stat}_fraction", float("nan"))
    what = (
        f"{frac:.0%} of {f.layer}'s units became {'dead' if stat == 'dead' else stat} during "
        f"training (step {f.onset}; {first:.0%} at step {first_step})"
    )
    said = f"; it appeared during training ({first:.0%} at step {first_step})"
    peak = peak_before(ctx, f.onset, _owner(ctx, f.layer))
    if peak is not None:
        evidence["update_ratio_before"] = peak
        what += f" after update ratios of up to {peak:.2g}"
        said += f" after update ratios of up to {peak:.2g}"
        base = step_size(ctx, first_ratio(ctx) or peak, f.onset, what)
        remedy = Remedy(f"{base.text}; {alternative}", None, base.code)
    else:
        remedy = Remedy(
            f"{what}: the step size is too large, not the init; lower the learning rate or "
            f"warm it up; {alternative}",
            None,
            "for group in opt.param_groups:\n    group['lr'] /= 10",
        )
    return dataclasses.replace(f, evidence=evidence, remedy=remedy, message=f.message + said)


def _owner(ctx: Context, layer: str | None) -> str | None:
    """The weight layer that feeds activation ``layer``: the last module with weights that
    runs before it."""
    if layer is None:
        return None
    order = [m.name for m in ctx.modules]
    if layer not in order:
        return None
    weights = set(ctx.weight_layers)
    before = [n for n in order[: order.index(layer)] if n in weights]
    return before[-1] if before else None
