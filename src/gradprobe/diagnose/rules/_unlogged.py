"""The first NaN/Inf of a run that is not logged on every step (watch()'s default,
``first_nonfinite="auto"``): the probe notices it on an unlogged step ``t`` from the loss
and the gradient norms (``run.meta["nonfinite_seen"]``, one episode per NaN/Inf) and names
the module at the next logged step ``s`` — when the weights may already hold step t's NaN
gradient. What that means for the origin, in words (rules/non_finite.py uses it)."""

from __future__ import annotations

import math

import numpy as np

from ...run import Event
from ..context import Context
from ..finding import Finding, Remedy
from ..series import Series, loss_series, model_series

LOCATE = Remedy(
    "the NaN/Inf began on an unlogged step and the optimizer applied it before the probe "
    "could look: record the exact search on every step to name its module (about +10 % per "
    "step), and if the gradient norm grew before it, clip and lower the learning rate",
    None,
    "probe = gp.watch(model, optimizer=opt, first_nonfinite=True)",
)


def episodes(ctx: Context) -> list[dict]:
    return [e for e in ctx.run.meta.get("nonfinite_seen") or [] if isinstance(e, dict)]


def located_at(ctx: Context, event: Event) -> dict | None:
    """The episode first seen on an earlier, unlogged step that ``event`` located."""
    for ep in episodes(ctx):
        t, s = ep.get("step"), ep.get("located_step")
        if isinstance(t, int) and s == event.step and t < event.step:
            return ep
    return None


def seen_words(ep: dict) -> str:
    words = {"output": "model output", "gradient": "gradient", "loss": "loss", "weights": "weights"}
    seen = [w for k, w in words.items() if k in (ep.get("seen_in") or [])]
    return "a non-finite " + " and ".join(seen) if seen else "a non-finite value"


def located_message(ep: dict, event: Event, layer: str, what: str) -> str:
    """cost-default's wording: where it was seen first, where it was located."""
    t, s = ep["step"], event.step
    said = (
        f"first seen at step {t} ({seen_words(ep)}); located at step {s} in {layer} "
        f"({event.phase}): {what}"
    )
    if ep.get("weights_finite") is False:
        said += (
            f"; the weights step {s} used were NaN/Inf already (step {t}'s NaN/Inf went through "
            f"the optimizer), so {layer} is only the first module that uses them: the origin "
            f"is before step {t}'s optimizer step"
        )
    return said


def in_backward(ep: dict) -> dict | None:
    """The episode's ``backward`` bracket (probe/_sentinel.py) when a parameter gradient was
    its first NaN/Inf and neither the loss nor the model's output was: the NaN/Inf was made
    in that step's backward, between the bracket's two modules."""
    b = ep.get("backward")
    seen = ep.get("seen_in") or []
    if not isinstance(b, dict) or not isinstance(b.get("at"), str):
        return None
    if "gradient" not in seen or "loss" in seen or "output" in seen:
        return None
    return b


def between(ctx: Context, at: str, after: str | None) -> list[str]:
    """The modules run after ``at`` and before ``after`` in the forward (after every later
    one when ``after`` is None), not containers of either: those whose backward ran between
    the two parameter gradients (in a chain; by execution order in a graph)."""
    pos = {m.name: m.position for m in ctx.modules}
    if at not in pos or (after is not None and after not in pos):
        return []
    hi = pos[after] if after is not None else math.inf
    ends = [n for n in (at, after) if n is not None]
    return [
        m.name
        for m in sorted(ctx.modules, key=lambda m: m.position)
        if pos[at] < m.position < hi
        and not any(e.startswith(m.name + ".") for e in ends)
        and not m.name.startswith(at + ".")
    ]


def transient_findings(ctx: Context) -> list[Finding]:
    """Episodes never located because the next logged step was finite again."""
    out = []
    for ep in episodes(ctx):
        t, f = ep.get("step"), ep.get("finite_at")
        if ep.get("located_step") is not None or f is None or not isinstance(t, int):
            continue
        params = ep.get("params") or []
        of = f" (gradient of {', '.join(params[:3])}{', …' if len(params) > 3 else ''})"
        out.append(
            Finding(
                kind="non_finite",
                layer=None,
                severity="info",
                step=t,
                evidence={"phase": "unlogged", "transient": True, **ep},
                remedy=Remedy(
                    "nothing to fix if a GradScaler skips such steps; to locate it: "
                    "gp.watch(model, optimizer=opt, first_nonfinite=True)"
                ),
                message=(
                    f"a transient NaN/Inf at step {t}{of if params else ''}, finite again at "
                    f"step {f}; pass first_nonfinite=True to locate it"
                ),
            )
        )
    return out


def finite_at(s: Series | None, step: int) -> bool | None:
    if s is None:
        return None
    i = np.nonzero(s.steps == step)[0]
    return None if not i.size else bool(np.isfinite(s.values[int(i[0])]))


def loss_origin(ctx: Context, remedy: Remedy) -> tuple[int, Finding] | None:
    """Under watch()'s default the first NaN/Inf may fall on an unlogged step ``t``: the
    probe notices it there (``meta["nonfinite_seen"]``) and names a module at the next
    logged step, when the weights have taken step t's NaN gradient already. When the loss
    was NaN/Inf at t after a steady gradient norm (no growth: finite at t − 1 and within
    ``grad_norm_growth`` of the first steps' median), the loss itself is the origin — unless
    the model's output at t was NaN/Inf already (``seen_in`` "output", read by the probe at
    t): then the forward of step t made it, in a module the probe did not watch that step."""
    seen = episodes(ctx)
    loss = loss_series(ctx.run)
    norms = model_series(ctx.run, "grad_norm", "global")
    if not seen or loss is None or norms is None:
        return None
    first = seen[0]
    t = int(first.get("step", -1))
    if "loss" not in (first.get("seen_in") or []) or finite_at(loss, t) is not False:
        return None
    if "output" in (first.get("seen_in") or []):  # the forward made it, not the loss
        return None
    before = norms.before(t)
    if not len(before) or not np.isfinite(before.values[-1]):
        return None
    base = float(np.median(before.values[: min(10, len(before))]))
    if not before.values[-1] <= ctx.t.grad_norm_growth * base:
        return None
    value = float(loss.values[int(np.nonzero(loss.steps == t)[0][0])])
    at = first.get("located_step")
    finding = Finding(
        kind="non_finite",
        layer="(loss)",
        severity="error",
        step=t,
        evidence={"phase": "loss", "loss": str(value), "seen_in": list(first.get("seen_in") or [])},
        remedy=remedy,
        message=(
            f"the loss became {value} at step {t} while the gradient norm before it was steady "
            f"({float(before.values[-1]):.3g} at step {int(before.steps[-1])}, the first steps' "
            f"median {base:.3g}): the loss itself is the origin, not a layer"
            + (f"; the NaN/Inf the probe located at step {at} is its consequence" if at else "")
        ),
    )
    return t, finding


def skipped_step(event: Event, what: str) -> Finding:
    """A backward NaN/Inf on a step the run skipped (series.skipped_steps): information."""
    return Finding(
        kind="non_finite",
        layer=event.layer,
        severity="info",
        step=event.step,
        evidence={"phase": event.phase, "detail": event.detail, "transient": True},
        remedy=Remedy(
            "nothing to fix if a GradScaler is in use (it skips such a step and lowers its "
            "scale); otherwise skip non-finite steps (gp.watch(..., guard=True))"
        ),
        message=(
            f"step {event.step}: {what}; transient: the loss was finite and training went on "
            f"finite after it (a skipped step)"
        ),
    )
