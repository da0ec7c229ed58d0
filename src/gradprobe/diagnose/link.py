"""Symptoms in the loss linked to the causes in the layers that preceded them.

After every rule has run, :func:`link`:

1. gives each symptom (``not_learning``, ``stalled``, ``diverging``, ``loss_spike``,
   ``oscillating``) the cause findings whose onset is not after the symptom's end, the
   most specific first (:func:`_rank`: through time, overflow, attention, non-finite
   weights, the gradient norm, large updates, units that died in training, small updates,
   the rest; in a Post-LN transformer large updates first, outside recurrent nets the
   gradient norm after them; attention logits that jumped past the line right after an
   update larger than the attention's weights after the large updates), in ``causes`` and
   in its message; its remedy is the first cause's, with the next one's lines added (each
   line once). A ``stalled`` with no cause is ``info`` (healthy
   runs have plateaus), and so is a ``not_learning`` that fell far beyond its noise
   (``evidence["beyond_noise"]``: a loss whose floor is far from 0 falls little against
   its level).
   A symptom with no cause found falls back on the update ratios (10× off the usual ~1e-3
   either way), else on a remedy for the symptom alone; an ``oscillating`` with neither,
   its update ratios measured, is ``info`` (the objective's scatter: mixup, dropout). A
   ``not_learning`` or ``stalled`` under weight decay that removes ≥
   ``training.HEAVY_DECAY`` of every weight a step has that decay as its first cause
   (``Cause("weight_decay", ...)``) and its remedy;
2. replaces an init remedy (a scheme, ``gp.init.``, ``_init_weights``,
   ``reset_parameters``) on a problem that appeared during training (onset after the
   first logged step) by the step size's: re-initialising is only the remedy when the init
   is the cause; and gives saturated, dead units and large updates in a run whose float
   input is far off the unit scale (rms > ``input_rms``, 10: pixels in 0-255) standardising
   the input as their remedy, their own after it (:mod:`.inputs`);
3. gives a NaN/Inf that followed half-precision values near their limit the precision
   remedy (bf16, a GradScaler) instead of a guess at log/sqrt/exp;
4. gives small updates under a gradient that vanished from before them the vanishing's
   remedy (no learning rate moves a gradient of 1e-12), ranked after it; and the problems of
   the step size that follow gradients never zeroed (``optimizer.zero_grad()`` missing:
   ``rules/grad_norm.py``, ranked first) the zeroing;
5. lowers causes of severity error to warnings in a run whose recorded loss shows no
   symptom (a cause without a symptom yet is a warning, with its onset); NaN/Inf stays an
   error. Dead or saturated units that appeared in training after update ratios that were
   not large (≤ ``large_update_ratio``) in such a run are info: the model stopped using them; so are
   large updates (at most the weight's norm) of the first steps only, after which nothing
   else went wrong: the model trained through them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .context import Context
from .finding import SYMPTOMS, Cause, Finding, Remedy
from .inputs import standardise_first
from .rules.grad_norm import KEPT
from .rules.recorded import NO_GRADIENT
from .rules.updates import first_ratio, peak_before, ratios
from .series import loss_series
from .training import (
    TARGET_EARLY_RATIO,
    adaptive,
    decay_remedy,
    heavy_decay,
    lr_jump_remedy,
    lr_jumps,
    post_ln_blocks,
    raise_lr,
    step_size,
)


def _rank(f: Finding) -> int:
    """Lower is more specific: the change that fixes this cause is the one to make."""
    phase = f.evidence.get("phase")
    if f.evidence.get("measured_on") == KEPT:
        return -1  # a loop that never zeroes its gradients: whatever else followed, fix it
    if f.kind == "exploding" and f.time_step is not None:
        return 0  # clipping, through time
    if f.kind == "overflow":
        return 1
    if f.kind == "attention_logits":
        return 2
    if f.kind == "non_finite" and phase == "update":
        return 3
    if f.kind == "exploding" and f.layer is None:
        return 4
    if f.kind == "large_updates":
        return 5
    if f.kind == "exploding" and f.evidence.get("measured_on") == "residual stream over training":
        return 5
    if f.kind in ("dead_units", "saturated") and f.evidence.get("appeared") == "during training":
        return 6
    if f.kind == "small_updates":
        return 7
    if f.kind == "non_finite":
        return 8
    return 9


def _summary(f: Finding) -> str:
    """A cause in a few words; the finding's own message if its evidence is not the usual."""
    try:
        return _words(f)
    except (TypeError, ValueError):
        return f"{f.kind} at {f.layer} (step {f.onset}): {f.message}"


