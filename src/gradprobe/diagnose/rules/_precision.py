"""Weights stored in bfloat16 or float16 with no float32 copy, whose steps round away.

An element ``w`` changes only by a step over half its spacing: the spacing of ``w`` is more
than ``u·|w|`` (``u``, the unit roundoff: 2⁻⁸ ≈ 0.0039 for bfloat16, 2⁻¹¹ ≈ 4.9e-4 for
float16), so every element that moves moves by more than ``u`` of itself, and ‖Δw‖/‖w‖ ≥
u·√M where M is the share of ‖w‖² held by the elements that moved. A median ratio under u/2
is M < 1/4: on a typical step at least three quarters of the weight did not change at all,
while its gradient was not 0. No threshold is tuned here: the line is the format's. A float32
weight's u is 6e-8, far below any ratio the updates rule judges. ``meta["param_dtypes"]``
(the probe) says which parameters are not float32.
"""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from ..series import sig, skipped_steps
from ..training import ADAPTIVE, peak_lr

#: unit roundoff (half the spacing at 1) of the dtypes a model is cast to without a copy
ROUNDOFF = {"bfloat16": 2.0**-8, "float16": 2.0**-11}
SPACING_TEXT = {"bfloat16": "2⁻⁸ ≈ 0.0039", "float16": "2⁻¹¹ ≈ 0.00049"}
#: modules whose weight's rows are untouched by a step by design (rows not in the batch)
SPARSE_ROWS = ("Embedding", "EmbeddingBag")


def low_precision(ctx: Context, names: list[str]) -> dict[str, str]:
    """``{weight: dtype}`` of those stored in bfloat16 or float16 (``meta["param_dtypes"]``)."""
    dtypes = ctx.run.meta.get("param_dtypes") or {}
    if not isinstance(dtypes, dict):
        return {}
    return {n: dtypes[n] for n in names if dtypes.get(n) in ROUNDOFF}


def rounded_away(
    ctx: Context, names: list[str], steps: np.ndarray, values: np.ndarray
) -> Finding | None:
    """``small_updates`` for the low-precision weights whose median update ratio (exact zeros
    included: a step rounded away entirely reads 0) is under u/2 of their dtype, on at least
    three measured steps with a gradient that is not 0; None otherwise."""
    low = low_precision(ctx, names)
    if not low:
        return None
    keep = ~np.isin(steps, sorted(skipped_steps(ctx.run)))  # a GradScaler's skipped steps
    grads = None
    if ("param_grad", "rms") in set(ctx.run.quantities()):
        grads = ctx.matrix("param_grad", "rms", names)
    under: dict[str, float] = {}
    for i, name in enumerate(names):
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if name not in low or ctx.module_type(owner) in SPARSE_ROWS:
            continue
        row = values[i, keep]
        ok = np.isfinite(row)
        if grads is not None:
            ok &= np.isfinite(grads[i, keep]) & (grads[i, keep] > 0)
        if ok.sum() < 3:
            continue
        median = float(np.median(row[ok]))
        if median < ROUNDOFF[low[name]] / 2:
            under[name] = median
    if not under:
        return None
    worst = min(under, key=lambda n: under[n])
    dtype, median = low[worst], under[worst]
    u = ROUNDOFF[dtype]
    onset = int(steps[keep][np.nonzero(np.isfinite(values[names.index(worst), keep]))[0][0]])
    every = len(under) == len(names)
    which = "every trained weight" if every else f"{len(under)} of {len(names)} weights"
    what = (
        f"{which} ({', '.join(list(under)[:3])}{', ...' if len(under) > 3 else ''}) "
        f"{'is' if every else 'are'} stored in {dtype} with no float32 copy, and the steps round "
        f"away: median ‖Δw‖/‖w‖ of {worst} = {median:.2g} per step against {dtype}'s relative "
        f"spacing {SPACING_TEXT[dtype]} (an element changes only by a step over half its "
        f"spacing: under {u / 2:.2g}, at least 3/4 of the weight did not move on a typical step "
        f"while its gradient was not 0)"
    )
    return Finding(
        kind="small_updates",
        layer=worst,
        severity="warning",
        step=onset,
        onset=onset,
        evidence={
            "median_update_ratio": median,
            "dtype": dtype,
            "relative_spacing": u,
            "threshold": u / 2,
            "updated": f"rounded away ({dtype} weights)",
            "weights_under": len(under),
            "weights": len(names),
            "per_weight": dict(sorted(under.items(), key=lambda kv: kv[1])[:8]),
        },
        remedy=_remedy(ctx, worst, dtype, what),
        message=what,
    )


def _intended(ctx: Context, name: str) -> float | None:
    """The step the optimizer meant, as a share of each element, at the run's peak lr: Adam
    and its kin ≈ lr/rms(w) (their step is ≈ lr per element); SGD lr·‖g‖/‖w‖ ÷ (1 −
    momentum). None without the numbers."""
    lr, opt = peak_lr(ctx), ctx.run.meta.get("optimizer") or {}
    if lr is None or not {("weight", "norm"), ("param_grad", "norm")} <= set(ctx.run.quantities()):
        return None
    w = ctx.matrix("weight", "norm", [name])[0]
    w = w[np.isfinite(w) & (w > 0)]
    if not w.size:
        return None
    if opt.get("type") in ADAPTIVE:
        shape = next((la.shape for la in ctx.run.layers("param") if la.name == name), None)
        n = int(np.prod(shape)) if shape else 0
        return lr * np.sqrt(n) / float(np.median(w)) if n else None
    g = ctx.matrix("param_grad", "norm", [name])[0]
    g = g[np.isfinite(g) & (g > 0)]
    momentum = opt.get("momentum") or 0.0
    if not g.size or not 0 <= momentum < 1:
        return None
    return lr * float(np.median(g)) / float(np.median(w)) / (1 - momentum)


def _remedy(ctx: Context, name: str, dtype: str, what: str) -> Remedy:
    device = str(ctx.run.meta.get("device") or "cuda").split(",")[0].split(":")[0]
    kind = (ctx.run.meta.get("optimizer") or {}).get("type") or "AdamW"
    lr = peak_lr(ctx)
    lr_text = f"{sig(lr, 3):g}" if lr else "lr"
    code = (
        "model = model.float()  # float32 weights: small steps add up instead of rounding away\n"
        f"opt = torch.optim.{kind}(model.parameters(), lr={lr_text})  "
        "# rebuilt over the float32 weights\n"
        f"with torch.autocast(device_type={device!r}, dtype=torch.{dtype}):  # compute in {dtype}\n"
        "    loss = loss_fn(model(x), y)"
    )
    intended = _intended(ctx, name)
    larger = ""
    u = ROUNDOFF[dtype]
    if lr is not None and intended is not None and intended < 2 * u:
        new = sig(lr * 2 * u / intended, 1)
        larger = f" (about {new:g}: steps of ~{2 * u:.2g} of each element, twice the spacing)"
        code += (
            f"\n# or, keeping {dtype} weights: a learning rate whose steps clear the spacing\n"
            f"for group in opt.param_groups:\n    group['lr'] = {new:g}"
        )
    return Remedy(
        f"{what}: keep the weights in float32 and compute in {dtype} under torch.autocast "
        f"(mixed precision: the optimizer's steps land in float32), or, keeping {dtype} "
        f"weights, a larger learning rate{larger} or an optimizer with stochastic rounding or "
        f"Kahan-compensated updates",
        None,
        code,
    )
