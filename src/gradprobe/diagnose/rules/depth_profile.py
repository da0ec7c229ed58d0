"""``vanishing`` / ``exploding``: the gradient across depth, counted in blocks.

At each logged step two profiles over the chain of blocks (``Context.chain``: the repeated
blocks of the module tree, or a plain stack's weight layers but the output one), lowest
first:

- ``backward``: ‖∂L/∂h‖ at each block's output (per-example norms, compared block to block);
- ``relative``: ‖∂L/∂θ‖/‖θ‖ of each block's parameters (how fast SGD moves that block).

Either one's ratio first/last beyond ``vanishing_ratio`` / ``exploding_ratio`` is a finding;
in a residual, normalised block structure only where it is also exponential, more than
``block_rate`` per block (such stacks drift polynomially with depth when healthy). The
first step that crosses is reported, with how many did. On the first step, a block that
scales the residual stream's rms by more than ``block_growth`` is ``exploding`` in the
forward pass (weights far above their fan-in scale); a deep Post-LN stack whose gradient
grows towards the output is ``vanishing`` at its first block, with warm-up, Pre-LN or
DeepNorm as the remedy (Xiong et al. 2020; Wang et al. 2022). When gradients overflowed
(NaN/Inf), the forward profile takes their place: the growth of the output rms from the
lowest weight layer to the highest, which is what overflowed them. Runs without the
per-block statistics (written by hand) are judged on the per-layer rms profile.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..context import Context, Profile
from ..expected import SCHEME_GAIN2, hidden_gains
from ..finding import Finding, Kind, Remedy
from ..remedies import depth_remedy, post_ln, reinit, stream_scale
from ..series import loss_series
from . import RULES
from .loss import loss
from .updates import ratios

OUTGROWN_STEPS = 5  # logged steps within the lines, after a profile crossed at init only
# ‖∂L/∂x‖·√(σ_x² + ε) / (‖∂L/∂y‖·γ) across a BatchNorm y = γ·(x − μ)/√(σ_x² + ε) + β:
# 0.37 and up over the 42 models with BatchNorm of the zoos (batches of 2 and more); float32
# rounding, 2e-8 to 6e-6 (ConvMixer and EfficientNet at 8-128 px), where what follows reads
# only each channel's mean over the normalised set: a batch of one before a global pool
CANCELLED = 1e-4
BN_EPS = 1e-5  # torch's and Hugging Face's BatchNorm default

_WORDS = {
    "backward": "back-propagated gradient ‖∂L/∂h‖",
    "relative": "relative gradient ‖∂L/∂θ‖/‖θ‖",
    "rms": "back-propagated gradient (rms)",
}


class _Hit:
    """A profile that crossed a line; ``ratio`` first/last (output/lowest for the forward
    signal: both > 1 when exploding), ``growth`` the fitted factor per block."""

    def __init__(self, profile: Profile, measure: str, ratio: float | None = None) -> None:
        self.profile, self.measure = profile, measure
        self.ratio = profile.ratio if ratio is None else ratio
        self.growth = profile.growth if measure != "forward" else 1 / profile.growth


def _crossing(ctx: Context, p: Profile, measure: str) -> Kind | None:
    t = ctx.t
    kind: Kind | None = None
    if p.ratio < t.vanishing_ratio:
        kind = "vanishing"
    elif p.ratio > t.exploding_ratio:
        kind = "exploding"
    if kind is None:
        return None
    if ctx.structure.plain:
        return (
            kind
            if _compounds(p, t.vanishing_ratio if kind == "vanishing" else t.exploding_ratio)
            else None
        )
    if _normalised(ctx, p) and t.vanishing_error_ratio <= p.ratio <= t.exploding_error_ratio:
        return None
    rate = p.ratio ** (1 / max(len(p.values) - 1, 1))  # per block, the stack's own drift
    return kind if abs(math.log(rate)) > math.log(t.block_rate) else None


def _normalised(ctx: Context, p: Profile) -> bool:
    """Whether every block of the profile holds a normalisation layer. There a gradient's
    size is set by the norms' 1/σ, i.e. by the raw scale of the weights before them, and
    those weights are scale-invariant: a weight that starts with a large relative gradient
    grows its norm and slows itself down (Arora et al. 2019, auto rate-tuning). A Hugging
    Face MobileNetV2 (std-0.02 convs, BatchNorm, 16 blocks) reads ×54-113 first/last,
    ×1.28-1.34 per block, and trains. Only the error lines (1e-5 / 1e5) are judged there;
    a normalised stack's broken inits show in its forward (stream growth, saturation)."""
    names = set(p.layers)
    blocks = [b for b in ctx.chain if b.name in names]
    return bool(blocks) and all(any(la.norm for la in b.layers) for b in blocks)