def _words(f: Finding) -> str:
    e, at = f.evidence, f.layer
    if f.kind == "large_updates":
        return f"update ratios of {e.get('update_ratio', 0):.2g} at {at} (step {e.get('at_step')})"
    if f.kind == "small_updates" and e.get("updated") == "never (stuck at 0)":
        return f"{e.get('weights_never_updated')} of {e.get('weights')} weights stuck at 0"
    if f.kind == "small_updates" and e.get("updated") == NO_GRADIENT:
        return "no gradient reaching any parameter (the loss is not connected to the model)"
    if f.kind == "small_updates" and e.get("updated") == "never":
        return (
            f"{e.get('weights_never_updated')} of {e.get('weights')} weights never updated "
            f"(‖Δw‖ = 0) although they get gradients"
        )
    if f.kind == "small_updates" and str(e.get("updated", "")).startswith("rounded away"):
        ratio, dtype = e.get("median_update_ratio", 0), e.get("dtype")
        return (
            f"{dtype} weights whose steps round away ({ratio:.2g} of their norm a step, under "
            f"half {dtype}'s spacing {e.get('relative_spacing', 0):.2g})"
        )
    if f.kind == "small_updates":
        return f"weights moving by only {e.get('median_update_ratio', 0):.2g} of their norm a step"
    if f.kind == "saturated" and "loss_floor" in e:  # rules/probabilities.py
        return (
            f"{at}'s output: probabilities given to cross-entropy, which cannot go below "
            f"{e['loss_floor']:.3g} on them"
        )
    if f.kind in ("dead_units", "saturated"):
        frac = e.get("dead_fraction", e.get("saturated_fraction", 0))
        word = "dead" if f.kind == "dead_units" else "saturated"
        return f"{frac:.0%} of {at}'s units {word} from step {f.onset}"
    if f.kind == "attention_logits":
        return f"attention logits of {at} at {e.get('max_logit', 0):.3g} by step {f.onset}"
    if f.kind == "overflow":
        return (
            f"{e.get('dtype')} values of {at} at {e.get('range_used', 0):.0%} of the dtype's "
            f"limit from step {f.onset}"
        )
    if f.kind == "exploding" and f.time_step is not None:
        return (
            f"the gradient of {at} growing {e.get('ratio_first_to_last', 0):.3g}× back "
            f"through time (step {f.onset})"
        )
    if f.kind == "exploding" and e.get("measured_on") == "residual stream over training":
        return f"the residual stream after {at} grown {e.get('growth', 0):.3g}× by step {f.onset}"
    if e.get("measured_on") == KEPT:
        grew = (
            f" (its norm {e['first_norm']:.3g} → {e['peak_norm']:.3g})"
            if "peak_norm" in e and "first_norm" in e
            else ""
        )
        return f"the gradients never zeroed from step {f.onset}: .grad summed over steps{grew}"
    if f.kind == "exploding" and at is None:
        return f"the gradient norm growing {e.get('growth', 0):.3g}× from step {f.onset}"
    if f.kind in ("vanishing", "exploding"):
        ratio = e.get("ratio_lowest_to_output", e.get("ratio_first_to_max"))
        said = f"{ratio:.3g}×, " if isinstance(ratio, (int, float)) else ""
        return f"{f.kind} gradients at {at} ({said}step {f.onset})"
    if f.kind == "non_finite" and at == "(loss)":
        return f"the loss itself NaN/Inf at step {f.onset} (not a layer)"
    if f.kind == "non_finite":
        return f"NaN/Inf in {at} ({e.get('phase')}) at step {f.onset}"
    return f"{f.kind} at {at} (step {f.onset})"


