"""Remedies for what goes wrong during training, as code: the step size (a lower learning
rate, warm-up, Pre-LN), gradient clipping with a max-norm read from the run, QK-norm or
logit capping for attention, bf16 or a GradScaler for float16 — and the facts they need
(the learning rate at a step, which attention blocks are Post-LN).

Numbers written into the code are chosen from the run: the lower learning rate brings the
first steps' update ratio to ``TARGET_EARLY_RATIO``; the warm-up is long enough for the
first step to stay there; the clipping norm is the median global gradient norm of the
steps before the trouble began (:func:`healthy_norms`).
"""

from __future__ import annotations

import math

import numpy as np

from .context import Context
from .finding import Remedy
from .series import Series, model_series, sig

#: the first steps' ‖Δw‖/‖w‖ a lower learning rate aims at: Adam's first step is ≈ lr per
#: element (its bias correction makes |m̂/√v̂| ≈ 1), so the first update ratio is lr / rms(w)
#: and ~1e-2 is where healthy runs start (then fall towards ~1e-3)
TARGET_EARLY_RATIO = 1e-2

#: SGD moves the weights by lr·‖g‖ a step (momentum only adds to it on average): a median
#: ‖Δθ‖ this far below lr·‖g‖, with ‖g‖ the backward's norm, means the gradient was scaled
#: down between the backward and opt.step() (a clip_grad_norm_ max_norm far under ‖g‖)
SCALED_DOWN = 1e-2

_ATTENTION = ("Attention", "MultiheadAttention", "SelfAttention")
_NORMS = ("LayerNorm", "RMSNorm")


def lr_series(ctx: Context) -> Series | None:
    return model_series(ctx.run, "lr", "value")


def lr_at(ctx: Context, step: int | None) -> float | None:
    s = lr_series(ctx)
    if s is None or step is None:
        return None
    v = s.at(step)
    return v if v is not None and math.isfinite(v) and v > 0 else None


def peak_lr(ctx: Context) -> float | None:
    s = lr_series(ctx)
    if s is None:
        return None
    finite = s.values[(s.values > 0) & (s.values < math.inf)]
    return float(finite.max()) if finite.size else None


def warmed_up(ctx: Context) -> bool:
    """The recorded learning rate rose over the first steps (a warm-up is in place)."""
    s = lr_series(ctx)
    if s is None or len(s) < 2:
        return False
    first, top = s.values[0], peak_lr(ctx)
    return bool(top is not None and math.isfinite(first) and first < 0.5 * top)


#: a learning rate that rises this much from one step to the next was changed by hand or by
#: a schedule, not warmed up: a linear warm-up's largest step-to-step rise is 2× (1/w → 2/w)
LR_JUMP = 3.0


def lr_jumps(ctx: Context) -> list[tuple[int, float, float]]:
    """``(step, lr before, lr at step)`` for each step whose recorded learning rate is at
    least ``LR_JUMP`` times the step before's (from a non-zero value: a warm-up from 0 is
    not a jump) and does not go on rising at the next step: a rise that goes on is a ramp
    (a linear warm-up from a small start, ``LinearLR(start_factor=1e-3)``: ×7 at its first
    step from 1e-3 to 0.3 over 50 steps), whose peak, not its first step, is to judge."""
    s = lr_series(ctx)
    if s is None or len(s) < 2:
        return []
    a, b = s.values[:-1], s.values[1:]
    after = np.append(s.values[2:], np.nan)  # the lr one step after the rise
    with np.errstate(invalid="ignore", divide="ignore"):
        up = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b >= LR_JUMP * a)
        ramp = np.isfinite(after) & (after > b * (1 + 1e-6))
    return [(int(s.steps[i + 1]), float(a[i]), float(b[i])) for i in np.nonzero(up & ~ramp)[0]]


def warmup_ramp(ctx: Context) -> tuple[float, float, int] | None:
    """``(first lr, peak lr, step the peak is first reached)`` when the recorded learning
    rate rose over the first steps (:func:`warmed_up`), else None."""
    s = lr_series(ctx)
    if not warmed_up(ctx) or s is None:
        return None
    top = peak_lr(ctx)
    reached = int(s.steps[int(np.nonzero(s.values >= top * (1 - 1e-6))[0][0])])
    return float(s.values[0]), float(top), reached  # type: ignore[arg-type]


