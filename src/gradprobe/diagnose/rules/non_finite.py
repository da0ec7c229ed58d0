"""``non_finite``: where NaN/Inf first appeared, and what it came from.

The probe records the first non-finite value of each pass (an event with its layer and
what it saw). The rule names the origin, not only the first module it reached:

- the data: the model input (forward event at ``(input)``) or the target
  (``run.meta["target_nonfinite"]``, the fraction of non-finite target values);
- a module that turned finite inputs into NaN/Inf (forward), or finite gradients into
  NaN/Inf in its backward;
- the loss, when the gradient was already NaN/Inf as it arrived at the last module.

- the optimizer's step, when the weights turned NaN/Inf in it (an ``update`` event): the
  gradients were finite, the update was too large (lr × gradient, or Adam's m̂/(√v̂ + ε)
  with a tiny ε) — the step size is the cause, and every NaN/Inf of the later steps'
  forward and backward passes follows from it; unless the weights are float16
  (``run.meta["param_dtypes"]``, a model cast with ``.half()``) under an Adam-kin whose eps
  is 0 in float16: then 0/0, whatever the lr, and the remedy is float32 weights under
  float16 autocast.

A NaN that only follows from an earlier one (a backward NaN after a forward NaN or a bad
target, on the same or a later step; anything after non-finite weights) is reported as
``info`` pointing to its cause.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ...run import Event
from ..context import Context
from ..finding import Finding, Remedy
from ..series import loss_series, model_series, skipped_steps
from ..training import clip, device_type, optimizer_of, step_size
from . import RULES
from ._unlogged import (
    LOCATE,
    between,
    episodes,
    finite_at,
    in_backward,
    located_at,
    located_message,
    loss_origin,
    skipped_step,
    transient_findings,
)
from .updates import first_ratio, peak_before

# the probe's event details (probe/_step.py) name how a backward NaN arose
_ARRIVED = "already NaN/Inf"  # when it reached the last module: the loss, or outside modules
_IN_BACKWARD = "in the backward of"  # a module's backward turned it non-finite
_PARAM = "the gradient of parameter"
# an unlogged step's forward event (probe/_trail.py) whose earlier outputs could not be read
_UNREAD = "whose output was freed or changed in place:"
# a forward event whose module's input held the NaN/Inf already (probe/_trail.py INPUT_BAD)
_INPUT_BAD = "its input was already NaN/Inf"

_SHARE = re.compile(r"\(([0-9.eE+-]+) of its values\)")
_SOURCE = {
    "(input)": "the NaN/Inf in the model input",
    "(target)": "the NaN/Inf in the target",
}
_CLEAN_DATA = (
    "drop or impute the rows before they reach the model and the loss "
    "(torch.nan_to_num for a quick look)"
)


def _overflowing(ctx: Context) -> bool:
    grew = ctx.activation_matrix
    return bool(grew.size and np.nanmax(np.abs(grew[np.isfinite(grew)]), initial=0) > 1e18)


_OVERFLOW = Remedy(
    "activations grow until they overflow: the init scale is too large for this depth; "
    "re-initialise (Kaiming/Xavier/LSUV) and clip gradients",
    "kaiming_normal",
    "gp.init.apply(model, 'kaiming_normal')",
)


#: float16's largest finite value: finite values past it that a module turns into ±Inf
#: were cast to float16 inside it (float32 overflows only past 3.4e38)
_FP16_MAX = 65504.0


def _entering(ctx: Context, layer: str | None, step: int) -> float | None:
    """The largest finite max|x| the module ``layer`` was given at ``step``: the outputs of
    its own sub-modules, else of the module run just before it (its input, in a chain)."""
    if (
        layer is None
        or step not in ctx.steps
        or ("activation", "max_abs") not in set(ctx.run.quantities())
    ):
        return None
    names = [m.name for m in ctx.modules]
    inner = [n for n in names if n.startswith(layer + ".")]
    if not inner and layer in names and names.index(layer) > 0:
        inner = [names[names.index(layer) - 1]]
    if not inner:
        return None
    peaks = ctx.matrix("activation", "max_abs", inner)[:, ctx.steps.index(step)]
    peaks = peaks[np.isfinite(peaks)]
    return float(peaks.max()) if peaks.size else None


def _float16_remedy(kind: str, peak: float | None, meta: dict | None = None) -> Remedy:
    """``peak``: the largest value it was given at the step, when that step was logged; None
    for a module whose output is float16 (``meta["layer_dtypes"]``) on an unlogged step."""
    given = (
        f"the values it was given reach {peak:.3g}, past float16's largest (65504)"
        if peak is not None
        else "its output is float16, whose largest value is 65504"
    )
    return Remedy(
        f"{kind} turned finite values into ±Inf, and {given}: a float16 cast inside it "
        f"(.half(), autocast's float16) overflows them — compute it in bfloat16 (float32's "
        f"range) or float32, and find what made them grow (the learning rate, the data's "
        f"scale)",
        None,
        f"with torch.autocast(device_type={device_type(meta)}, dtype=torch.bfloat16):\n"
        "    loss = loss_fn(model(x), y)  # instead of float16 / .half()",
    )


def _code_owner(ctx: Context, layer: str) -> tuple[str, str]:
    """(name, type) of the module whose own ``forward`` code runs just before ``layer`` is
    called: its innermost ancestor that is not an ``nn.Sequential`` (whose forward only
    chains its children); ("", the model's type) for the model's own forward."""
    parts = layer.split(".")
    for k in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:k])
        kind = ctx.module_type(name)
        if kind and kind != "Sequential":
            return name, kind
    return "", ctx.module_type("(model)") or ctx.module_type("")


def _made_before(ctx: Context, event: Event) -> Remedy:
    """A forward event whose module's input held the NaN/Inf already, no watched module
    having made one: the code of its parent's forward made it (``x / x.std()`` of a
    constant row, ``log``/``sqrt`` of a value ≤ 0, an ``exp`` that overflows, a hand-written
    normalisation without eps)."""
    name, kind = _code_owner(ctx, event.layer or "")
    where = f"{kind or 'the model'}.forward" + (f" ({name})" if name else " (the model's)")
    return Remedy(
        f"the NaN/Inf was made before {event.layer} was called, by the code of {where}, not "
        f"by a module: a division by a norm or std that is 0 (a constant row, "
        f"an all-zero input, a padded sequence of length 0), log or sqrt of a value ≤ 0, or "
        f"an exp that overflows; add an eps to each denominator and clamp what goes into log, "
        f"sqrt and exp there (or use nn.LayerNorm / F.normalize, which have one)",
        None,
        "x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5)  # eps\n"
        "y = torch.log(p.clamp_min(1e-12))  # clamp before log/sqrt\n"
        "assert torch.isfinite(x).all(), 'NaN/Inf made here'  # to find the line",
    )


def _module_remedy(ctx: Context, event: Event) -> Remedy:
    if _overflowing(ctx):
        return _OVERFLOW
    if event.phase == "forward" and _INPUT_BAD in (event.detail or ""):
        return _made_before(ctx, event)
    kind = ctx.module_type(event.layer) or "this module"
    peak = _entering(ctx, event.layer, event.step) if event.phase == "forward" else None
    if peak is not None and _FP16_MAX < peak < 1e18:
        return _float16_remedy(kind, peak, ctx.run.meta)
    dtypes = ctx.run.meta.get("layer_dtypes")
    half = isinstance(dtypes, dict) and dtypes.get(event.layer) == "float16"
    if event.phase == "forward" and half and event.step not in ctx.steps:
        # an unlogged step's event (probe/_trail.py)
        return _float16_remedy(kind, None, ctx.run.meta)
    if event.phase == "forward":
        return Remedy(
            f"{kind} turned finite inputs into NaN/Inf: a log or sqrt of a value ≤ 0, a "
            f"division by ~0, or an exp that overflows; clamp the input (x.clamp_min(eps)), "
            f"use stable forms (log_softmax, logsumexp, log1p), or compute in float32 under "
            f"autocast"
        )
    if _PARAM in event.detail:
        return Remedy(
            f"the weight gradient of {kind} overflowed although the gradient reaching it was "
            f"finite (large activations times large gradients): lower the learning rate, clip "
            f"gradients (torch.nn.utils.clip_grad_norm_), or compute in float32",
            None,
            "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)",
        )
    return Remedy(
        f"the backward of {kind} turned a finite gradient into NaN/Inf: the derivative of a "
        f"sqrt, norm or pow at 0, or of a log near 0, is infinite; add an eps inside "
        f"(torch.sqrt(x + eps), x.norm() + eps) or clamp the input",
    )


_LOSS = Remedy(
    "the loss is NaN/Inf although the model's output was finite: a log of 0 or of a "
    "negative value, a division by zero, or a target out of the loss's range; use the "
    "stable losses on logits (F.cross_entropy, F.binary_cross_entropy_with_logits) and "
    "check the targets",
    None,
    "assert torch.isfinite(loss), loss",
)


#: ln of float32's largest value: exp(x) is Inf above it
_EXP_MAX = math.log(float(np.finfo(np.float32).max))


def _loss_remedy(ctx: Context, step: int | None) -> Remedy:
    """``_LOSS``, and where the model's output (the last module run) was finite but above
    ``_EXP_MAX`` at ``step``, that a loss exponentiating it overflowed there (a Poisson NLL
    on a log-rate, a hand-written exp or softmax): the output's growth is what to stop."""
    plain = _inf_loss_remedy(ctx, step) or _LOSS
    if step is None or step not in ctx.steps or not ctx.modules:
        return plain
    if ("activation", "max_abs") not in set(ctx.run.quantities()):
        return plain
    out = max(ctx.modules, key=lambda m: m.position).name
    peak = float(ctx.matrix("activation", "max_abs", [out])[0, ctx.steps.index(step)])
    if not (math.isfinite(peak) and peak > _EXP_MAX):
        return plain
    return Remedy(
        f"{_LOSS.text}. The model's output reached {peak:.3g} at step {step}, and exp of "
        f"anything above {_EXP_MAX:.1f} is Inf in float32: a loss that exponentiates it "
        f"(F.poisson_nll_loss(log_input=True), a hand-written exp or softmax) overflows — "
        f"clamp what goes into the exp, and find what made the output grow",
        None,
        f"{_LOSS.code}\nout = out.clamp(max=20.0)  # before a loss that takes exp(out)",
    )