def link(ctx: Context, findings: list[Finding]) -> list[Finding]:
    findings = [_during_training(ctx, f) for f in findings]
    findings = standardise_first(ctx, findings)
    findings = _precision(findings)
    findings = _vanished(findings)
    findings = _never_zeroed(findings)
    findings = _after_the_end(ctx, findings)
    causes = [
        f
        for f in findings
        if f.kind not in SYMPTOMS and f.kind != "no_steps" and f.severity != "info"
    ]
    cause_ids = {id(c) for c in causes}
    out = []
    for f in findings:
        if f.kind in SYMPTOMS:
            end = f.end if f.end is not None else (f.step or 0)
            before = [c for c in causes if (c.onset or 0) <= end]
            out.append(_with_causes(ctx, f, before))
        else:
            out.append(f)
    if not _loss_judged(ctx) or any(f.kind in SYMPTOMS for f in findings):
        return out
    quiet = {"symptom": "none in the loss yet"}
    later = [f for f in out if f.severity != "info" and (f.onset or 0) > 0]
    return [
        _sparse(f)
        if _sparsified(ctx, f)
        else _survived(f)
        if _outlived(ctx, f, later)
        else dataclasses.replace(f, severity="warning", evidence={**f.evidence, **quiet})
        if f.severity == "error" and id(f) in cause_ids and f.kind != "non_finite"
        else f
        for f in out
    ]


def _sparsified(ctx: Context, f: Finding) -> bool:
    """Units that went dead or saturated during training while no update before it was
    large (update ratios ≤ ``large_update_ratio``, 0.1), in a run whose loss shows no
    symptom: nothing pushed them there but learning (a ReLU FFN that learnt its task on a
    few units), so the step size is no cause and there is no symptom to explain. (The line
    was TARGET_EARLY_RATIO, 1e-2: Adam's first step at its default lr 1e-3 is lr / rms(w),
    0.014 for a fan-in of 64 and 0.05 for 784 — a VAE that learnt 43 → 16 warned of 61 %
    dead encoder units after ratios of 0.011 on one seed and not on the other.)"""
    if f.kind not in ("dead_units", "saturated") or f.severity == "info":
        return False
    peak = f.evidence.get("update_ratio_before")
    return (
        f.evidence.get("appeared") == "during training"
        and isinstance(peak, (int, float))
        and peak <= ctx.t.large_update_ratio
    )


def _sparse(f: Finding) -> Finding:
    peak = f.evidence["update_ratio_before"]
    said = (
        f"; the loss shows no symptom and the weights moved at the usual rate (update ratios "
        f"up to {peak:.2g}) before it: the units the model stopped using, not a failure"
    )
    keep = (
        "LeakyReLU/GELU keeps more units alive"
        if f.kind == "dead_units"
        else "normalisation before the activation keeps its inputs in the curved range"
    )
    return _no_harm(
        f,
        said,
        "learnt sparsity",
        Remedy(
            "nothing to change while the loss falls; if it stops falling, a lower learning "
            f"rate or {keep}"
        ),
    )


def _no_harm(f: Finding, said: str, judged: str, remedy: Remedy) -> Finding:
    """``f`` as information: a cause in a run whose loss shows no symptom, judged harmless."""
    return dataclasses.replace(
        f,
        severity="info",
        message=f.message + said,
        evidence={**f.evidence, "symptom": "none in the loss", "judged": judged},
        remedy=remedy,
    )


def _outlived(ctx: Context, f: Finding, later: list[Finding]) -> bool:
    """Large updates seen only in the first steps (the run's median ratio at most
    ``large_update_ratio``), none larger than the weight itself (the rule's warning, not its
    error: a step over 100 % of the norm erases the init), in a run whose loss shows no
    symptom and where nothing else went wrong after them: the model trained through its
    large first steps (Adagrad's and Adam's first step is ≈ lr per element, whatever the
    gradient), so they caused nothing. Under L-BFGS a first step as large as the weight is
    its quasi-Newton step (a curvature-scaled direction, line-searched when asked), not a
    learning rate set too high: its size is not held against it."""
    if f.kind != "large_updates":
        return False
    if f.severity != "warning" and (ctx.run.meta.get("optimizer") or {}).get("type") != "LBFGS":
        return False
    if f.evidence.get("judged_on") != "first steps":
        return False
    median = f.evidence.get("median_update_ratio")
    if not isinstance(median, (int, float)) or not median <= ctx.t.large_update_ratio:
        return False
    return not any(g is not f for g in later)


