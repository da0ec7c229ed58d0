"""``saturated`` at the output: logits so large at initialisation that the softmax starts
one-hot and the loss far above a uniform guess.

A classifier's first loss should be near ``ln K`` (every class at 1/K). Logits
``z ~ N(0, σ²)`` over ``K`` classes put almost all the probability on one class once
σ ≳ 4, mostly the wrong one: the cross-entropy starts near ``σ·√(2 ln K)`` instead of
``ln K``, and the first hundreds of steps go to shrinking the logits, not to learning.
The classic source is ``nn.Embedding``'s N(0, 1) init tied to the output layer (each
logit a dot product of d unit-variance values: rms ~ √d), or an output layer drawn too wide.
Told from the probe's numbers alone, in a training run (≥ 10 recorded losses; not
``gp.check``'s one step), at the first logged step (step 0):

- the head — the last module run that is a ``Linear`` with ``K ≥ 2`` outputs (its weight's
  rows, or the embedding it is tied to) — gives logits of rms ≥ ``logit_rms`` (4);
- the first recorded loss is above ``2 ln K`` and at most ``2 max|z| + ln K``, the most
  cross-entropy can be on those logits (a summed or another loss is not judged);
- a ``warning`` unless the loss at the end of the run is below ``½ ln K`` (``info``: it
  learnt beyond what the init cost); the tied encoders of held-out batch 6 started at 27
  (7.7× ln 33) and ended 100 steps later at 3.7-4.0, still above a uniform guess.

The remedy follows where the scale comes from, ``‖W‖_F/√K`` (the gain of the head's rows,
``σ_w·√fan_in``) against the logits' rms: the head's weights (re-initialise them, or the
embedding they are tied to, with std 0.02 — or the head with zeros), or its input (a final
LayerNorm before the head).
"""

from __future__ import annotations

import math

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from ..series import loss_series
from . import RULES

HEAD_GAIN = 2.0  # ‖W‖_F/√K above this: the head's own weights make the logits large
MIN_STEPS = 10  # recorded losses: whether it learnt through it needs a run
LEARNT = 0.5  # a loss that ended below this × ln K learnt beyond the init's cost: info


def _head(ctx: Context) -> tuple[str, str, int] | None:
    """(head module, the parameter holding its weight, K): the last module run that is a
    Linear whose weight (or the parameter it is tied to) has a recorded shape."""
    shapes = {la.name: la.shape for la in ctx.run.layers("param")}
    tied = ctx.run.meta.get("tied_params")
    tied = tied if isinstance(tied, dict) else {}
    for m in sorted(ctx.modules, key=lambda m: m.position, reverse=True):
        if ctx.module_type(m.name) != "Linear":
            continue
        w = m.name + ".weight"
        w = tied.get(w, w)
        shape = shapes.get(w)
        if shape and len(shape) == 2 and shape[0] >= 2:
            return m.name, w, int(shape[0])
        return None  # the last Linear: its shape unknown
    return None


@RULES.register("logit_scale")
def logit_scale(ctx: Context) -> list[Finding]:
    if not ctx.steps or ctx.steps[0] != 0:
        return []
    q = set(ctx.run.quantities())
    if ("activation", "rms") not in q or ("activation", "max_abs") not in q:
        return []
    head = _head(ctx)
    loss = loss_series(ctx.run)
    if head is None or loss is None or not loss.values.size:
        return []
    name, weight, k = head
    rms = float(ctx.matrix("activation", "rms", [name])[0, 0])
    peak = float(ctx.matrix("activation", "max_abs", [name])[0, 0])
    values = loss.values
    first = float(values[0]) if int(loss.steps[0]) == 0 else math.nan
    chance = math.log(k)
    if not (math.isfinite(rms) and rms >= ctx.t.logit_rms and math.isfinite(first)):
        return []
    if not 2 * chance < first <= 2 * peak + chance:
        return []
    finite = values[np.isfinite(values)]
    if finite.size < MIN_STEPS:  # a training run: an init check (gp.check) has one loss
        return []
    end = float(np.median(finite[-max(5, finite.size // 10) :]))
    recovered = end < LEARNT * chance
    w_norm = (
        float(ctx.matrix("weight", "norm", [weight])[0, 0]) if ("weight", "norm") in q else math.nan
    )
    gain = w_norm / math.sqrt(k) if math.isfinite(w_norm) else math.nan
    from_weights = not math.isfinite(gain) or gain > HEAD_GAIN
    tied = weight != name + ".weight"
    evidence = {
        "measured_on": "the logits at initialisation (the head's output)",
        "classes": k,
        "logit_rms": rms,
        "logit_max_abs": peak,
        "loss_first": first,
        "loss_uniform": chance,
        "loss_end": end,
        "head_gain": gain,
        "threshold": ctx.t.logit_rms,
    }
    if from_weights:
        where = (f"{weight}, tied to {name}" if tied else f"{name}'s weights") + (
            f" (‖W‖_F/√K = {gain:.3g}: each logit a sum that grows as √fan_in)"
            if math.isfinite(gain)
            else ""
        )
        remedy = Remedy(
            f"initialise {'the embedding tied to the output layer' if tied else 'the output layer'}"
            f" small so the first loss is near ln {k} = {chance:.3g}: std 0.02 (GPT-2's), "
            f"or the head's weights at zero; nn.Embedding's default N(0, 1) gives logits of "
            f"rms √d when it is tied to the head",
            None,
            f"torch.nn.init.normal_(model.{weight}, std=0.02)"
            + (
                f"  # tied with {name}"
                if tied
                else f"\ntorch.nn.init.zeros_(model.{name}.bias)  # if it has one"
            ),
        )
    else:
        where = (
            f"{name}'s input (its weights' gain is {gain:.3g}; the input's rms ~{rms / gain:.3g})"
        )
        remedy = Remedy(
            f"the input of {name} is large: normalise it before the head (a final LayerNorm, "
            f"as GPT-2's ln_f) so the first loss is near ln {k} = {chance:.3g}",
            None,
            f"self.ln_f = nn.LayerNorm(d)  # logits = self.{name.rsplit('.', 1)[-1]}(self.ln_f(h))",
        )
    state = (
        f"the run learnt through it (it ended at {end:.3g}, below ½ ln {k})"
        if recovered
        else f"it ended at {end:.3g}, still no better than a uniform guess"
    )
    return [
        Finding(
            kind="saturated",
            layer=name,
            severity="info" if recovered else "warning",
            step=0,
            onset=0,
            evidence=evidence,
            remedy=remedy,
            message=(
                f"the logits of {name} have rms {rms:.3g} (max |z| {peak:.3g}) at "
                f"initialisation, so its softmax over {k} classes starts near one-hot: the "
                f"first loss was {first:.3g}, {first / chance:.3g}× ln {k} = {chance:.3g} (a "
                f"uniform guess); {state}. The scale comes from {where}"
            ),
        )
    ]