def _inf_loss_remedy(ctx: Context, step: int | None) -> Remedy | None:
    """A loss of +Inf (not NaN) from a finite output: a probability of exactly 0 under a
    log — CTC's, for a target no alignment fits into its input, unless zero_infinity."""
    s = loss_series(ctx.run)
    if s is None or step is None or step not in set(int(x) for x in s.steps):
        return None
    if s.values[list(s.steps).index(step)] != math.inf:
        return None
    return Remedy(
        "the loss is +Inf although the model's output was finite: the log of a probability "
        "of exactly 0 — a CTC loss whose target no alignment fits into its input (longer "
        "than its input length, with the blanks repeats need) is +Inf unless "
        "zero_infinity=True; a hand-written log(p) whose p underflowed to 0 (use log_softmax "
        "or the losses on logits); check the targets and their lengths",
        None,
        "loss = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, "
        "zero_infinity=True)\nassert (input_lengths >= target_lengths).all()",
    )


def _describe(event: Event, layer: str, amount: str) -> tuple[str, str]:
    """(what happened, where) for one event, in words; ``amount`` the share of values."""
    if event.phase == "update":
        return (
            f"the weights of {layer} became NaN/Inf{amount} in the optimizer step (the "
            f"gradients it used were finite)",
            layer,
        )
    if event.phase == "forward":
        if layer == "(input)":
            return f"the model input contains NaN/Inf{amount}", layer
        if _INPUT_BAD in event.detail:
            said = (
                f"{layer}'s input already held NaN/Inf, and its output too{amount}: made "
                f"before it, by code outside every watched module"
            )
            return said, layer
        said = f"{layer} turned finite inputs into NaN/Inf{amount}"
        if _UNREAD in event.detail:  # not read: the outputs of some modules before it
            unread = event.detail.split(_UNREAD, 1)[1].strip()
            said += (
                f" — or a module before it whose output was freed before the probe read it "
                f"({unread}): watch with first_nonfinite=True to tell them apart"
            )
        return said, layer
    if _ARRIVED in event.detail:
        return (
            f"the gradient reaching {layer} (the module nearest the loss) was already "
            f"NaN/Inf{amount}: the loss, or an operation after the last module, was NaN/Inf",
            "(loss)",
        )
    if _PARAM in event.detail:
        return f"{layer}'s weight gradient became NaN/Inf{amount}", layer
    return f"{layer} turned a finite gradient into NaN/Inf{amount} in its backward", layer