def _compounds(p: Profile, line: float) -> bool:
    """Whether the typical layer-to-layer factor, compounded over the stack, crosses the line
    too: vanishing and exploding at init are a per-layer factor χ₁ ≠ 1 raised to the depth
    (Schoenholz et al. 2017), which every layer shares. A drop made in one or two layers —
    a classifier initialised with a fixed std 0.01 (torchvision's VGG) at width 64, a gain
    of 0.08 each — is the scale of those layers, and the median factor (the layers that
    do not drop) says so: the median of log v_l/v_{l+1}, times the number of steps."""
    logs = np.log(p.values[:-1] / p.values[1:])
    if logs.size < 2:
        return True
    typical = float(np.median(logs)) * logs.size
    return typical < math.log(line) if line < 1 else typical > math.log(line)


def _hits(ctx: Context) -> dict[Kind, list[tuple[int, _Hit]]]:
    t = ctx.t
    hits: dict[Kind, list[tuple[int, _Hit]]] = {"vanishing": [], "exploding": []}
    legacy = not ctx.chain or not np.isfinite(ctx.backward_matrix).any()
    for i, step in enumerate(ctx.steps):
        if not np.isfinite(ctx.grad_matrix[:, i]).all():  # gradients overflowed
            forward = ctx.activation_profile(i)
            if forward is not None and 1 / forward.ratio > t.exploding_ratio:
                hits["exploding"].append((step, _Hit(forward, "forward", 1 / forward.ratio)))
                continue
        profiles = [("rms", ctx.gradient_profile(i))] if legacy else [
            *[("backward", p) for p in ctx.block_profiles("backward", i)],
            *[("relative", p) for p in ctx.block_profiles("relative", i)],
        ]  # fmt: skip
        for measure, p in profiles:
            kind = None if p is None else _crossing(ctx, p, measure)
            if kind is not None and p is not None:
                hits[kind].append((step, _Hit(p, measure)))
                break  # one measure per step: the backward signal first
    return hits