def lr_jump_remedy(step: int, before: float, after: float, what: str) -> Remedy:
    """The learning rate was raised at ``step`` and ``what`` followed: go back, or ramp."""
    keep = sig(before, 3)
    return Remedy(
        f"{what}: the learning rate jumped {after / before:.3g}× at step {step} ({keep:g} → "
        f"{sig(after, 3):g}) just before; keep it near {keep:g} (check the scheduler or the "
        f"code that sets it), or raise it gradually over a few hundred steps",
        None,
        f"for group in opt.param_groups:\n    group['lr'] = {keep:g}"
        f"  # the schedule raised it {after / before:.3g}× at step {step}",
    )


#: a recorded learning rate this far under the highest one before it has stopped training:
#: a schedule that divides it by 10 a step (StepLR(step_size=1) stepped on every batch where
#: step_size was meant in epochs) is there by step 3, while a linear or cosine decay to 0
#: reaches it only in the last 1–6 % of the run
LR_COLLAPSE = 1e-2


def lr_collapse(ctx: Context) -> tuple[int, float, float] | None:
    """``(step, peak, last)`` when the recorded learning rate fell under ``LR_COLLAPSE`` × the
    highest value before it at ``step`` and stayed there to the end, for at least half of
    the run: the schedule, not the learning rate it started from, is what keeps the weights
    from moving. ``peak`` is the lr before the fall, ``last`` the lr at the last step."""
    s = lr_series(ctx)
    if s is None or len(s) < 10:
        return None
    v = s.values
    finite = np.isfinite(v) & (v >= 0)
    peak = np.maximum.accumulate(np.where(finite, v, 0.0))
    low = finite & (v < LR_COLLAPSE * peak)
    if not low[-1]:
        return None
    high = np.nonzero(~low)[0]
    i = int(high[-1]) + 1 if high.size else 0
    if len(v) - i < 0.5 * len(v) or peak[i] <= 0:
        return None
    return int(s.steps[i]), float(peak[i]), float(v[-1])


def lr_collapse_remedy(step: int, peak: float, last: float, what: str) -> Remedy:
    """The schedule took the learning rate to ~0 early and kept it there: keep it near
    where it started for most of the run (a higher starting lr would collapse the same)."""
    keep = sig(peak, 3)
    if last == 0:  # not a decay stepped too often: the schedule's own value is 0
        return Remedy(
            f"{what}: the learning rate schedule set the lr from {keep:g} to exactly 0 at "
            f"step {step} and kept it there, so no weight can move — a schedule function "
            f"that returns 0 past a point (a warm-up lambda `(s + 1) / w if s < w else 0` "
            f"missing its `else 1.0`, a decay that ends at 0 before the run does); keep the "
            f"lr near {keep:g} after the warm-up",
            None,
            f"for group in opt.param_groups:\n    group['lr'] = {keep:g}"
            f"  # the schedule set it to 0 at step {step}\n"
            "# e.g. warm-up then constant: LambdaLR(opt, lambda s: min(1.0, (s + 1) / w))",
        )
    return Remedy(
        f"{what}: the learning rate schedule took the lr from {keep:g} to under "
        f"{LR_COLLAPSE:g}× that by step {step} ({sig(last, 2):g} at the end), so no weight "
        f"can move — a scheduler stepped on every batch where its step_size / T_max / gamma "
        f"was meant per epoch; keep the lr near {keep:g} for most of the run (step the "
        f"scheduler once per epoch, or count its step_size in optimizer steps) rather than "
        f"raising the starting lr",
        None,
        f"for group in opt.param_groups:\n    group['lr'] = {keep:g}"
        f"  # the schedule lowered it to {sig(last, 2):g} by step {step}\n"
        "# and step the scheduler once per epoch (or give it step_size / T_max in steps)",
    )


#: weight decay that shrinks every weight by this fraction of itself a step (lr·wd, and
#: lr·wd/(1 − momentum) for SGD's L2 term) erases what the gradient adds faster than it is
#: learnt: AdamW at lr 1e-2 with wd 1 (0.01 a step) still learns the digits 2.2 → 0.1 in 200
#: steps (docs/DIAGNOSIS.md, held-out check), wd 10 (0.1 a step) stalls at half its start
#: and SGD 0.1 with weight_decay=1 (0.1) learns nothing; the line sits between
HEAVY_DECAY = 0.03