def _survived(f: Finding) -> Finding:
    peak, median = f.evidence["update_ratio"], f.evidence["median_update_ratio"]
    said = (
        f"; the loss shows no symptom, the updates settled to a median {median:.2g} and "
        f"nothing went wrong after them: the model trained through its large first steps"
    )
    remedy = Remedy(
        f"nothing to change while the loss falls; first steps of {peak:.2g} of a weight's "
        f"norm are a risk on a larger model or a harder task — a warm-up keeps them near 1e-2",
        None,
        f.remedy.code,
    )
    return _no_harm(f, said, "trained through", remedy)


def _after_the_end(ctx: Context, findings: list[Finding]) -> list[Finding]:
    """Causes first seen after the loss went NaN/Inf for good describe NaN weights (dead
    units, vanishing gradients of a model that no longer computes numbers): information,
    with the step that made them meaningless."""
    s = loss_series(ctx.run)
    if s is None or not len(s) or np.isfinite(s.values[-1]):
        return findings
    ok = np.nonzero(np.isfinite(s.values))[0]
    end = int(s.steps[int(ok[-1]) + 1]) if ok.size else int(s.steps[0])
    said = f"; seen after the loss became NaN/Inf for good at step {end}: not judged"
    return [
        dataclasses.replace(
            f,
            severity="info",
            message=f.message + said,
            evidence={**f.evidence, "after_nonfinite_loss": end},
        )
        if f.kind not in SYMPTOMS
        and f.kind not in ("non_finite", "no_steps")
        and f.severity != "info"
        and (f.onset or 0) > end
        else f
        for f in findings
    ]


def _loss_judged(ctx: Context) -> bool:
    s = loss_series(ctx.run)
    if s is None:
        return False
    return s.first_nonfinite is not None or len(s) >= ctx.t.min_loss_steps