def _finding(ctx: Context, kind: Kind, found: list[tuple[int, _Hit]]) -> Finding:
    t = ctx.t
    step, hit = found[0]
    p = hit.profile
    worst = [h.ratio for _, h in found]
    vanishing = kind == "vanishing"
    threshold = t.vanishing_ratio if vanishing else t.exploding_ratio
    error_limit = t.vanishing_error_ratio if vanishing else t.exploding_error_ratio
    is_error = hit.ratio < error_limit if vanishing else hit.ratio > error_limit
    unit = "layer" if ctx.structure.plain or hit.measure in ("rms", "forward") else "block"
    evidence = {  # a plain stack's blocks are its weight layers
        "measured_on": "activations" if hit.measure == "forward" else "gradients",
        "measure": hit.measure,
        "ratio_first_to_last": hit.ratio,
        "growth_per_block": hit.growth,
        "threshold": threshold,
        "error_threshold": error_limit,
        "blocks": len(p.layers),
        "ratio_to_last_per_block": {
            n: float(v / p.values[-1]) for n, v in zip(p.layers, p.values, strict=True)
        },
        "steps_affected": len(found),
        "worst_ratio": min(worst) if vanishing else max(worst),
    }
    if unit == "block":
        evidence["block_rate"] = t.block_rate
    evidence.update(_glorot(ctx, step))
    outgrown = _outgrown(ctx, found)
    if outgrown:
        evidence.update(outgrown)
    if hit.measure == "forward":
        message = (
            f"the forward signal grows {hit.ratio:.3g}× from {p.layers[0]} to {p.layers[-1]} "
            f"(×{hit.growth:.3g} per layer) until gradients overflow to NaN/Inf "
            f"(threshold {threshold:g})"
        )
    else:
        message = (
            f"the {_WORDS[hit.measure]} at the lowest {unit} {p.layers[0]} is {hit.ratio:.3g}× "
            f"the one at {p.layers[-1]} (×{hit.growth:.3g} per {unit} over {len(p.layers)} "
            f"{unit}s; threshold {threshold:g}"
            + (f", and more than ×{t.block_rate:g} per block)" if unit == "block" else ")")
        )
    if outgrown:
        message += (
            f"; only until step {outgrown['last_affected_step']}: from step "
            f"{outgrown['within_from']} on it was within the line on every one of the "
            f"{outgrown['steps_within']} logged steps to {ctx.steps[-1]}, and the loss shows no "
            f"problem (the optimizer's steps outgrew the init's profile): nothing to do for this "
            f"run, though an optimizer without per-parameter steps (SGD) would train its lowest "
            f"{unit}s slowly"
        )
    remedy = depth_remedy(ctx, kind)
    at = ctx.steps.index(step)
    inner = None if vanishing or hit.measure == "forward" else _inner_gain(ctx, at, hit.ratio)
    if inner is not None:
        evidence.update(inner)
        said, remedy = _own_computation(**inner)
        message += said
    cancelled = _cancelled_norm(ctx, ctx.steps.index(step)) if vanishing else None
    if cancelled:
        evidence.update(cancelled_in=cancelled[0], cancel_ratio=cancelled[1])
        said, remedy = _batch_of_one(*cancelled)
        message += said
    return Finding(
        kind=kind,
        layer=p.layers[0],
        severity="info" if outgrown or cancelled else "error" if is_error else "warning",
        step=step,
        evidence=evidence,
        remedy=remedy,
        message=message,
    )


def _batch_of_one(name: str, r: float) -> tuple[str, Remedy]:
    said = (
        f"; the gradient vanishes inside {name} (×{r:.2g} of what a BatchNorm passes): what "
        f"follows it reads only each channel's mean over what it normalises, so the loss does "
        f"not depend on anything below it"
    )
    return said, Remedy(
        "a BatchNorm in training mode followed by a global average pool outputs β whatever "
        "its input when it normalises over the same values the pool averages: a batch of one "
        "example. Check (and train) with a batch of two or more; for batches of one, pool "
        f"before {name} or use GroupNorm/LayerNorm",
    )


def _inner_gain(ctx: Context, i: int, total: float) -> dict | None:
    """A hop between two modules that run one after the other whose gradient gain no weight
    can give: ``‖∂L/∂(before's output)‖ / ‖∂L/∂(after's output)‖`` over ``‖W_after‖_F`` above
    ``exploding_ratio``, ``after`` a layer with a weight. Its backward multiplies by ``Wᵀ``, and
    ``‖Wᵀδ‖ ≤ ‖W‖₂‖δ‖ ≤ ‖W‖_F‖δ‖``; the rest of the gain is made by the code that runs between
    them in their parent's ``forward`` — a hand-written recurrence ``h = a * h + u`` with
    |a| > 1 grows as |a|^T over T steps —, not by the init of any layer. The hop must make at
    least half of the profile's growth ``total`` (on a log scale: gain ≥ √total), so two
    parallel branches that merely run one after the other (q_proj, k_proj) are not read as
    one. The largest such hop, or None (at logged step index ``i``)."""
    order = sorted(ctx.modules, key=lambda m: m.position)
    names = [m.name for m in order]
    if ("grad_output", "norm") not in set(ctx.run.quantities()) or len(names) < 2:
        return None
    g = dict(zip(names, ctx.matrix("grad_output", "norm", names)[:, i], strict=True))
    weights = {la.name for la in ctx.run.layers("param")}
    found = []
    for before, after in itertools.pairwise(order):
        w_name = after.name + ".weight"
        if w_name not in weights:
            continue
        w = float(ctx.matrix("weight", "norm", [w_name])[0, i])
        gb, ga = g[before.name], g[after.name]
        if not (np.isfinite(gb) and np.isfinite(ga) and ga > 0 and np.isfinite(w) and w > 0):
            continue
        unexplained = float(gb / ga / w)
        if unexplained > ctx.t.exploding_ratio and gb / ga >= math.sqrt(total):
            found.append((unexplained, before.name, after.name, float(gb / ga), w))
    if not found:
        return None
    unexplained, before, after, gain, w = max(found)
    parent = _common_parent(before, after)
    return {
        "inner_gain": gain,
        "inner_unexplained": unexplained,
        "inner_between": [after, before],
        "inner_weight_norm": w,
        "inner_parent": parent,
        "inner_parent_type": ctx.module_type(parent) if parent else None,
    }


