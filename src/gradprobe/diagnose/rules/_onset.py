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
    owner = _owner(ctx, f.layer)
    peak = peak_before(ctx, f.onset, owner)
    jump = _moved_outside(ctx, owner, f.onset) if peak is not None else None
    if peak is not None and jump is not None and peak <= ctx.t.large_update_ratio:
        name, s0, a, b = jump
        evidence["update_ratio_before"] = peak
        evidence["moved_outside_step"] = {"param": name, "from_step": s0, "norm": [a, b]}
        what += f" after update ratios of up to {peak:.2g}"
        said += f" after update ratios of up to {peak:.2g}"
        remedy = Remedy(
            f"{what}, while {name}'s norm went from {a:.3g} to {b:.3g} between steps {s0} "
            f"and {f.onset}: the optimizer's steps cannot move it that far, so something "
            f"outside opt.step() wrote to it (an edit under torch.no_grad(), a state dict "
            f"loaded into the wrong layer, a clamp, an EMA or pruning swap) — find that "
            f"write; {alternative}",
        )
    elif peak is not None:
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


#: a parameter's norm this many times larger or smaller from one logged step to the next
#: (and this far past what its update ratios allow) was not moved by the optimizer
OUTSIDE_JUMP = 10.0


def _moved_outside(ctx: Context, owner: str | None, onset: int) -> tuple | None:
    """``(parameter, step before, norm then, norm at onset)`` for a parameter of ``owner``
    whose norm changed between the logged step before ``onset`` and ``onset`` by more than
    ``OUTSIDE_JUMP``× and more than ``OUTSIDE_JUMP``× what ``gap`` optimizer steps at its
    recorded update ratios could (‖w‖ changes by at most a factor 1 + r a step): written
    outside the optimizer's step. None where nothing says so."""
    if owner is None or onset not in ctx.steps or ctx.steps.index(onset) == 0:
        return None
    i = ctx.steps.index(onset)
    s0 = ctx.steps[i - 1]
    names = [la.name for la in ctx.run.layers("param") if la.name.startswith(owner + ".")]
    if not names:
        return None
    norms = ctx.matrix("weight", "norm", names)[:, i - 1 : i + 1]
    ratios = ctx.matrix("update", "ratio", names)
    for k, name in enumerate(names):
        a, b = (float(v) for v in norms[k])
        if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
            continue
        near = ratios[k, i - 1 : i + 1]  # the steps measured around the change, else all
        seen = near[np.isfinite(near)]
        seen = seen if seen.size else ratios[k, : i + 1][np.isfinite(ratios[k, : i + 1])]
        r = float(seen.max()) if seen.size else 0.0
        allowed = (1 + r) ** (onset - s0)
        change = max(b / a, a / b)
        if change > OUTSIDE_JUMP and change > OUTSIDE_JUMP * allowed:
            return name, s0, a, b
    return None


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