def _target_finding(fraction: float, step: int | None) -> Finding:
    return Finding(
        kind="non_finite",
        layer="(target)",
        severity="error",
        step=step,
        evidence={"phase": "loss", "target_nonfinite_fraction": fraction},
        remedy=Remedy(
            f"the targets contain NaN/Inf: {_CLEAN_DATA}", None, "assert torch.isfinite(y).all()"
        ),
        message=(
            f"the target contains NaN/Inf ({fraction:.3g} of its values), so the loss and "
            f"every gradient are NaN/Inf"
        ),
    )


def _loss_finding(loss: float, step: int) -> Finding:
    """The loss is NaN/Inf while the output and the gradients were finite (the backward of
    log(x < 0) is 1/x: finite), e.g. a loss of the user's own outside its domain."""
    return Finding(
        kind="non_finite",
        layer="(loss)",
        severity="error",
        step=step,
        evidence={"phase": "loss", "loss": str(loss)},
        remedy=_LOSS,
        message=(
            f"the loss is {loss} although the model's output was finite (its gradients were "
            f"finite too, so training would follow a meaningless loss)"
        ),
    )


_UPDATED = "(optimizer step) "


def _update_remedy(ctx: Context, event: Event) -> Remedy:
    """The optimizer step overflowed the weights: the step size, and clipping."""
    what = f"the optimizer step at step {event.step} made the weights of {event.layer} NaN/Inf"
    opt = optimizer_of(ctx)
    if "eps" in opt and not opt["eps"] > 0:  # Adam, RMSprop, Adagrad: g / (√v + eps)
        return Remedy(
            f"{what}: {opt.get('type', 'the optimizer')}'s eps is {opt['eps']:g}, so a weight "
            f"whose gradient was exactly 0 so far (an input that is always 0, a unit that never "
            f"fired, an embedding row not yet seen) divides 0 by 0; the step size is not the "
            f"cause. Give eps its default",
            None,
            "for group in opt.param_groups:\n    group['eps'] = 1e-8",
        )
    half = _float16_adam(ctx, opt)
    if half is not None:
        return Remedy(f"{what}: {half}", None, _FLOAT32_WEIGHTS.format(device_type(ctx.run.meta)))
    peak = peak_before(ctx, event.step)
    cut = clip(ctx, event.step, what)
    if peak is None:
        return Remedy(
            f"{what}: lower the learning rate; {cut.text}",
            None,
            "for group in opt.param_groups:\n    group['lr'] /= 10\n" + (cut.code or ""),
        )
    said = f"{what} after update ratios of up to {peak:.2g}"
    lower = step_size(ctx, first_ratio(ctx) or peak, event.step, said)
    return Remedy(f"{lower.text}; and {cut.text}", None, f"{lower.code}\n{cut.code}")