def _common_parent(a: str, b: str) -> str:
    """The innermost module holding both ``a`` and ``b`` ("" for the root)."""
    pa, pb = a.split(".")[:-1], b.split(".")[:-1]
    k = 0
    while k < min(len(pa), len(pb)) and pa[k] == pb[k]:
        k += 1
    return ".".join(pa[:k])


def _own_computation(
    inner_gain, inner_unexplained, inner_between, inner_weight_norm, inner_parent, **_
) -> tuple[str, Remedy]:
    after, before = inner_between
    where = f"inside {inner_parent}" if inner_parent else "in the model's forward"
    said = (
        f"; the gradient grows {inner_gain:.3g}× {where} from {after} back to {before}, "
        f"{inner_unexplained:.3g}× more than {after}'s weights can (‖W‖_F = "
        f"{inner_weight_norm:.3g}): the growth is made by the code between them, not by a "
        f"layer's init"
    )
    return said, Remedy(
        f"the gradient grows in {inner_parent or 'the forward'}'s own computation between "
        f"{after} and {before}: a recurrence h_t = a·h_(t-1) + … whose |a| > 1 grows as |a|^T "
        f"over T steps; keep |a| < 1 by its parametrisation (a = exp(-exp(ν)), as the LRU "
        f"does; a sigmoid gate), or a product or exp there that is unbounded; clip the "
        f"gradient meanwhile. Re-initialising the layers does not change it",
        None,
        "a = torch.exp(-torch.exp(nu))  # |a| < 1 whatever nu, in the recurrence's forward\n"
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)  # meanwhile",
    )


def _cancelled_norm(ctx: Context, i: int) -> tuple[str, float] | None:
    """A BatchNorm whose backward cancels the gradient: ‖∂L/∂x‖·√(σ_x² + ε) / (‖∂L/∂y‖·γ_rms)
    below ``CANCELLED``, x the output of the module that ran just before it (ε under σ_x:
    MobileViT's std-0.02 convs feed a norm σ 5e-7, whose backward is ×γ/√ε, read 1.4e-4
    without it). Its backward removes
    each channel's mean and x̂-component of ∂L/∂y, so a gradient made of those alone — the
    head mean-pools a BatchNorm over a batch of one example, whose pooled output is β — is
    rounding (ConvMixer at batch 1: 5e-8; at batch 2 and up 0.6-1.2). The depth profile
    below it is then the check's batch, not the model's depth (``info``)."""
    order = sorted(ctx.modules, key=lambda m: m.position)
    names = [m.name for m in order]
    if ("grad_output", "norm") not in set(ctx.run.quantities()) or len(names) < 2:
        return None
    g = dict(zip(names, ctx.matrix("grad_output", "norm", names)[:, i], strict=True))
    sd = dict(zip(names, ctx.matrix("activation", "std", names)[:, i], strict=True))
    shapes = {la.name: la.shape for la in ctx.run.layers("param")}
    found = []
    for before, m in itertools.pairwise(order):
        if "BatchNorm" not in (m.module_type or ""):
            continue
        w, shape = (
            ctx.matrix("weight", "norm", [m.name + ".weight"])[0, i],
            shapes.get(m.name + ".weight"),
        )
        gamma = float(w) / math.sqrt(shape[0]) if shape and np.isfinite(w) else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            r = g[before.name] * math.sqrt(sd[before.name] ** 2 + BN_EPS) / (g[m.name] * gamma)
        if np.isfinite(r) and g[m.name] > 0 and r < CANCELLED:
            found.append((m.name, float(r)))
    return min(found, key=lambda t: t[1]) if found else None


