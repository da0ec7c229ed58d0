"""``saturated`` at the output: probabilities given to a loss that takes logits.

``F.cross_entropy`` / ``nn.CrossEntropyLoss`` apply ``log_softmax`` to their input. A model
that ends in ``nn.Softmax`` hands them probabilities p ∈ [0, 1]; the loss then computes
−log softmax(p)_y, which is at least log(1 + (K − 1)/e) for K classes (p_y = 1, the rest 0:
1.46 for 10 classes, 0.31 for 2) — the loss cannot fall below it, and the gradient through
the second softmax shrinks as the first saturates. Told from the probe's numbers alone:

- the last module's output is a probability vector on every logged step: its mean is 1/K
  (each row sums to 1) to 1e-4 for an integer K ≥ 2, and no value is above 1;
- the recorded loss never went below that floor, and ended within ``1.25×`` of it and
  within half its start's distance from it (it approached the floor and stayed: a model
  that takes ``log`` of the probabilities and ``NLLLoss``, the right use, falls below the
  floor as it learns; with 1000 classes the floor, 5.9, is near the start, log 1000 = 6.9,
  so a short run that has not fallen yet tells nothing).
"""

from __future__ import annotations

import math

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from ..series import loss_series
from . import RULES

MEAN_TOL = 1e-4  # |mean · K − 1| on every logged step
NEAR_FLOOR = 1.25  # the loss's end within this factor of the floor
APPROACHED = 0.5  # ... and within this share of its start's distance from the floor
MIN_STEPS = 3  # logged steps with the output's statistics


def floor(k: int) -> float:
    """min over probabilities p of −log softmax(p)_y: log(1 + (K − 1)/e), at p = e_y."""
    return math.log1p((k - 1) / math.e)


def _classes(ctx: Context, name: str) -> int | None:
    """K when ``name``'s output is a probability vector over K classes on every logged step."""
    q = set(ctx.run.quantities())
    if ("activation", "mean") not in q or ("activation", "max_abs") not in q:
        return None
    mean = ctx.matrix("activation", "mean", [name])[0]
    peak = ctx.matrix("activation", "max_abs", [name])[0]
    ok = np.isfinite(mean) & np.isfinite(peak) & (mean > 0)
    if ok.sum() < MIN_STEPS or peak[ok].max() > 1 + 1e-6:
        return None
    k = round(1 / float(np.median(mean[ok])))
    if k < 2 or np.abs(mean[ok] * k - 1).max() > MEAN_TOL:
        return None
    return k


@RULES.register("probabilities")
def probabilities(ctx: Context) -> list[Finding]:
    if not ctx.modules or not ctx.steps:
        return []
    out = max(ctx.modules, key=lambda m: m.position).name
    k = _classes(ctx, out)
    loss = loss_series(ctx.run)
    if k is None or loss is None:
        return []
    values = loss.values[np.isfinite(loss.values)]
    if values.size < 10:
        return []
    least = floor(k)
    start = float(np.median(values[:5]))
    end = float(np.median(values[-max(5, values.size // 10) :]))
    if values.min() < least - 1e-3 or end > NEAR_FLOOR * least:
        return []
    if end - least > APPROACHED * (start - least):  # it has not come near the floor yet
        return []
    kind = ctx.module_type(out) or "module"
    # a Softmax module, or a softmax at the end of a forward (the root's output)
    final = (
        f"final {kind}"
        if kind in ("Softmax", "Softmax2d")
        else f"softmax at the end of the forward ({kind}.forward)"
    )
    named = f"{out} ({kind})" if out != "(model)" else f"(the output of {kind}.forward)"
    return [
        Finding(
            kind="saturated",
            layer=out,
            severity="warning",
            step=ctx.steps[0],
            onset=0,
            evidence={
                "measured_on": "the model's output: probabilities given to a loss on logits",
                "classes": k,
                "loss_floor": least,
                "loss_min": float(values.min()),
                "loss_end": end,
            },
            remedy=Remedy(
                f"remove the {final}: F.cross_entropy / nn.CrossEntropyLoss take logits "
                f"(they apply log_softmax themselves); apply softmax only where "
                f"probabilities are needed (inference), or take their log and use NLLLoss",
                None,
                "logits = model(x)  # the model ends in its last Linear, no Softmax\n"
                "loss = F.cross_entropy(logits, y)\n"
                "probs = logits.softmax(dim=-1)  # for reading only",
            ),
            message=(
                f"the model's output {named} is a probability vector over {k} classes "
                f"(its mean is 1/{k} on every logged step, no value above 1), and the loss "
                f"never went below {least:.3g} = log(1 + {k - 1}/e), the least "
                f"cross-entropy can give when its input is probabilities (it ended at "
                f"{end:.3g}): a softmax before a loss that applies log_softmax itself — the "
                f"loss cannot fall further, and its gradient shrinks as the softmax saturates"
            ),
        )
    ]