#: float16's smallest subnormal is 2^-24: an eps below half of it adds nothing to a float16
#: tensor (1e-8, Adam's default, is 0 there), and a gradient below 2^-12 ≈ 2.4e-4 squares to 0
_FP16_TINY = 2.0**-25

_FLOAT32_WEIGHTS = (
    "model.float()  # float32 weights (before building the optimizer): its state and eps too\n"
    "scaler = torch.amp.GradScaler({0})\n"
    "with torch.autocast(device_type={0}, dtype=torch.float16):  # float16 compute only\n"
    "    loss = loss_fn(model(x), y)\n"
    "scaler.scale(loss).backward(); scaler.step(opt); scaler.update()"
)


def _float16_adam(ctx: Context, opt: dict) -> str | None:
    """Why an Adam-kin step (``g / (√v + eps)``) over float16 weights turns them NaN/Inf
    whatever the learning rate (``run.meta["param_dtypes"]``: the model cast whole with
    ``.half()``), or None: its eps rounds to 0 in float16 and a gradient under 2.4e-4 squares
    to 0, so a weight whose gradient was 0 or tiny divides 0 (or m) by 0."""
    dtypes = ctx.run.meta.get("param_dtypes")  # {param: dtype} of those not float32
    if not isinstance(dtypes, dict) or not dtypes:
        return None
    half = sum(1 for d in dtypes.values() if d == "float16")
    frozen = set(ctx.run.meta.get("frozen_params") or [])
    trainable = [la.name for la in ctx.run.layers("param") if la.name not in frozen]
    eps = opt.get("eps")
    if not half * 2 > max(len(trainable), len(dtypes)):
        return None
    if not isinstance(eps, (int, float)) or not 0 < eps < _FP16_TINY:
        return None
    return (
        f"the weights are float16 ({half} of the model's parameter tensors: a model cast with "
        f".half()), and so are {opt.get('type', 'the optimizer')}'s state and step: its eps "
        f"{eps:g} is 0 in float16 and a gradient under 2.4e-4 squares to 0 there, so a weight "
        f"whose gradient was 0 or tiny divides 0 by 0 — a lower learning rate does not change "
        f"that. Keep the weights in float32 and compute in float16 under autocast with a "
        f"GradScaler (mixed precision), or train in bfloat16"
    )


