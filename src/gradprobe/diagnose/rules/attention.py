"""``attention_logits``: attention logits q·k/√d that grow until softmax is one-hot.

The probe records per attention module the largest logit (``attention / max_logit``) and
the attention entropy in nats (``entropy``: mean over the sampled heads and queries;
``entropy_min``). Without QK-norm, a high learning rate grows the query and key weights
until the logits reach the hundreds or thousands and the attention collapses onto single
tokens — "attention logit growth" (Dehghani et al. 2023, ViT-22B; Wortsman et al. 2023),
"entropy collapse" (Zhai et al. 2023) — after which the loss stalls or diverges.

Flagged when the max logit exceeds ``attention_logit`` (100: e^100 ≈ 10^43, so the largest
logit alone takes all the attention whatever the others are; healthy small models trained
here stay below 25) and has grown to at least ``attention_growth`` (2) times its value at the
first recorded step: the failure is growth. A logit already that large at the first step that
does not grow is an info finding, not a warning: eager attention is sampled from softmax's
input, which holds any additive bias — ALiBi's slope × key position (Press et al. 2022: 127.5
for a fresh 8-head Bloom at 256 tokens, where q·k/√d is ~0.05), a relative-position bias —
and such a bias is fixed by design. The entropy is evidence, not a trigger: a healthy head
that attends to exactly one token (the previous one, say) has an entropy near 0 too. One
finding names the module that crossed first and lists the others.
"""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding
from ..training import qk_norm
from . import RULES


def _rows(ctx: Context, stat: str) -> tuple[list[str], np.ndarray]:
    if ("attention", stat) not in set(ctx.run.quantities()):
        return [], np.zeros((0, len(ctx.steps)))
    names = ctx.run.matrix("attention", stat, role=None)[0]
    return names, ctx.matrix("attention", stat, names)


@RULES.register("attention")
def attention(ctx: Context) -> list[Finding]:
    names, logits = _rows(ctx, "max_logit")
    if not names:
        return []
    ent_names, ent = _rows(ctx, "entropy")
    ent_of = dict(zip(ent_names, ent, strict=True))
    t = ctx.t
    hits = []  # (step index, -logit, name)
    large = []  # (name, first, peak): over the threshold from the first step, never grown
    for name, row in zip(names, logits, strict=True):
        finite = np.nonzero(np.isfinite(row))[0]
        if not finite.size:
            continue
        first = float(row[finite[0]])
        with np.errstate(invalid="ignore"):
            over = row > t.attention_logit
            grown = np.nonzero(over & (row >= t.attention_growth * first))[0]
        if grown.size:
            i = int(grown[0])
            hits.append((i, -float(row[i]), name))
        elif over.any():
            large.append((name, first, float(np.nanmax(row))))
    if not hits:
        return [_large_from_the_start(ctx, large)] if large else []
    hits.sort()
    i, _, name = hits[0]
    row = logits[names.index(name)]
    entropy = ent_of.get(name, np.full_like(row, np.nan))
    finite = np.nonzero(np.isfinite(row))[0]
    first, peak = float(row[finite[0]]), float(np.nanmax(row))
    peak_step = ctx.steps[int(np.nanargmax(row))]
    step = ctx.steps[i]
    others = {n: float(np.nanmax(logits[names.index(n)])) for _, _, n in hits}
    ent_first = float(entropy[finite[0]]) if np.isfinite(entropy[finite[0]]) else None
    ent_then = float(entropy[i]) if np.isfinite(entropy[i]) else None
    what = (
        f"the largest attention logit of {name} grew from {first:.3g} (step "
        f"{ctx.steps[int(finite[0])]}) to {float(row[i]):.3g} at step {step} and {peak:.3g} "
        f"at step {peak_step}"
    )
    if ent_first is not None and ent_then is not None:
        what += f"; its attention entropy fell from {ent_first:.3g} to {ent_then:.3g} nats"
    more = f"; {len(hits) - 1} other attention module(s) too" if len(hits) > 1 else ""
    return [
        Finding(
            kind="attention_logits",
            layer=name,
            severity="warning",
            step=step,
            onset=step,
            evidence={
                "max_logit": float(row[i]),
                "max_logit_first": first,
                "max_logit_peak": peak,
                "peak_step": peak_step,
                "entropy_first": ent_first if ent_first is not None else "not recorded",
                "entropy": ent_then if ent_then is not None else "not recorded",
                "threshold": t.attention_logit,
                "modules": len(hits),
                "per_module_peak": others,
            },
            remedy=qk_norm("the attention logits grow until softmax attends to one token"),
            message=what + more,
        )
    ]


def _large_from_the_start(ctx: Context, large: list[tuple[str, float, float]]) -> Finding:
    """Info: max logits over the threshold at the first recorded step that never grew (a
    fixed additive bias such as ALiBi in softmax's input, or large q/k weights at init)."""
    name, first, peak = max(large, key=lambda x: x[1])
    more = f"; {len(large) - 1} other attention module(s) too" if len(large) > 1 else ""
    return Finding(
        kind="attention_logits",
        layer=name,
        severity="info",
        step=ctx.steps[0],
        onset=ctx.steps[0],
        evidence={
            "max_logit_first": first,
            "max_logit_peak": peak,
            "threshold": ctx.t.attention_logit,
            "growth_needed": ctx.t.attention_growth,
            "modules": len(large),
        },
        message=(
            f"the largest softmax input of {name} is {first:.3g} from the first recorded step "
            f"(peak {peak:.3g}) and did not grow: a fixed additive bias in the attention "
            "logits (ALiBi, a relative-position bias) or large query/key weights at "
            "initialisation, not logit growth" + more
        ),
    )
