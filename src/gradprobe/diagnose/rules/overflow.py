"""``overflow``: float16/bfloat16 values near the largest the dtype can hold.

Under autocast, a module's float16 output overflows to ±Inf past 65504 (bfloat16: 3.4e38,
float32's range). The probe records ``range_used`` = max|x| / finfo(dtype).max for every
half-precision activation (``activation``) and gradient (``grad_output``); a value above
``overflow_fraction`` (10 %, within one order of magnitude of the limit) is flagged at the
first step and layer it appears — usually before the first NaN/Inf, which the finding then
names as what followed. The dtype's limit is recovered as max|x| / range_used.
"""

from __future__ import annotations

import math

import numpy as np

from ..context import Context
from ..finding import Finding
from ..series import skipped_steps
from ..training import precision
from . import RULES

_FP16_MAX = 65504.0
_WHAT = {"activation": "output", "grad_output": "gradient"}


def _dtype(ctx: Context, quantity: str, layer: str, i: int, used: float) -> str:
    if (quantity, "max_abs") in set(ctx.run.quantities()) and used > 0:
        peak = ctx.matrix(quantity, "max_abs", [layer])[0, i]
        if math.isfinite(peak) and peak > 0:
            limit = peak / used
            return "float16" if abs(math.log10(limit / _FP16_MAX)) < 1 else "bfloat16"
    return "float16"


@RULES.register("overflow")
def overflow(ctx: Context) -> list[Finding]:
    quantities = set(ctx.run.quantities())
    events = [e for e in ctx.run.events() if e.phase in ("forward", "backward")]
    findings = []
    # a run that skips its overflowing steps and goes on (a GradScaler) manages its
    # gradients' range by design: only the forward values can overflow it
    scaled = bool(skipped_steps(ctx.run))
    for quantity in ("activation", "grad_output"):
        if (quantity, "range_used") not in quantities or (scaled and quantity == "grad_output"):
            continue
        names = ctx.run.matrix(quantity, "range_used", role=None)[0]
        values = ctx.matrix(quantity, "range_used", names)
        with np.errstate(invalid="ignore"):
            over = (values > ctx.t.overflow_fraction) | np.isposinf(values)
        cols = np.nonzero(over.any(axis=0))[0]
        if not cols.size:
            continue
        i = int(cols[0])
        layer = names[int(np.nonzero(over[:, i])[0][0])]  # execution order: the first there
        used = float(values[names.index(layer), i])
        step = ctx.steps[i]
        dtype = _dtype(ctx, quantity, layer, i, used)
        later = [e for e in events if e.step >= step]
        after = later[0] if later else None
        reached = (
            "overflowed to ±Inf"
            if not math.isfinite(used)
            else f"reached {used:.0%} of the largest {dtype} value"
        )
        what = f"the {dtype} {_WHAT[quantity]} of {layer} {reached} at step {step}"
        if after is not None:
            where = after.layer or "(input)"
            what += f"; the first NaN/Inf followed at step {after.step} ({after.phase}, {where})"
        layers_over = [n for n, row in zip(names, over, strict=True) if row.any()]
        findings.append(
            Finding(
                kind="overflow",
                layer=layer,
                severity="error" if after is not None or used >= 1 else "warning",
                step=step,
                onset=step,
                evidence={
                    "quantity": quantity,
                    "range_used": used,
                    "dtype": dtype,
                    "threshold": ctx.t.overflow_fraction,
                    "layers_over": len(layers_over),
                    "peak_range_used": float(np.nanmax(np.where(np.isfinite(values), values, 0))),
                    **({"nonfinite_step": after.step} if after is not None else {}),
                },
                remedy=precision(
                    dtype, quantity, f"{dtype} values near their limit in {layer}", ctx.run.meta
                ),
                message=what,
            )
        )
    return findings