_EARLIER = "(earlier step) "


def _nonfinite_since(ctx: Context, events: list[Event], event: Event) -> int | None:
    """The step of an earlier NaN/Inf — an event of another step, or the loss itself — after
    which the loss never was finite again up to ``event`` (after a backward event: from the
    step after it, whose loss is the first its update can reach): that NaN/Inf went into the
    weights (the optimizer stepped with it), so this one is its consequence, wherever it
    shows up first."""
    loss = loss_series(ctx.run)
    if loss is None or event.phase == "update":
        return None
    bad = loss.steps[~np.isfinite(loss.values) & (loss.steps < event.step)]
    starts = sorted({e.step for e in events if e.step < event.step and e.phase != "update"})
    starts += [int(bad[0])] if bad.size else []
    for t in sorted(starts):
        span = loss.values[(loss.steps >= t) & (loss.steps < event.step)]
        if span.size and not np.isfinite(span).any():
            return int(t)
    # a backward NaN/Inf of step t leaves t's loss finite; the optimizer step applies it, so
    # the loss is NaN/Inf from t + 1: every step after t up to this event's (its own included)
    for t in sorted({e.step for e in events if e.step < event.step and e.phase == "backward"}):
        span = loss.values[(loss.steps > t) & (loss.steps <= event.step)]
        if span.size and not np.isfinite(span).any():
            return int(t)
    return None


def _skipped(ctx: Context, step: int) -> bool:
    """The step's gradients were NaN/Inf, its loss finite, and the run went on finite: the
    update was skipped (series.skipped_steps: a GradScaler finding its scale)."""
    return step in skipped_steps(ctx.run)