def decay_per_step(ctx: Context) -> tuple[float, float, float] | None:
    """``(fraction, lr, weight_decay)``: how much of each weight the optimizer's weight
    decay removes a step at the run's median recorded lr — lr·wd for AdamW (decoupled) and
    for SGD (its L2 term, ÷ (1 − momentum) with momentum). None for other optimizers (Adam's
    L2 term is divided by √v̂: its pull is not lr·wd), without a recorded lr or weight decay,
    or when the param groups differ (a group without decay is usual: norms, biases)."""
    opt = optimizer_of(ctx)
    kind, wd = opt.get("type"), opt.get("weight_decay")
    if kind not in ("SGD", "AdamW") or not isinstance(wd, (int, float)) or wd <= 0:
        return None
    if not opt.get("groups_alike", True):
        return None
    s = lr_series(ctx)
    if s is None:
        return None
    v = s.values[np.isfinite(s.values) & (s.values > 0)]
    if not v.size:
        return None
    lr = float(np.median(v))
    fraction = lr * wd
    momentum = opt.get("momentum") or 0.0
    if kind == "SGD" and isinstance(momentum, (int, float)) and 0 <= momentum < 1:
        fraction /= 1 - momentum
    return fraction, lr, float(wd)


def heavy_decay(ctx: Context) -> tuple[float, float, float] | None:
    """:func:`decay_per_step` when it is at least ``HEAVY_DECAY``, else None."""
    d = decay_per_step(ctx)
    return d if d is not None and d[0] >= HEAVY_DECAY else None


def decay_remedy(ctx: Context, what: str) -> Remedy | None:
    """Weight decay that removes ≥ ``HEAVY_DECAY`` of every weight a step is the change to
    make, not the learning rate (a lower lr would lower the decay too, by accident)."""
    d = heavy_decay(ctx)
    if d is None:
        return None
    fraction, lr, wd = d
    kind = optimizer_of(ctx).get("type")
    usual = "0.01–0.1" if kind == "AdamW" else "1e-4–5e-4"
    new = sig(wd * min(1.0, 1e-3 / fraction), 1)
    return Remedy(
        f"{what}: weight_decay={sig(wd, 3):g} at lr {sig(lr, 3):g} shrinks every weight by "
        f"{fraction:.0%} of itself a step (half of it is gone in {math.log(2) / fraction:.2g} "
        f"steps), faster than the gradient builds it; lower weight_decay ({usual} is usual "
        f"for {kind}; {new:g} removes 0.1 % a step), not the learning rate",
        None,
        f"for group in opt.param_groups:\n    group['weight_decay'] = {new:g}"
        f"  # was {sig(wd, 3):g}: {fraction:.0%} of each weight a step",
    )


def attention_modules(ctx: Context) -> list[str]:
    return [m.name for m in ctx.modules if any(a in (m.module_type or "") for a in _ATTENTION)]


def post_ln_blocks(ctx: Context) -> list[str]:
    """Blocks whose attention runs before their first LayerNorm/RMSNorm (Post-LN: the norm
    sits after the residual sum, Vaswani et al. 2017), from the execution order. In Pre-LN
    (GPT-2, ``norm_first=True``) the block's first norm runs before its attention."""
    order = {m.name: m.position for m in ctx.modules}
    out: list[str] = []
    for name in attention_modules(ctx):
        block = name.rsplit(".", 1)[0] if "." in name else ""
        if not block or any(b and name.startswith(b + ".") for b in out):
            continue
        norms = [
            m.name
            for m in ctx.modules
            if m.name.startswith(block + ".") and any(n in (m.module_type or "") for n in _NORMS)
        ]
        if norms and min(order[n] for n in norms) > order[name]:
            out.append(block)
    return out


#: torch's own Transformer layers: ``norm_first=True`` makes them Pre-LN
_TORCH_LAYERS = ("TransformerEncoderLayer", "TransformerDecoderLayer")