def _outgrown(ctx: Context, found: list[tuple[int, _Hit]]) -> dict | None:
    """Evidence that a trained run outgrew a profile it was given at initialisation: the
    crossing steps begin at the first logged step and end within the first
    ``early_update_steps`` steps, every logged step after the last one is within the lines
    (at least ``OUTGROWN_STEPS`` of them, over at least as many steps as the crossing
    lasted), and the loss, recorded, has no warning or error. Adam's per-parameter step does
    not depend on the gradient's size: a 6-layer GELU MLP at torch's default init reads
    0.0026× lowest/top at step 0, within the line from step 4, and trains to a loss of 3e-4
    (under SGD it stays stuck near chance). A crossing that lasts longer slowed the run even
    where it ended (5 sigmoid layers under Adam: until step ~90, and a loss that stalled at
    1.7 on one seed of two), and stays a warning. None at initialisation (a check has no
    later steps) and while it lasts."""
    steps = ctx.steps
    if not steps or found[0][0] != steps[0] or loss_series(ctx.run) is None:
        return None
    last = found[-1][0]
    later = [s for s in steps if s > last]
    if last >= steps[0] + ctx.t.early_update_steps or len(later) < OUTGROWN_STEPS:
        return None
    if later[-1] - last < last - steps[0]:
        return None
    if any(f.severity in ("warning", "error") for f in loss(ctx)):  # the loss rule's verdict
        return None
    return {"last_affected_step": last, "within_from": later[0], "steps_within": len(later)}


def _glorot(ctx: Context, step: int) -> dict:
    """The classic per-layer ratio (rms of ∂L/∂output, lowest weight layer over the output
    one) where it means what it says: a plain stack, every layer of the same kind."""
    if not ctx.structure.plain:
        return {}
    p = ctx.gradient_profile(ctx.steps.index(step))
    if p is None:
        return {}
    return {
        "ratio_lowest_to_output": p.ratio,
        "growth_per_layer": p.growth,
        "layers": len(p.layers),
        "ratio_to_output_per_layer": {
            n: float(v / p.values[-1]) for n, v in zip(p.layers, p.values, strict=True)
        },
    }


def _stream(ctx: Context) -> list[Finding]:
    """A block that multiplies the residual stream's scale at the first logged step, or
    blocks whose weights are far above their fan-in scale (the upper quartile of σ² · fan_in
    over the activation's critical value above ``weight_gain2``; healthy Pre-LN stacks read
    ≤ 1.03, N(0, 1) ones ≥ 6.7: the growth is ~√fan_in, so at width 16 N(0, 1) weights scale
    the stream only 4.6-8.3×). Only in a Pre-LN stack, whose stream no norm rescales between
    blocks: a Post-LN block ends in its norm (ELECTRA's first block read 12.8 after a
    std-0.02 embedding projection), and a block without a residual path sets its output's
    scale by its own last norm. The stream that entered is taken at no less than the
    block's own norms' output: a std-0.02 token embedding under branches of unit-scale
    output read 16×."""
    if not ctx.steps or ctx.norm_place != "pre":
        return []
    growth = ctx.stream_growth(0, against_norms=True)
    over = [(name, g) for name, g in growth if g > ctx.t.block_growth]
    gains = hidden_gains(ctx)
    # the upper quartile: GPT-2 and Llama scale their output projections by 1/√(2·layers)
    # on purpose, so half the matrices of an N(0, 1) GPT-2 at width 16 read g² = 1-4
    values = list(gains.values())
    gain2 = float(np.percentile(values, 75)) / _critical_gain2(ctx) if values else np.nan
    if not over and not gain2 > ctx.t.weight_gain2:
        return []
    name, g = max(over or growth or [(ctx.chain[0].name, float("nan"))], key=lambda item: item[1])
    said = f"scales the residual stream's rms by {g:.3g}× at initialisation" if over else (
        f"has weights {gain2:.3g}× the critical σ² · fan_in of its activation (upper "
        f"quartile over the blocks' matrices; threshold {ctx.t.weight_gain2:g}), and "
        f"scales the stream by {g:.3g}×"
    )  # fmt: skip
    return [
        Finding(
            kind="exploding",
            layer=name,
            severity="warning",
            step=ctx.steps[0],
            evidence={
                "measured_on": "activations" if over else "weights",
                "measure": "stream" if over else "weight_gain",
                "stream_growth": g,
                "threshold": ctx.t.block_growth if over else ctx.t.weight_gain2,
                "weight_gain2": gain2,
                "stream_growth_per_block": dict(growth),
            },
            remedy=stream_scale(ctx),
            message=(
                f"block {name} {said}"
                + (f" (threshold {ctx.t.block_growth:g})" if over else "")
                + ": its weights are far above their fan-in scale, so softmax and saturating "
                "units see huge inputs"
            ),
        )
    ]