def _recovered(ctx: Context, events: list[Event], event: Event) -> int | None:
    """A forward NaN/Inf that made the loss NaN/Inf at its step, after which the loss was
    finite at every step to the end (the step's update was not applied: a GradScaler or the
    loop skipped it; rules/loss.py's recovered steps), with no later event: the first step
    finite again, else None."""
    if event.phase != "forward":
        return None
    loss = loss_series(ctx.run)
    if loss is None or finite_at(loss, event.step) is not False:
        return None
    after = loss.values[loss.steps > event.step]
    if not after.size or not np.isfinite(after).all():
        return None
    if any(e.step > event.step and e.phase != "forward" for e in events):
        return None
    return int(loss.steps[loss.steps > event.step][0])


def _contained(ctx: Context, events: list[Event], event: Event) -> bool:
    """A forward NaN/Inf that reached neither the loss nor any gradient: the loss is recorded
    and finite at its step and at every step after it, the global gradient norm finite
    there, and no backward or update event at that step or later. ``-inf`` logits of classes
    an action mask removes are such values (cross-entropy gives them probability 0, and a
    gradient of 0); a NaN that reaches the loss or a gradient is not, nor a float16/bfloat16
    layer's (its ``range_used`` recorded: an overflow, which the overflow rule explains)."""
    if event.phase != "forward" or event.layer is None:
        return False
    if ("activation", "range_used") in set(ctx.run.quantities()) and ctx.steps:
        used = ctx.matrix("activation", "range_used", [event.layer])
        if np.isfinite(used).any():
            return False
    loss = loss_series(ctx.run)
    if loss is None or finite_at(loss, event.step) is not True:
        return False
    if not np.isfinite(loss.values[loss.steps >= event.step]).all():
        return False
    norm = model_series(ctx.run, "grad_norm", "global")
    if norm is not None and finite_at(norm, event.step) is False:
        return False
    return not any(e.phase != "forward" and e.step >= event.step for e in events)


def _backward_episode(ctx: Context, ep: dict, bracket: dict) -> Finding:
    """An unlogged step's NaN/Inf made in its backward (``_unlogged.in_backward``): the
    parameter gradients the backward produced before ``bracket["after"]``'s were finite,
    ``bracket["at"]``'s NaN/Inf; the modules between them (``between``) made it in their
    backward, or, with none between, ``at``'s own weight gradient overflowed. Named from
    the free ‖g‖² checks of that step, before the optimizer applied it — the next logged
    step's search finds every weight after it NaN/Inf, which names no origin."""
    t, at, after = int(ep["step"]), bracket["at"], bracket.get("after")
    inside = between(ctx, at, after)
    if not inside and after is None:  # the backward's first gradients: after the last module
        return _loss_backward_episode(ctx, ep, at)
    layer = inside[0] if inside else at
    kind = ctx.module_type(layer) or "this module"
    finite = (
        f"the parameter gradients of {after} ({ctx.module_type(after) or 'a module'}) were "
        f"still finite, those of {at} ({ctx.module_type(at) or 'a module'}) NaN/Inf"
        if after is not None
        else f"the first parameter gradients it produced, those of {at}, were NaN/Inf"
    )
    if inside:
        names = ", ".join(inside[:4]) + (", …" if len(inside) > 4 else "")
        made = (
            f"made in the backward of {layer} ({kind}), the module between them"
            if len(inside) == 1
            else f"made in the backward of a module between them ({names}; {layer} first)"
        )
        if after is None:
            made = f"made in the backward of {names}, run after {at}, or in the loss"
        detail = f"{_IN_BACKWARD} {layer}"
    else:
        made = (
            f"made in {at}'s own backward (its weight gradient overflowing), or by an "
            f"operation on its output that is not a module (a functional sqrt, log, pow or "
            f"division in a forward)"
        )
        detail = f"{_IN_BACKWARD} {at}"
    remedy = _module_remedy(ctx, Event(t, "backward", layer, detail))
    remedy = Remedy(
        remedy.text + "; to name the module exactly, record the search on every step",
        remedy.code,
        remedy.code or LOCATE.code,
    )
    located = ep.get("located_step")
    return Finding(
        kind="non_finite",
        layer=layer,
        severity="error",
        step=t,
        onset=t,
        evidence={
            "phase": "backward",
            "detail": f"{detail} (from the unlogged step's parameter gradients)",
            "first_module": layer,
            "between": [after, at],
            "candidates": inside or [at],
            "located_step": located,
        },
        remedy=remedy,
        message=(
            f"first non-finite value at step {t}, in the backward pass (the loss and the "
            f"model's output were finite): {finite} — {made}"
            + (
                f"; the optimizer applied it, so at step {located} every weight from there "
                f"on was NaN/Inf already"
                if located is not None and ep.get("weights_finite") is False
                else ""
            )
        ),
    )