def pre_ln_code(ctx: Context, blocks: list[str]) -> str:
    """The change that makes ``blocks`` (Post-LN, :func:`post_ln_blocks`) Pre-LN, for the kind
    of block they are: torch's layers take ``norm_first=True``; a Hugging Face OPT config
    ``do_layer_norm_before=True``; any other block (BART, BERT, a hand-written one) has no
    switch: its forward must apply each norm before its sub-layer."""
    types = {la.name: la.module_type or "" for la in ctx.run.layers()}
    kinds = {types.get(b, "") for b in blocks}
    if kinds and kinds <= set(_TORCH_LAYERS):
        return f"nn.{sorted(kinds)[0]}(..., norm_first=True)  # or gp.fix.set_norm_first(model)"
    if kinds and all(k.startswith("OPT") for k in kinds):
        return "config.do_layer_norm_before = True  # OPTConfig: Pre-LN, for a model built anew"
    kind = sorted(kinds)[0] if kinds and "" not in kinds else "block"
    return (
        f"# {kind} has no Pre-LN switch: in its forward, each norm before its sub-layer:\n"
        "# x = x + attn(norm1(x)); x = x + mlp(norm2(x))"
    )


def _new_lr_line(lr: float | None, factor: float) -> tuple[str, str]:
    if lr is None:
        return f"{factor:.2g}× lower", f"lr = lr / {sig(factor, 2):g}"
    new = sig(lr / factor, 1)
    return (
        f"{new:g} instead of {sig(lr, 3):g}",
        f"for group in opt.param_groups:\n    group['lr'] = {new:g}",
    )


def warmup_steps(
    peak_ratio: float, run_steps: int | None = None, beta2: float | None = None
) -> int:
    """Steps of linear warm-up that keep the first update near TARGET_EARLY_RATIO (the first
    step then uses lr / n); at least 100, rounded up to a hundred — then capped:

    - under Adam and its kin (``beta2``: the optimizer's β₂) at 2/(1 − β₂) steps, 2000 for
      β₂ = 0.999: Ma & Yarats 2021 ("On the adequacy of untuned warmup for adaptive
      optimization", AAAI) show a linear warm-up over 2·(1 − β₂)⁻¹ steps is enough for
      Adam's second-moment estimate to settle, as RAdam's rectification assumes; longer
      buys nothing;
    - at the run's own length (``run_steps``): a warm-up past the end of the training it is
      proposed for never reaches the learning rate it warms up to (an update ratio of 14
      asked for 1,400 steps of warm-up on a 200-step run).
    """
    n = int(math.ceil(max(100.0, peak_ratio / TARGET_EARLY_RATIO) / 100.0) * 100)
    if beta2 is not None and 0.0 < beta2 < 1.0:
        n = min(n, round(2.0 / (1.0 - beta2)))
    if run_steps:
        n = min(n, int(run_steps))
    return max(1, n)


def _run_steps(ctx: Context) -> int | None:
    """How many steps the run had: ``meta["closed_at_step"]``, else one past the last
    logged step (a run still being written)."""
    closed = ctx.run.meta.get("closed_at_step")
    if isinstance(closed, int) and closed > 0:
        return closed
    return max(ctx.steps) + 1 if ctx.steps else None


def _beta2(ctx: Context) -> float | None:
    """β₂ of an adaptive optimizer with betas (Adam, AdamW, NAdam, RAdam, Adamax)."""
    betas = optimizer_of(ctx).get("betas")
    if adaptive(ctx) and isinstance(betas, (list, tuple)) and len(betas) == 2:
        return float(betas[1])
    return None