def _with_causes(ctx: Context, symptom: Finding, before: list[Finding]) -> Finding:
    post_ln, recurrent = bool(post_ln_blocks(ctx)), bool(ctx.recurrent)
    # under Adam and its kin a step's size is ≈ lr per element whatever the gradient's norm:
    # large updates from before a gradient explodes are the learning rate's, and clipping
    # the norm would not shrink them (a 3-layer LSTM at Adam 0.1 was told to clip first)
    big = [c.onset or 0 for c in before if c.kind == "large_updates"] if adaptive(ctx) else []

    def rank(c: Finding) -> float:
        if big and c.kind == "exploding" and _rank(c) >= 0 and min(big) <= (c.onset or 0):
            return 5.5
        # a Post-LN transformer's first large updates are the root (Xiong et al. 2020): the
        # attention logits and dead units that follow are theirs, and Pre-LN/warm-up the fix
        if post_ln and c.kind == "large_updates":
            return 1.5
        # outside recurrent nets, a gradient norm that explodes after large first updates
        # is their consequence: the learning rate is the fix, clipping the help
        if not recurrent and c.kind == "exploding" and c.layer is None and _rank(c) >= 0:
            return 5.5
        # logits that jumped past the line in the update that replaced the weights (moved
        # them by more than their norm) are that update's: the learning rate is the fix
        if c.kind == "attention_logits" and _jumped_with_the_weights(ctx, c):
            return 5.6
        # weights that barely move because their gradient vanished: the vanishing's fix
        if c.kind == "small_updates" and "vanishing_at" in c.evidence:
            return 9.5
        return _rank(c)

    def rank_origin(c: Finding) -> float:
        # NaN/Inf that began in the data or in the loss itself (not in a layer, and with no
        # explosion before it): the fix is there, whatever the layers went through
        if c.kind == "non_finite" and c.severity == "error" and c.layer in _OUTSIDE:
            grew = any(
                b.kind in ("exploding", "overflow") and (b.onset or 0) < (c.onset or 0)
                for b in before
            )
            if not grew or c.layer != "(loss)":
                return -1.0
        return rank(c)

    before = sorted(before, key=lambda c: (rank_origin(c), c.onset or 0))  # most specific first
    found = [Cause(c.kind, c.layer, c.onset, _summary(c)) for c in before]
    jump = _lr_jump_before(ctx, symptom)
    # weight decay that removes a large share of every weight a step keeps a loss from
    # falling whatever the layers show (they show its shrinking weights): the first cause
    decay = heavy_decay(ctx) if symptom.kind in ("not_learning", "stalled") else None
    if jump is not None:
        step, lo, hi = jump
        what = f"the learning rate jumped {hi / lo:.3g}× at step {step} ({lo:.3g} → {hi:.3g})"
        found = [Cause("large_updates", None, step, what), *found]
        remedy = lr_jump_remedy(step, lo, hi, f"the loss changed from step {symptom.onset}")
    elif decay is not None:
        fraction, lr, wd = decay
        what = (
            f"weight decay removing {fraction:.0%} of every weight a step (weight_decay="
            f"{wd:g} at lr {lr:.3g})"
        )
        found = [Cause("weight_decay", None, ctx.steps[0] if ctx.steps else 0, what), *found]
        remedy = decay_remedy(ctx, "the loss does not fall") or _ALONE[symptom.kind]
    elif before:
        ranked = before
        first = ranked[0].remedy
        # the next cause's change is added only for a cause already there while the symptom
        # began (within its smoothing window): one that began long after (a gradient spike
        # at step 109 of a loss that never fell from step 0) is not what to change for it
        soon = (symptom.onset or 0) + max(10, int(symptom.evidence.get("window", 10) or 10))
        second = next(
            (c.remedy for c in ranked[1:] if c.kind != ranked[0].kind and (c.onset or 0) <= soon),
            None,
        )
        text, code = first.text, first.code
        if second is not None and second.text and second.text != text:
            text += f". Also: {second.text}"
            extra = _without_lr(second.code) if "group['lr']" in (code or "") else second.code
            # the lines the first remedy already has (two step-size causes both write the
            # warm-up) are said once
            have = set((code or "").split("\n"))
            extra = "\n".join(x for x in (extra or "").split("\n") if x not in have) or None
            if extra and extra != code:
                code = f"{code}\n{extra}" if code else extra
        remedy = Remedy(text, first.scheme, code)
    else:
        weak = _weak_cause(ctx, symptom)
        if weak is not None:
            found, remedy = [weak[0]], weak[1]
        elif symptom.evidence.get("beyond_noise"):
            remedy = _OFFSET
        else:
            remedy = _healthy_layers(ctx, symptom) or _ALONE[symptom.kind]
    said = "; ".join(c.summary for c in found)
    message = symptom.message + (f". Before it: {said}" if found else "")
    # a plateau with nothing wrong in the layers is how healthy runs look between phases too;
    # so is a loss that fell far beyond its noise but little against a level far from 0 (a
    # constant term in the loss): without a cause in the layers, information
    quiet = symptom.kind == "stalled" or symptom.evidence.get("beyond_noise")
    # a loss that scatters while the weights move by the usual step (no large update, no
    # cause: _weak_cause found none) scatters from its objective, not from the optimiser
    scatter = _objective_scatter(ctx) if symptom.kind == "oscillating" and not found else None
    if scatter is not None:
        quiet, remedy = True, scatter
    severity = "info" if quiet and not found else symptom.severity
    return dataclasses.replace(
        symptom, causes=tuple(found), remedy=remedy, message=message, severity=severity
    )


_OUTSIDE = ("(loss)", "(input)", "(target)")

#: an update that moves a weight by more than its own norm replaces it (the updates rule's
#: error line): what the layer computes after it is that step's doing
REPLACED = 1.0


def _jumped_with_the_weights(ctx: Context, c: Finding) -> bool:
    """Did the attention logits cross the line at the first logged step after updates that
    moved the attention's own weights (every weight's, if it holds none) by more than
    ``REPLACED`` of their norm? Attention-logit growth (Dehghani et al. 2023) is a drift of
    q and k over many steps that QK-norm stops; logits that jump past 100 between two logged
    steps, in the step that replaced W_q and W_k (Adam at lr 1 sets every weight to ±lr;
    SGD at lr 10 blows up the whole layer), follow from that step, as everything else
    does, and only a lower learning rate prevents it. Logits there at the first logged step
    (the init's) are not judged here."""
    steps = [int(x) for x in ctx.steps]
    if c.onset is None or c.onset not in steps or steps.index(c.onset) == 0:
        return False
    r = ratios(ctx)
    if r is None:
        return False
    before = steps[steps.index(c.onset) - 1]
    own = [i for i, n in enumerate(r.names) if c.layer and n.startswith(c.layer + ".")]
    cols = (r.steps >= before) & (r.steps < c.onset)
    values = r.values[own or list(range(len(r.names))), :][:, cols]
    finite = values[np.isfinite(values)]
    return bool(finite.size) and float(finite.max()) > REPLACED