def _critical_gain2(ctx: Context) -> float:
    """σ² · fan_in that preserves the signal through the activations in use (He et al.
    2015: 2 for ReLU; GELU 2.35, SiLU 2.81 numerically; 1 for tanh and linear maps)."""
    kinds = ctx.activation_kinds
    found = [g for (_, act), g in SCHEME_GAIN2.items() if act is not None and act in kinds]
    return max(found, default=1.0)


def _zero_hidden(ctx: Context) -> bool:
    """Whether a plain stack has a hidden weight matrix that is exactly zero. A zero output
    layer alone is a chosen init (Fixup's and many ViT heads' zero classifier: the blocks
    get their gradient after the first step), as are zero residual branches; zero hidden
    layers of a plain stack keep every unit above them identical over the inputs."""
    if not ctx.structure.plain or ("weight", "norm") not in set(ctx.run.quantities()):
        return False
    names = [p for b in ctx.chain[1:] for la in b.layers for p in la.matrices]
    w = ctx.matrix("weight", "norm", names)[:, 0] if names else np.array([])
    return bool((np.isfinite(w) & (w == 0)).any())


def _no_signal(ctx: Context) -> list[Finding]:
    """Blocks whose output receives a gradient of exactly 0 (max|∂L/∂h| = 0) at the first
    step while a block above them receives one (or, when none does, a plain stack whose
    hidden weights are zero): no signal reaches them at all (zero weights above, a path the
    loss does not depend on).
    The profiles leave zeros out (a log ratio has none), so without this a network with
    zero hidden weights read healthy."""
    if not ctx.steps or not ctx.chain:
        return []
    values = ctx.backward_matrix[:, 0]
    zero = np.isfinite(values) & (values == 0)
    live = np.nonzero(np.isfinite(values) & (values > 0))[0]
    if not zero.any() or not (live.size or _zero_hidden(ctx)):
        return []
    dead = [b.name for b, z in zip(ctx.chain, zero, strict=True) if z]
    top = ctx.chain[int(live.max())].name if live.size else "the output layer"
    base = reinit(ctx)
    evidence = {
        "measured_on": "gradients",
        "measure": "backward",
        "ratio_first_to_last": 0.0,
        "zero_gradient_blocks": dead,
        "blocks": len(ctx.chain),
        "threshold": ctx.t.vanishing_ratio,
    }
    message = (
        f"the back-propagated gradient at {', '.join(dead[:3])}"
        f"{' …' if len(dead) > 3 else ''} is exactly 0 while {top} receives one: "
        f"no signal reaches the lower blocks, so they cannot learn"
    )
    remedy = Remedy(
        f"no gradient reaches {len(dead)} block(s): a weight matrix between them and "
        f"the loss is zero (or the loss does not depend on them); {base.text}",
        base.scheme,
        base.code,
    )
    cancelled = _cancelled_norm(ctx, 0)
    if cancelled:
        evidence.update(cancelled_in=cancelled[0], cancel_ratio=cancelled[1])
        said, remedy = _batch_of_one(*cancelled)
        message += said
    return [
        Finding(
            kind="vanishing",
            layer=dead[0],
            severity="info" if cancelled else "error",
            step=ctx.steps[0],
            evidence=evidence,
            remedy=remedy,
            message=message,
        )
    ]