def step_size(ctx: Context, peak_ratio: float, step: int | None, what: str) -> Remedy:
    """Lower the learning rate or warm it up (and Pre-LN for a Post-LN transformer): the
    step size, not the init, is the cause of ``what`` — unless the lr was raised before it
    (go back) or the weight decay removes ≥ ``HEAVY_DECAY`` of each weight a step (lower it:
    shrinking weights is what the updates, dead units or vanishing gradients show)."""
    jumped = [j for j in lr_jumps(ctx) if step is not None and j[0] <= step]
    if jumped:  # the learning rate was raised before it: going back is the change to make
        return lr_jump_remedy(*jumped[-1], what)
    decay = decay_remedy(ctx, what)
    if decay is not None:
        return decay
    lr = lr_at(ctx, step) or peak_lr(ctx)
    factor = min(1e3, max(2.0, peak_ratio / TARGET_EARLY_RATIO))
    new, line = _new_lr_line(lr, factor)
    n = warmup_steps(peak_ratio, _run_steps(ctx), _beta2(ctx))
    warm = (
        f"warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / {n}))"
        "\n# warmup.step() after each opt.step()"
    )
    parts = [f"{what}: the step size is too large for these weights, not their init"]
    advice = [f"lower the learning rate ({new})"]
    if optimizer_of(ctx).get("type") == "LBFGS":
        # its step is the quasi-Newton direction × lr: a line search sets its length (a
        # warm-up of the lr is no habit of L-BFGS, and its length here would be meaningless)
        return Remedy(
            f"{parts[0]}; L-BFGS takes its quasi-Newton step times lr as it is unless a line "
            f"search picks its length: pass line_search_fn='strong_wolfe', or {advice[0]}",
            None,
            "opt = torch.optim.LBFGS(model.parameters(), line_search_fn='strong_wolfe')"
            f"  # lr=1: the search sets each step's length\n# or, without a search:\n{line}",
        )
    ramp = warmup_ramp(ctx)
    if ramp is not None and lr is not None and step is not None and step < ramp[2]:
        # the trouble began on the way up: the peak the warm-up climbs to is too high
        start, top, reached = ramp
        advice = [
            f"the warm-up raises the lr from {sig(start, 3):g} to {sig(top, 3):g} by step "
            f"{reached}, and the updates were already this large at {sig(lr, 3):g}: lower "
            f"the peak it climbs to ({new} as the peak)"
        ]
        line += f"  # the warm-up's peak (not {sig(top, 3):g})"
    if not warmed_up(ctx):
        advice.append(f"warm it up over the first {n} steps")
    code = [line] + ([warm] if not warmed_up(ctx) else [])
    post = post_ln_blocks(ctx)
    if post:
        advice.append(
            f"or put each LayerNorm before its sub-layer (Pre-LN: {len(post)} Post-LN "
            f"block(s) such as {post[0]}; Xiong et al. 2020 show Post-LN needs warm-up)"
        )
        code.append(pre_ln_code(ctx, post))
    return Remedy(
        f"{parts[0]}; " + ", ".join(advice),
        None,
        "\n".join(code),
    )


#: optimizers whose step is the gradient divided by a running scale of itself: its size is
#: ≈ lr per element whatever the gradient's norm (Adam's first step exactly), so clipping
#: the norm does not bound it
ADAPTIVE = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "RMSprop", "Adagrad", "Adadelta")


def adaptive(ctx: Context) -> bool:
    """The run's optimizer (``run.meta["optimizer"]``) is one of :data:`ADAPTIVE`."""
    return optimizer_of(ctx).get("type") in ADAPTIVE


def optimizer_of(ctx: Context) -> dict:
    """``run.meta["optimizer"]`` (its class and first group's hyper-parameters; {} when the
    probe was not given ``optimizer=``)."""
    return dict(ctx.run.meta.get("optimizer") or {})


def gradient_scale(ctx: Context) -> tuple[float, float] | None:
    """(median over the logged steps of ‖Δθ‖ / (lr·‖g‖), median ‖g‖) for plain SGD (one
    kind of param group, no dampening): ‖Δθ‖ from every parameter's recorded update, ‖g‖
    the global gradient norm the backward produced. SGD's step is lr·g, so the first is ≥ ~1
    unless something shrank the gradient before the step (momentum and updates measured
    several steps apart only make it larger). None for another optimizer, or without the
    numbers on at least three steps."""
    opt = optimizer_of(ctx)
    if opt.get("type") != "SGD" or opt.get("dampening") or not opt.get("groups_alike", True):
        return None
    if ("update", "norm") not in set(ctx.run.quantities()):
        return None
    params = [la.name for la in ctx.run.layers("param")]
    upd = ctx.matrix("update", "norm", params)
    norms, lr = model_series(ctx.run, "grad_norm", "global"), lr_series(ctx)
    if norms is None or lr is None:
        return None
    scales, seen = [], []
    for j, step in enumerate(ctx.steps):
        col = upd[:, j]
        g, rate = norms.at(step), lr.at(step)
        if not np.isfinite(col).any() or g is None or rate is None:
            continue
        if not (math.isfinite(g) and g > 0 and math.isfinite(rate) and rate > 0):
            continue
        scales.append(math.sqrt(float(np.nansum(col**2))) / (rate * g))
        seen.append(g)
    if len(scales) < 3:
        return None
    return float(np.median(scales)), float(np.median(seen))