def _without_lr(code: str | None) -> str | None:
    """``code`` less the learning rate it sets (``for group in opt.param_groups:`` and its
    ``group['lr'] = ...`` line): the first cause's remedy has set the lr, and a second value
    read at another step of a rising schedule contradicts it (two lrs in one remedy)."""
    if not code:
        return code
    lines, out, i = code.split("\n"), [], 0
    while i < len(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if lines[i].startswith("for group in opt.param_groups:") and "group['lr']" in nxt:
            i += 2
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out) or None


def _lr_jump_before(ctx: Context, symptom: Finding) -> tuple[int, float, float] | None:
    """The learning-rate jump (training.lr_jumps) the symptom began right after: at most two
    steps later than its onset (the onset of a rise is read off a smoothed curve) and at most
    a smoothing window (≥ 10 steps) before it."""
    if symptom.onset is None:
        return None
    w = max(10, int(symptom.evidence.get("window", 10) or 10))
    near = [j for j in lr_jumps(ctx) if j[0] - 2 <= symptom.onset <= j[0] + w]
    return near[-1] if near else None


def _healthy_layers(ctx: Context, symptom: Finding) -> Remedy | None:
    """A loss that does not fall while the layers look healthy (the weights move at the
    usual rate, no other finding): the data, the labels or the loss, not the gradients."""
    if symptom.kind != "not_learning":
        return None
    r = ratios(ctx)
    if r is None:
        return None
    medians = r.medians()
    medians = medians[np.isfinite(medians) & (medians > 0)]
    if not medians.size:
        return None
    typical = float(np.median(medians))
    if not 1e-4 <= typical <= TARGET_EARLY_RATIO * 3:
        return None
    return Remedy(
        f"the layers look healthy: the gradients reach every layer and the weights move by "
        f"{typical:.2g} of their norm per step (~1e-3 is usual), no unit is dead or saturated "
        f"— this is not a gradient problem. Look at the data: labels that do not belong to "
        f"their inputs (shuffled, misaligned, or a wrong label column) learn nothing like "
        f"this; then at the loss (is it the one meant?) and the learning rate (3× up and down)",
        None,
        "x, y = next(iter(loader)); print(y[:20])  # do the labels match the inputs?",
    )


def _objective_scatter(ctx: Context) -> Remedy | None:
    """An ``oscillating`` loss with no cause: the optimiser jumping across a valley moves the
    weights by large steps (large_updates, or _weak_cause's 10× the usual ~1e-3); where the
    update ratios were measured and stayed under that, the scatter is the objective's — a
    random term drawn per batch (mixup's λ, a sampled loss), dropout, tiny batches — which
    the sampling line (independent examples) does not foresee. None without ratios."""
    r = ratios(ctx)
    if r is None:
        return None
    medians = r.medians()
    medians = medians[np.isfinite(medians) & (medians > 0)]
    if not medians.size:
        return None
    return Remedy(
        f"the loss scatters around its trend, but the weights move by "
        f"{float(np.median(medians)):.2g} of their norm a step (~1e-3 is usual) and nothing in "
        f"the layers is wrong: the scatter comes from the objective (a random term drawn per "
        f"batch such as mixup's λ, dropout, a sampled loss, or small batches), not from the "
        f"optimiser jumping; if the trend stops falling, lower the learning rate 3×"
    )