def _post_ln(ctx: Context) -> list[Finding]:
    """A deep Post-LN stack whose gradient grows towards the output (Xiong et al. 2020)."""
    s, t = ctx.structure, ctx.t
    if ctx.norm_place != "post" or s.depth < t.post_ln_blocks or not ctx.steps:
        return []
    growths = []
    for which in ("relative", "backward"):
        p = ctx.block_profile(which, 0)
        if p is not None:
            growths.append((which, float(p.values[-1] / p.values.min())))
    if not growths:
        growths.append(("backward", float("nan")))
    which, growth = max(growths, key=lambda item: item[1])
    grows = growth >= t.post_ln_growth
    passed = _passed_first_updates(ctx)
    return [
        Finding(
            kind="vanishing",
            layer=s.blocks[0].name,
            severity="info" if passed else "warning",
            step=ctx.steps[0],
            evidence={
                "measured_on": "gradients",
                "measure": which,
                "norm_place": "post",
                "blocks": s.depth,
                "growth_towards_output": growth,
                "growth_threshold": t.post_ln_growth,
                "grows": grows,
                "threshold": t.post_ln_blocks,
                "post_ln_blocks": t.post_ln_blocks,
                **(passed or {}),
            },
            remedy=post_ln(ctx),
            message=(
                f"{s.depth} Post-LN blocks: Post-LN this deep diverges without warm-up (Xiong "
                f"et al. 2020; Liu et al. 2020: 18 layers failed where 6 trained); "
                + (
                    f"the {_WORDS[which]} already grows {growth:.3g}× towards the output "
                    f"(more than {t.post_ln_growth:g}), so the top blocks take the largest steps"
                    if grows
                    else f"at this init its gradient grows only {growth:.3g}× towards the "
                    f"output: the danger is in the first updates, which every residual branch "
                    f"amplifies (Liu et al. 2020)"
                )
                + (
                    f"; this run went through its first {passed['early_steps_seen']} updates "
                    f"without it (largest update ratio {passed['early_peak_ratio']:.3g}, under "
                    f"{t.early_update_ratio:g}) and its loss shows no problem (a DeepNorm or "
                    f"Admin residual scaling, or a warm-up, does this): nothing to do"
                    if passed
                    else ""
                )
            ),
        )
    ]


def _passed_first_updates(ctx: Context) -> dict | None:
    """Evidence that a trained run got through the first updates, where deep Post-LN fails
    (Xiong et al. 2020; Liu et al. 2020): the update ratios of its first
    ``early_update_steps`` steps were measured and stayed under ``early_update_ratio``, the
    run went on past them, and its loss (when recorded) has no warning or error. A check at
    initialisation has no such evidence (None): there the warning stands."""
    t, r = ctx.t, ratios(ctx)
    if r is None or not ctx.steps or max(ctx.steps) < t.early_update_steps:
        return None
    early = r.early(t.early_update_steps)
    finite = early[np.isfinite(early)]
    seen = int(np.isfinite(early).any(axis=0).sum())
    if finite.size == 0 or seen < t.early_update_steps // 2:
        return None
    peak = float(finite.max())
    if peak > t.early_update_ratio:
        return None
    if any(f.severity in ("warning", "error") for f in loss(ctx)):  # the loss rule's verdict
        return None
    return {"early_peak_ratio": peak, "early_steps_seen": seen}


@RULES.register("depth_profile")
def depth_profile(ctx: Context) -> list[Finding]:
    findings = [_finding(ctx, kind, found) for kind, found in _hits(ctx).items() if found]
    if not any(f.kind == "exploding" for f in findings):
        findings += _stream(ctx)
    if not any(f.kind == "vanishing" for f in findings):
        findings += _no_signal(ctx)
    if not any(f.kind == "vanishing" for f in findings):
        findings += _post_ln(ctx)
    return findings
