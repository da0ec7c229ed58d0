"""``exploding`` residual stream: the output of transformer blocks growing over training.

In a Pre-LN transformer every block adds its output to the residual stream, and nothing
normalises the stream itself until the final LayerNorm; a learning rate that is too high
grows the blocks' contributions until the stream's rms is thousands of times what it was,
the LayerNorms divide it back down, and the gradients reaching the blocks shrink by as much
(Xiong et al. 2020; Wortsman et al. 2023 see the same growth before their instabilities).
Read on the activation rms of each block (the parent module of an attention module) at
every logged step: a block whose output rms exceeds ``stream_growth`` (1000×) its value at
the first logged step is flagged, at the first step it does. Healthy runs of the corpus
grow it 10–22× from GPT-2's std-0.02 init; the broken ones 1,700–23,000×
(docs/DIAGNOSIS.md). A Post-LN block ends in a LayerNorm, so its output never grows.
"""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding
from ..training import attention_modules, step_size
from . import RULES
from .updates import first_ratio


def blocks(ctx: Context) -> list[str]:
    """Transformer blocks: the parents of attention modules, in execution order."""
    names = {m.name for m in ctx.modules}
    parents = []
    for name in attention_modules(ctx):
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        if parent in names and parent not in parents:
            parents.append(parent)
    return parents


@RULES.register("stream")
def stream(ctx: Context) -> list[Finding]:
    found = blocks(ctx)
    if not found or ("activation", "rms") not in set(ctx.run.quantities()):
        return []
    rms = ctx.matrix("activation", "rms", found)
    hits = []
    for name, row in zip(found, rms, strict=True):
        ok = np.nonzero(np.isfinite(row) & (row > 0))[0]
        if ok.size < 2:
            continue
        growth = row / row[ok[0]]
        with np.errstate(invalid="ignore"):
            over = np.nonzero(growth > ctx.t.stream_growth)[0]
        if over.size:
            hits.append((int(over[0]), name, float(row[ok[0]]), growth))
    if not hits:
        return []
    i, name, first, growth = min(hits)
    step = ctx.steps[i]
    peak = float(np.nanmax(growth))
    what = (
        f"the residual stream after {name} grew {float(growth[i]):.3g}× (rms {first:.3g} at the "
        f"first step, {first * float(growth[i]):.3g} at step {step}; peak {peak:.3g}×)"
    )
    more = f"; {len(hits) - 1} other block(s) too" if len(hits) > 1 else ""
    remedy = step_size(ctx, first_ratio(ctx) or 0.1, step, what)
    return [
        Finding(
            kind="exploding",
            layer=name,
            severity="warning",
            step=step,
            onset=step,
            evidence={
                "measured_on": "residual stream over training",
                "growth": float(growth[i]),
                "peak_growth": peak,
                "rms_first": first,
                "threshold": ctx.t.stream_growth,
                "blocks_over": len(hits),
            },
            remedy=remedy,
            message=what + more,
        )
    ]