def _weak_cause(ctx: Context, symptom: Finding) -> tuple[Cause, Remedy] | None:
    """Update ratios 10× off the usual ~1e-3, below the rules' lines, that explain the
    symptom: too large before a rise, a spike or an oscillation; too small under a curve
    that does not fall."""
    r = ratios(ctx)
    if r is None:
        return None
    early = r.early(ctx.t.early_update_steps)
    finite = early[np.isfinite(early)]
    medians = r.medians()
    medians = medians[np.isfinite(medians) & (medians > 0)]  # 0: nothing applied (skipped)
    if symptom.kind == "oscillating":
        # the optimiser jumping across a valley takes large steps while the loss swings: the
        # ratios from its onset on, not an Adam-kin's large first steps long before it
        late = r.values[:, r.steps >= (symptom.onset or 0)]
        during = np.array([np.median(c[np.isfinite(c)]) for c in late if np.isfinite(c).any()])
        during = during[during > 0]
        if during.size and float(np.median(during)) > TARGET_EARLY_RATIO:
            value = float(np.median(during))
            what = f"update ratios of {value:.2g} while it swings, 10× the usual ~1e-3"
            remedy = step_size(ctx, value, symptom.onset, what)
            return Cause("large_updates", None, int(r.steps[0]), what), remedy
        return None
    if symptom.kind in ("diverging", "loss_spike") and finite.size:
        peak = float(finite.max())
        typical = float(np.median(medians)) if medians.size else peak
        if max(peak, typical) > TARGET_EARLY_RATIO:
            value = max(peak, typical)
            what = f"update ratios of up to {value:.2g}, 10× the usual ~1e-3"
            remedy = step_size(ctx, value, symptom.onset, what)
            return Cause("large_updates", None, int(r.steps[0]), what), remedy
    if symptom.kind in ("not_learning", "stalled") and medians.size:
        typical = float(np.median(medians))
        if typical < 1e-4:
            what = f"weights moving by only {typical:.2g} of their norm per step (~1e-3 is usual)"
            return Cause("small_updates", None, int(r.steps[0]), what), raise_lr(ctx, typical)
    return None


#: a loss that fell far beyond its noise, little against its level, with healthy layers
_OFFSET = Remedy(
    "nothing in the layers keeps this loss from falling, and it fell far beyond its noise: "
    "if the loss has a constant term (an offset, a regulariser's floor, a fixed penalty), "
    "this is progress and there is nothing to change; if its floor is near 0, it learns "
    "too slowly — train longer or raise the learning rate 3×"
)

_ALONE = {
    "not_learning": Remedy(
        "no cause was seen in the layers: check that the learning rate is not far off (try "
        "3× up and down), that the targets match the inputs (a shuffled-label run learns as "
        "little), and that the loss is the one meant"
    ),
    "stalled": Remedy(
        "no cause was seen in the layers: lower the learning rate at the plateau (a decay "
        "schedule), or give the model more capacity",
        None,
        "sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.3, patience=50)",
    ),
    "diverging": Remedy(
        "lower the learning rate and clip the gradient norm",
        None,
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)",
    ),
    "oscillating": Remedy(
        "the optimiser jumps across the valley: lower the learning rate (3–10×) or use "
        "momentum with a smaller step"
    ),
    "loss_spike": Remedy(
        "clip the gradient norm and look at the batches of the spike steps (a bad batch "
        "spikes the loss once)",
        None,
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)",
    ),
}


def _during_training(ctx: Context, f: Finding) -> Finding:
    """A depth-profile or through-time problem that began after the first logged step, with
    an init remedy: the step size instead (with the update ratio that came before it)."""
    if f.kind not in ("vanishing", "exploding", "non_finite"):
        return f
    if f.time_step is not None and f.kind == "exploding":  # through time: clipping's, not init's
        return f
    if f.layer is None or (f.kind == "non_finite" and f.severity == "info"):
        return f
    if not ctx.steps or f.onset is None or f.onset <= ctx.steps[0]:
        return f
    peak = peak_before(ctx, f.onset)
    # a forward NaN/Inf with the generic remedy (a log or sqrt of ≤ 0 ...: it has no code)
    # after update ratios over the large-updates line: weights and inputs that grew past
    # float32's range (a Linear has no log to take), so the step size, as for an init
    # remedy (Adam's usual first steps, 0.02-0.05, leave a log of a negative value its own)
    grown = (
        f.kind == "non_finite"
        and f.evidence.get("phase") == "forward"
        and not f.remedy.code
        and peak is not None
        and peak > ctx.t.early_update_ratio
    )
    if not _reinitialises(f.remedy) and not grown:
        return f
    what = (
        f"NaN/Inf that appeared during training (step {f.onset}), not at init"
        if f.kind == "non_finite"
        else f"{f.kind} gradients that appeared during training (step {f.onset}), not at init"
    )
    if peak is not None and peak > TARGET_EARLY_RATIO:
        said = f"{what}, after update ratios of up to {peak:.2g}"
        remedy = step_size(ctx, first_ratio(ctx) or peak, f.onset, said)
    else:
        remedy = Remedy(
            f"{what}: re-initialising would not keep it from coming back; lower the "
            f"learning rate or warm it up, and add normalisation",
        )
    return dataclasses.replace(
        f, remedy=remedy, evidence={**f.evidence, "appeared": "during training"}
    )