def _loss_backward_episode(ctx: Context, ep: dict, at: str) -> Finding:
    """``_backward_episode`` when the backward's very first parameter gradients (the module
    nearest the loss, ``at``) were NaN/Inf and no module runs after ``at``: the gradient
    arrived NaN/Inf from the loss — a finite loss whose derivative is not (a sqrt of 0, an
    abs or norm at 0, a log near 0 in the loss function)."""
    t = int(ep["step"])
    return Finding(
        kind="non_finite",
        layer="(loss)",
        severity="error",
        step=t,
        onset=t,
        evidence={
            "phase": "backward",
            "detail": f"the gradient reaching {at} was NaN/Inf (from the unlogged step's "
            f"parameter gradients)",
            "first_module": at,
            "between": [None, at],
            "candidates": ["(loss)"],
            "located_step": ep.get("located_step"),
        },
        remedy=Remedy(
            "the loss was finite but its gradient was not: the derivative of a sqrt, abs or "
            "norm at 0, or of a log near 0, in the loss is infinite; add an eps inside "
            "(torch.sqrt(mse + 1e-12)) or clamp what the loss takes",
            None,
            LOCATE.code,
        ),
        message=(
            f"first non-finite value at step {t}, in the backward pass (the loss and the "
            f"model's output were finite): the first parameter gradients it produced, "
            f"those of {at} (the module nearest the loss), were already NaN/Inf — the "
            f"gradient of the loss itself was"
        ),
    )