def unclip(ctx: Context, median_ratio: float, scale: float, norm: float) -> Remedy:
    """The weights barely move because the gradient was scaled down before the step."""
    new = sig(norm, 2)
    return Remedy(
        f"the weights move by {median_ratio:.2g} of their norm per step, {scale:.2g}× what "
        f"SGD's step lr·‖g‖ would move them: the gradient is scaled down before opt.step() "
        f"(to a norm of ~{sig(scale * norm, 2):g}, while the backward gives {new:g}) — a "
        f"clip_grad_norm_ max_norm far below the gradient norm, a clip_grad_value_ "
        f"clip_value far below its entries (every entry cut to ±clip_value), or a loss "
        f"divided by a large factor; raise max_norm to about {new:g} (the median gradient "
        f"norm), clip by norm instead of by value, or drop the clipping, rather than the "
        f"learning rate",
        None,
        f"torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={new:g})"
        f"  # it clipped ‖g‖ ≈ {new:g} to ~{sig(scale * norm, 2):g}",
    )


#: Adam's denominator √v̂ + eps: an eps this many times the gradients' rms sets the step
#: (lr·g/eps instead of ≈ lr per element), so the step is that many times under lr
EPS_DOMINATES = 10.0


def eps_dominates(ctx: Context) -> tuple[float, float] | None:
    """``(eps, median gradient rms)`` when the run's optimizer divides by √v̂ + eps (Adam and
    its kin, RMSprop, Adagrad) and its ``eps`` is over ``EPS_DOMINATES`` × the median rms of
    the weights' gradients (≈ √v̂): the step is lr·g/eps, far under the lr (eps = 1 for
    1e-8). None otherwise."""
    opt = optimizer_of(ctx)
    eps = opt.get("eps")
    if not adaptive(ctx) or not isinstance(eps, int | float) or not eps > 0:
        return None
    if ("param_grad", "rms") not in set(ctx.run.quantities()):
        return None
    names = [la.name for la in ctx.run.layers("param")]
    g = ctx.matrix("param_grad", "rms", names)
    g = g[np.isfinite(g) & (g > 0)]
    if not g.size:
        return None
    rms = float(np.median(g))
    return (float(eps), rms) if eps > EPS_DOMINATES * rms else None


def eps_remedy(median_ratio: float, eps: float, rms: float) -> Remedy:
    return Remedy(
        f"the weights move by {median_ratio:.2g} of their norm per step, ~1e-3 is usual: the "
        f"optimizer's eps = {eps:g} is {eps / rms:.3g}× the gradients' rms ({sig(rms, 2):g}), "
        f"so its denominator √v̂ + eps is eps and each step is lr·g/eps, not ≈ lr; set eps "
        f"back to its default 1e-8 (rather than raising the learning rate)",
        None,
        f"for group in opt.param_groups:\n    group['eps'] = 1e-8  # was {eps:g}",
    )


def raise_lr(ctx: Context, median_ratio: float) -> Remedy:
    """The weights barely move although their gradients reach them: a larger step — unless
    SGD's steps are far below lr·‖g‖ (:func:`gradient_scale`): then the gradient was shrunk
    before the step (clipping too tight), and that is the change to make; or the schedule
    took the lr to ~0 early (:func:`lr_collapse`): then the schedule is."""
    collapsed = lr_collapse(ctx)
    if collapsed is not None:
        what = f"the weights move by {median_ratio:.2g} of their norm per step"
        return lr_collapse_remedy(*collapsed, what)
    scaled = gradient_scale(ctx)
    if scaled is not None and scaled[0] < SCALED_DOWN:
        return unclip(ctx, median_ratio, *scaled)
    eps = eps_dominates(ctx)
    if eps is not None:
        return eps_remedy(median_ratio, *eps)
    lr = peak_lr(ctx)
    factor = min(1e3, 1e-3 / max(median_ratio, 1e-12))
    if lr is None:
        return Remedy(
            f"the learning rate is too low: the weights move by {median_ratio:.2g} of their norm "
            f"per step, ~1e-3 is usual; raise it about {factor:.2g}×",
            None,
            f"lr = lr * {sig(factor, 1):g}",
        )
    new = sig(lr * factor, 1)
    return Remedy(
        f"the learning rate {sig(lr, 3):g} is too low: the weights move by {median_ratio:.2g} "
        f"of their norm per step, ~1e-3 is usual; try {new:g}",
        None,
        f"for group in opt.param_groups:\n    group['lr'] = {new:g}",
    )