#: what a re-initialising remedy's code says: gradprobe's schemes, a Hugging Face model's own
#: ``_init_weights``, torch's ``reset_parameters``
_REINIT = ("gp.init.", "_init_weights", "reset_parameters")


def _reinitialises(remedy: Remedy) -> bool:
    """Whether ``remedy`` re-initialises the weights (a scheme, or code that does)."""
    code = remedy.code or ""
    return bool(remedy.scheme) or any(r in code for r in _REINIT)


def _vanished(findings: list[Finding]) -> list[Finding]:
    """Weights that barely move while the depth profile shows the gradient vanishing from
    before they were seen still: too small a gradient, not too small a learning rate (SGD
    moves a weight by lr·g; a larger lr would not fix a gradient 1e-12 of its size). Their
    remedy is the vanishing's."""
    vanishing = [
        f
        for f in findings
        if f.kind == "vanishing"
        and f.severity != "info"
        and f.layer is not None
        and f.time_step is None
        and f.evidence.get("appeared") != "during training"
    ]
    if not vanishing:
        return findings
    first = min(vanishing, key=lambda f: f.onset or 0)
    return _inherit(
        findings,
        first,
        lambda f: (
            f.kind == "small_updates"
            and f.evidence.get("updated") != "never"
            and (first.onset or 0) <= (f.onset or 0)
        ),
        f"the gradient vanishes ({_summary(first)}): these weights get too small a gradient "
        "to move, whatever the learning rate",
        "vanishing_at",
    )


def _never_zeroed(findings: list[Finding]) -> list[Finding]:
    """Gradients never zeroed (``rules/grad_norm.KEPT``): every later problem of the step
    size — large updates, units that died or saturated, gradients that grew — is that
    growing sum's, and takes its remedy (zero the gradients), not a lower learning rate."""
    kept = next((f for f in findings if f.evidence.get("measured_on") == KEPT), None)
    if kept is None:
        return findings
    return _inherit(
        findings,
        kept,
        lambda f: (
            f is not kept
            and f.kind not in SYMPTOMS
            and f.kind in ("large_updates", "dead_units", "saturated", "exploding", "overflow")
            and (f.onset or 0) >= (kept.onset or 0)
        ),
        "the gradients are never zeroed: every step applies the sum of all the gradients so far",
        "grads_not_zeroed_at",
    )


def _inherit(findings: list[Finding], cause: Finding, applies, because: str, key: str):
    """The findings ``applies`` picks get ``cause``'s remedy, ``because`` after their message
    and ``evidence[key]`` = the cause's layer (a consequence told to fix its cause)."""
    return [
        dataclasses.replace(
            f,
            remedy=cause.remedy,
            message=f"{f.message}; {because}",
            evidence={**f.evidence, key: cause.layer},
        )
        if applies(f)
        else f
        for f in findings
    ]


def _precision(findings: list[Finding]) -> list[Finding]:
    over = [f for f in findings if f.kind == "overflow"]
    if not over:
        return findings
    first = min(over, key=lambda f: f.onset or 0)
    return _inherit(
        findings,
        first,
        lambda f: (
            f.kind == "non_finite"
            and f.severity == "error"
            and f.evidence.get("phase") in ("forward", "backward")
            and (f.step or 0) >= (first.onset or 0)
        ),
        f"it follows {_summary(first)}: an overflow of {first.evidence.get('dtype')}'s "
        "range, not a log/sqrt/division",
        "overflow_at",
    )