@RULES.register("non_finite")
def non_finite(ctx: Context) -> list[Finding]:
    events = ctx.run.events()
    target = ctx.run.meta.get("target_nonfinite")
    target = float(target) if isinstance(target, (int, float)) and target > 0 else None
    findings = []
    if target is not None:
        first = min((e.step for e in events), default=ctx.steps[0] if ctx.steps else None)
        findings.append(_target_finding(target, first))
    forward = [e for e in events if e.phase == "forward"]
    loss = ctx.run.meta.get("loss")
    arrived = any(e.phase == "backward" and _ARRIVED in e.detail for e in events)
    if isinstance(loss, float) and not np.isfinite(loss) and not (target or forward or arrived):
        findings.append(_loss_finding(loss, min((e.step for e in events), default=0)))
    origin = loss_origin(ctx, _LOSS)
    if origin is not None and not target:
        findings.append(origin[1])
    findings += transient_findings(ctx)
    # unlogged NaN/Inf made in a backward, the next logged step too late to name it
    made_in_backward: list[int] = []
    for ep in episodes(ctx):
        bracket = in_backward(ep)
        hidden = ep.get("weights_finite") is False or (
            ep.get("located_step") is None and ep.get("finite_at") is None
        )
        if bracket is not None and hidden and not target:
            findings.append(_backward_episode(ctx, ep, bracket))
            made_in_backward.append(int(ep["step"]))
    located: Event | None = None  # the event that located an unlogged step's NaN/Inf
    for event in events:
        layer = event.layer if event.layer is not None else "(input)"
        share = _SHARE.search(event.detail or "")
        amount = f" ({share.group(1)} of its values)" if share else ""
        what, where = _describe(event, layer, amount)
        cause, seen = None, event.step
        updated = [u for u in events if u.phase == "update" and u.step < event.step]
        # the event that located an unlogged step's NaN/Inf is that NaN/Inf, not its sequel
        gone = None if located_at(ctx, event) else _nonfinite_since(ctx, events, event)
        ep = located_at(ctx, event)
        if ep is not None and int(ep["step"]) in made_in_backward:
            cause = _EARLIER + str(ep["step"])  # named above, from its parameter gradients
        elif origin is not None and not target and event.step > origin[0]:
            cause = _EARLIER + str(origin[0])
        elif event.phase != "update" and updated:
            cause = _UPDATED + (updated[0].layer or "")
        elif gone is not None:
            cause = _EARLIER + str(gone)
        elif located is not None and event.step == located.step:
            cause = _EARLIER + str(located_at(ctx, located)["step"])  # type: ignore[index]
        elif event.phase == "backward" and _skipped(ctx, event.step):
            findings.append(skipped_step(event, what))
            continue
        elif event.phase == "backward":
            earlier = [e for e in forward if e.step <= event.step]
            if earlier:
                cause = earlier[0].layer or "(input)"
            elif target is not None and _ARRIVED in event.detail:
                cause = "(target)"
        if cause is not None and cause.startswith(_EARLIER):
            source = f"the NaN/Inf of step {cause[len(_EARLIER) :]} (the loss stayed NaN/Inf since)"
            remedy = Remedy(f"a consequence of {source}: fix that one (see its finding)")
            message = f"step {event.step}: {what}; a consequence of {source}"
        elif cause is not None and cause.startswith(_UPDATED):
            source = f"the weights of {cause[len(_UPDATED) :]} made NaN/Inf by the optimizer step"
            remedy = Remedy(f"a consequence of {source}: fix that one (see its finding)")
            message = f"step {event.step}: {what}; a consequence of {source}"
        elif cause is not None:
            source = _SOURCE.get(cause, f"the NaN/Inf {cause} produced in the forward pass")
            remedy = Remedy(f"a consequence of {source}: fix that one (see its finding)")
            message = f"step {event.step}: {what}; a consequence of {source}"
        else:
            if where == "(input)":
                remedy = Remedy(
                    f"the data already contains NaN/Inf: {_CLEAN_DATA}",
                    None,
                    "assert torch.isfinite(x).all()",
                )
            elif where == "(loss)":
                remedy = _loss_remedy(ctx, event.step)
            elif event.phase == "update":
                remedy = _update_remedy(ctx, event)
            else:
                remedy = _module_remedy(ctx, event)
            message = (
                f"first non-finite value in the {event.phase} pass at step {event.step}: {what}"
            )
            ep = located_at(ctx, event)
            if ep is not None:
                located, seen = event, int(ep["step"])
                message = located_message(ep, event, layer, what)
                if ep.get("weights_finite") is False and where not in ("(input)", "(loss)"):
                    remedy = LOCATE
        contained = cause is None and _contained(ctx, events, event)
        again = _recovered(ctx, events, event) if cause is None and not contained else None
        if again is not None:
            message += (
                f"; transient: the loss was finite again from step {again} to the end of the "
                f"run (that step's update was not applied: a GradScaler or the loop skipped "
                f"it), so it cost a step, not the run"
            )
        if contained:
            message += (
                f"; the loss and every gradient stayed finite at step {event.step} and to the "
                f"end of the run: it did not reach them (a deliberate mask, -inf logits of "
                f"classes or actions that cannot be chosen, or an output the loss does not "
                f"use): nothing to fix if that is meant"
            )
        findings.append(
            Finding(
                kind="non_finite",
                layer=where,
                severity=(
                    "info"
                    if cause is not None or contained
                    else ("warning" if again is not None else "error")
                ),
                step=event.step,
                onset=seen,
                evidence={
                    "phase": event.phase,
                    "detail": event.detail,
                    "first_module": layer,
                    **({"caused_by": cause} if cause is not None else {}),
                    **({"reached_loss": False} if contained else {}),
                    **({"transient": True, "finite_again_at": again} if again is not None else {}),
                },
                remedy=remedy,
                message=message,
            )
        )
    return findings