def healthy_norms(s: Series) -> np.ndarray:
    """The global gradient norms of the steps before any explosion: the first ten, or
    fewer if the norm rose past 10× its first value before (an explosion from step 2 must not
    set its own baseline)."""
    values = s.values
    ok = np.nonzero(np.isfinite(values) & (values > 0))[0]
    if not ok.size:
        return values[:0]
    start = int(ok[0])
    with np.errstate(invalid="ignore"):
        up = np.nonzero(~(values[start:] <= 10 * values[start]))[0]
    end = start + (int(up[0]) if up.size else len(values) - start)
    head = values[start : min(end, start + 10)]
    return head[np.isfinite(head) & (head > 0)]


def clip_norm(ctx: Context, before: int | None = None) -> float:
    """A max-norm for clip_grad_norm_: the median global gradient norm of the healthy steps
    (:func:`healthy_norms`, and before step ``before``); 1.0 when none was recorded."""
    s = model_series(ctx.run, "grad_norm", "global")
    if s is None or not len(s):
        return 1.0
    if before is not None and s.steps[0] < before:
        s = s.before(before)
    vals = healthy_norms(s)
    return sig(float(np.median(vals)), 2) if vals.size else 1.0


def clip(ctx: Context, before: int | None, what: str) -> Remedy:
    norm = clip_norm(ctx, before)
    return Remedy(
        f"{what}: clip the gradient norm before each optimizer step (max_norm {norm:g}, the "
        f"median norm of the steps before it grew; Pascanu et al. 2013), and lower the "
        f"learning rate if it keeps hitting the clip",
        None,
        f"torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={norm:g})"
        "  # before opt.step()",
    )


def qk_norm(what: str) -> Remedy:
    return Remedy(
        f"{what}: normalise queries and keys per head before their dot product (QK-norm, "
        f"Dehghani et al. 2023; Wortsman et al. 2023), or cap the logits (cap·tanh(z/cap), "
        f"Gemma 2), and lower the learning rate",
        None,
        "self.q_norm, self.k_norm = nn.LayerNorm(head_dim), nn.LayerNorm(head_dim)\n"
        "q, k = self.q_norm(q), self.k_norm(k)  # before softmax(q @ k.transpose(-2, -1) / √d)\n"
        "# or: scores = 50.0 * torch.tanh(scores / 50.0)",
    )


def device_type(meta: dict | None = None) -> str:
    """The device type a remedy's autocast or GradScaler line names, as code: the run's own
    (``meta["device"]``, e.g. ``"cpu"`` or ``"cuda:0"``, when the probe recorded it), else
    read off the user's model at run time (``next(model.parameters()).device.type``), never a
    fixed ``"cuda"``: ``torch.autocast(device_type="cuda")`` on a CPU run warns and does
    nothing, and a CUDA GradScaler on a CPU run disables itself."""
    device = (meta or {}).get("device")
    if isinstance(device, str) and device:
        return repr(device.split(":")[0])
    return "next(model.parameters()).device.type"


def precision(dtype: str, phase: str, what: str, meta: dict | None = None) -> Remedy:
    """The remedy of half-precision values near their limit; ``meta``: the run's (the device
    the code names, :func:`device_type`)."""
    device = device_type(meta)
    if dtype == "bfloat16":
        return Remedy(
            f"{what}: bfloat16 has float32's range, so these values are exploding, not a "
            f"precision problem: lower the learning rate and clip gradients",
            None,
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)",
        )
    if phase == "grad_output":
        return Remedy(
            f"{what}: float16 tops out at 65504; scale the loss with a GradScaler (it lowers "
            f"the scale when gradients overflow and skips that step) or train in bfloat16",
            None,
            f"scaler = torch.amp.GradScaler({device})\nscaler.scale(loss).backward()\n"
            "scaler.step(opt)\nscaler.update()",
        )
    return Remedy(
        f"{what}: float16 tops out at 65504; autocast to bfloat16 (float32's range) instead, "
        f"or keep this module in float32",
        None,
        f"with torch.autocast(device_type={device}, dtype=torch.bfloat16):\n"
        "    loss = loss_fn(model(x), y)",
    )
