"""Symptoms in the loss curve: ``not_learning``, ``stalled``, ``diverging`` (a NaN/Inf loss
included), ``oscillating``, ``loss_spike`` — each with its step range (``onset`` … ``end``).

Read on the loss the probe stores on every step (``probe.step(loss=loss)``), smoothed by a
centred rolling median over ``w`` = a tenth of the run (5 to 50 steps). ``start`` is the
median of the first three losses (the first alone when that median is 1.5× it: the first
updates blew the loss up), ``best`` the lowest smoothed value, ``final`` the median of
the last ``w``; ``noise`` σ̂ = 1.4826·MAD of the losses around the smoothed curve.

- ``diverging`` (error): the loss became NaN/Inf; or ``final − best`` exceeds
  ``diverge_rise`` × max(start − best, |best| / 4) and 3σ̂ (σ̂ of the last third too: a
  loss that only scatters more is oscillating, not rising; it rose back half-way to where
  it began, or by an eighth above its best when it had not fallen, and stayed there); or
  a positive loss's last ``w`` steps sit above each of its first three losses by
  ``diverge_rise`` of the start, beyond
  3σ̂/√w of their scatter (worse than the untrained model, however much it swings).
  Onset: where the rise began.
- ``loss_spike`` (warning) with ``evidence["recovered"]``: NaN/Inf losses the run came back
  from (finite again after each, at most a tenth of the steps): their updates were skipped
  (a GradScaler, the guard, the loop's own check); the curve is judged without them.
- ``not_learning`` (warning): the smoothed loss never fell ``not_learning_drop`` (10 %)
  below the start. ``evidence["beyond_noise"]``: it fell more than ``not_learning_noise``
  (3) step-to-step sigmas all the same — ambiguous from the loss alone (a classifier stuck
  near chance, or a loss whose floor is far from 0: cross-entropy + 100 that learns falls 2 %
  of its start, 37σ̂); :func:`gradprobe.diagnose.link.link` makes it info when no cause in
  the layers preceded it. A loss below 0 (no share): it never fell more than 3σ̂.
- ``stalled`` (warning; info when no cause in the layers preceded it: healthy runs sit on
  plateaus too): it fell, then stayed within noise of its best (3σ̂/√w, or 2 %) for
  at least ``stall_fraction`` of the run while still above ``stall_level`` (½) of the start:
  stopped improving, not converged.
- ``oscillating`` (warning): over the second half, the losses scatter around the smoothed
  curve (robust σ̂) by more than ``oscillation_amplitude`` (15 %) of the start: the
  optimiser jumps across the valley instead of descending it. Minibatch noise stays at
  2–6 % of the start on healthy runs with batches of 16–32 (docs/DIAGNOSIS.md), though it
  can be 40 % of a low late loss — hence the start, not the level, as the scale.
- ``loss_spike`` (warning): a loss above the median of the ``w`` losses before it by more
  than ``spike_mads`` robust sigmas and ``spike_rise`` of that median, that comes back down
  within ``w`` steps (one that does not is a rise, judged as diverging). A positive loss's
  spikes that all rise by at most ``spike_start_share`` (10 %) of the start are info: a
  converged loss of 0.004 that reads 0.04 on one batch (5.6 % of its start 0.68; two
  healthy gp.fix references on ``make_circles``) is an excursion, not an instability. On 30 healthy
  runs (5,500 steps) no step was a spike at 8 or 10 robust sigmas (1.1 per 1,000 steps at
  6, 2.7 at 4); the largest healthy excursion was 7.5 σ̂, so the default is 10
  (docs/DIAGNOSIS.md).

Losses below zero (a log-likelihood, an ELBO) have no scale to judge shares of: the NaN/Inf,
diverging and spike tests apply to them, and ``not_learning`` against their noise. Fewer
than ``min_loss_steps`` finite losses: only NaN/Inf is judged.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..context import Context
from ..finding import Finding, Remedy
from ..series import (
    Series,
    centred_median,
    examples_per_step,
    loss_series,
    noise,
    robust_sigma,
    trailing,
    window,
    without_guard_skips,
)
from ..thresholds import Thresholds
from . import RULES

LOSS = "(loss)"
#: the median of the first three losses this many times the first: the first updates blew
#: the loss up, and the start the curve is judged against is the first loss alone
BLOWN_UP = 1.5
_LINKED = Remedy("see the causes listed: none was found in the layers before it")


@RULES.register("loss")
def loss(ctx: Context) -> list[Finding]:
    s = without_guard_skips(loss_series(ctx.run), ctx.run)
    found = judge(s, ctx.t, examples_per_step(ctx.run))
    others = ctx.run.meta.get("trained_with")
    return [_one_side(f, others) for f in found] if others else found


def _one_side(f: Finding, others: list) -> Finding:
    """The loss of a model trained interleaved with another (``meta["trained_with"]``, the
    probe: a GAN's generator and discriminator) is one side of a game: it need not fall, and
    rises when the other side gets better. Its level, scatter and rises are information; a
    NaN/Inf is still a NaN/Inf."""
    if f.evidence.get("non_finite"):
        return f
    said = (
        f"; this model trained interleaved with {', '.join(others)} (each was mid-step at the "
        f"other's step ends): its loss is one side of a game, whose level need not fall"
    )
    return dataclasses.replace(
        f, severity="info", message=f.message + said, evidence={**f.evidence, "game": others}
    )


def judge(
    s: Series | None, t: Thresholds | None = None, examples: int | None = None
) -> list[Finding]:
    """The loss symptoms of the curve ``s`` (steps and values, NaN/Inf kept) under the
    thresholds ``t`` (default ``Thresholds()``): what :func:`loss` reports for a run, for a
    bare list of losses (``Series(np.arange(n), np.asarray(losses))``). ``examples``: the
    batch size, when known (a small batch's loss scatters by itself). Their remedies say
    "see the causes"; :func:`gradprobe.diagnose.link.link` fills them in from a run."""
    t = Thresholds() if t is None else t
    if s is None or len(s) < 2:  # one step (a check) is no curve: non_finite judges its loss
        return []
    out: list[Finding] = []
    skipped = _recovered(s)
    if skipped.size:  # NaN/Inf losses the run came back from: a symptom, not the curve's end
        out.append(_recovered_finding(s, skipped))
        keep = np.ones(len(s), dtype=bool)
        keep[skipped] = False
        s = Series(s.steps[keep], s.values[keep])
    finite = s.finite_prefix()
    curve = _Curve(finite, t, examples) if len(finite) >= t.min_loss_steps else None
    if s.first_nonfinite is not None:
        out.append(_nonfinite(s, curve))
    if curve is None:
        return out
    if s.first_nonfinite is not None:  # the NaN/Inf is the symptom; its prefix has spikes
        return out + curve.spikes()
    rise = curve.diverging()
    if rise is not None:
        out.append(rise)
    elif curve.positive:
        swings = curve.oscillating()  # a loss that swings has no plateau of its own
        out += swings + [f for f in curve.progress() if not (swings and f.kind == "stalled")]
    else:  # no scale for shares (a log-likelihood below 0): a fall beyond the noise, or not
        out += curve.progress()
    out += curve.spikes()
    return out


class _Curve:
    def __init__(self, s: Series, t: Thresholds, examples: int | None = None) -> None:
        self.t, self.steps, self.x = t, s.steps, s.values
        self.examples = examples
        n = self.x.size
        self.w = window(n)
        self.m = centred_median(self.x, self.w)
        self.start = float(np.median(self.x[: min(3, n)]))
        if self.x[0] > 0 and self.start > BLOWN_UP * self.x[0]:
            # the first updates made the loss far worse (a too-large first step): where the
            # model started is the loss before them, not the blown-up ones after
            self.start = float(self.x[0])
        self.final = float(np.median(self.x[-self.w :]))
        # the best level where the centred median has its whole window: at the last w/2
        # steps it reads fewer values, and the minimum of a noisier median dips by chance
        h = self.w // 2 if n > 2 * self.w else 0
        self.best_i = int(np.argmin(self.m[: n - h]))
        self.best = float(self.m[self.best_i])
        self.noise = noise(self.x, self.w)
        tail = max(2 * self.w, n // 3)
        self.tail_noise = robust_sigma((self.x - self.m)[-tail:])  # scatter near the end
        self.positive = bool(self.x.min() >= 0 and self.start > 0)

    def evidence(self, **more) -> dict:
        return {
            "start_loss": self.start,
            "best_loss": self.best,
            "best_step": int(self.steps[self.best_i]),
            "final_loss": self.final,
            "steps_judged": int(self.x.size),
            "window": self.w,
            "noise": self.noise,
            **more,
        }

    def finding(self, kind, severity, i0, i1, message, **evidence) -> Finding:
        return Finding(
            kind=kind,
            layer=LOSS,
            severity=severity,
            step=int(self.steps[i0]),
            onset=int(self.steps[i0]),
            end=int(self.steps[i1]),
            evidence=self.evidence(**evidence),
            remedy=_LINKED,
            message=message,
        )

    def rise_start(self) -> int:
        """Index where the smoothed loss last sat near its best before rising half-way:
        within its noise (3σ̂, at least 5 % of the best), and at most a tenth of the rise."""
        rise = self.final - self.best
        after = self.m[self.best_i :]
        high = np.nonzero(after > self.best + 0.5 * rise)[0]
        j = self.best_i + (int(high[0]) if high.size else after.size - 1)
        near = min(max(3 * self.noise, 0.05 * abs(self.best)), 0.1 * rise)
        low = np.nonzero(self.m[self.best_i : j + 1] <= self.best + near)[0]
        return self.best_i + (int(low[-1]) if low.size else 0)

    def above_start(self) -> Finding | None:
        """A positive loss whose last ``w`` steps sit above each of its first three by more
        than ``diverge_rise`` of the start, beyond the uncertainty of their median (3σ̂/√w of
        the last third's scatter): worse than the untrained model, however it swings (a
        jump in the first steps leaves no smoothed best before it to rise from)."""
        # above each of the first three losses, not their median: a curve that swings
        # between two levels from its first step (0.2, 1, 0.2, ...) is as high at its end
        # as it was at its start
        ref = float(self.x[: min(3, self.x.size)].max())
        up = self.final - ref
        if not self.positive or up <= self.t.diverge_rise * self.start:
            return None
        if up <= 3 * self.tail_noise / np.sqrt(self.w):
            return None
        high = np.nonzero(self.m > ref + 0.5 * up)[0]
        j = int(high[0]) if high.size else 0
        low = np.nonzero(self.m[: j + 1] <= ref)[0]
        i = int(low[-1]) if low.size else 0
        return self.finding(
            "diverging",
            "error",
            i,
            self.x.size - 1,
            f"the loss ended at {self.final:.4g}, {self.final / self.start:.3g}× where it "
            f"started ({self.start:.4g}), from about step {int(self.steps[i])}: worse than "
            f"the untrained model",
            rise=up,
            above_start=True,
            threshold=self.t.diverge_rise,
        )

    def diverging(self) -> Finding | None:
        rise = self.final - self.best
        scale = max(self.start - self.best, 0.25 * abs(self.best))
        if rise <= self.t.diverge_rise * scale or rise <= 3 * max(self.noise, self.tail_noise):
            return self.above_start()
        i = self.rise_start()
        return self.finding(
            "diverging",
            "error",
            i,
            self.x.size - 1,
            f"the loss rose from {self.best:.4g} (step {int(self.steps[self.best_i])}) to "
            f"{self.final:.4g} by the end, from about step {int(self.steps[i])} (it had "
            f"started at {self.start:.4g})",
            rise=rise,
            threshold=self.t.diverge_rise,
        )

    def progress(self) -> list[Finding]:
        t, n = self.t, self.x.size
        fall = self.start - self.best
        # the fall in step-to-step sigmas: movement whatever the loss's level or offset (a
        # floor of 1e-6 of the start: a full-batch loss has no noise to speak of)
        sigma = max(self.noise, 1e-6 * abs(self.start))
        moved = fall > t.not_learning_noise * sigma
        drop = fall / self.start if self.positive else None
        if drop is not None and drop >= t.not_learning_drop:
            return self.stalled(drop)  # a tenth of a positive loss's start: it learns
        if drop is None and moved:  # a loss below 0 has no share: the fall in its noise
            return []
        said = (
            f"{self.start:.4g} → best {self.best:.4g}, "
            + ("never below its start" if fall <= 0 else f"a fall of {fall:.3g}")
            + (f", {drop:.1%} lower" if drop is not None and fall > 0 else "")
        )
        if not moved:
            message = (
                f"the loss has not fallen beyond its own noise over {n} steps ({said}, "
                f"against a step-to-step noise of {self.noise:.3g})"
            )
        else:
            # fell far beyond its noise, but little against its level: no learning if the
            # loss's floor is near 0 (a classifier stuck near chance), progress if it has a
            # constant term (an offset, a regulariser's floor); the layers decide (link)
            message = (
                f"the loss has not fallen {t.not_learning_drop:.0%} below its start over {n} "
                f"steps ({said}), though its fall is {fall / sigma:.3g}× its step-to-step "
                f"noise: no progress if its floor is near 0, progress if the loss has a "
                f"constant term (an offset) that keeps it far from 0"
            )
        return [
            self.finding(
                "not_learning",
                "warning",
                0,
                n - 1,
                message,
                drop=drop,
                fall=fall,
                fall_in_noise=fall / sigma,
                beyond_noise=bool(moved),
                threshold=t.not_learning_drop,
                threshold_noise=t.not_learning_noise,
            )
        ]

    def stalled(self, drop: float) -> list[Finding]:
        t, n = self.t, self.x.size
        tol = max(3 * self.noise / np.sqrt(self.w), 0.02 * abs(self.best))
        i = int(np.nonzero(self.m <= self.best + tol)[0][0])
        flat = n - i
        if self.best < t.stall_level * self.start or flat < max(2 * self.w, t.stall_fraction * n):
            return []
        return [
            self.finding(
                "stalled",
                "warning",
                i,
                n - 1,
                f"the loss stopped improving at step ~{int(self.steps[i])}: it stayed within "
                f"{tol:.2g} of {self.best:.4g} for the last {flat} steps, "
                f"{self.best / self.start:.0%} of where it started ({self.start:.4g})",
                drop=drop,
                plateau_steps=int(flat),
                stall_level=t.stall_level,
            )
        ]

    def oscillating(self) -> list[Finding]:
        n, half = self.x.size, self.x.size // 2
        resid = self.x - self.m
        amp = robust_sigma(resid[half:])
        limit = self.t.oscillation_amplitude * self.start
        level = float(np.median(self.m[half:]))
        fall = float(self.m[half] - self.m[-1])
        # a batch of b examples is a sample: its mean loss scatters around the trend by about
        # σ_example/√b, and per-example cross-entropies spread by up to ~2× their mean
        # (most near 0, a few large), so scatter below 2·level/√b is the batch, not the
        # optimiser jumping across a valley
        sampling = 2 * level / np.sqrt(self.examples) if self.examples else 0.0
        if amp <= limit or amp <= sampling:
            return []
        # onset: the first window whose scatter is over the line
        scatter = np.array([robust_sigma(resid[max(0, j - self.w) : j + 1]) for j in range(n)])
        over = np.nonzero(scatter > limit)[0]
        i = max(0, int(over[0]) - self.w) if over.size else half
        return [
            self.finding(
                "oscillating",
                "warning",
                i,
                n - 1,
                f"the loss jumps by ±{amp:.3g} around its trend over the second half, "
                f"{amp / level:.0%} of its level {level:.3g} ({amp / self.start:.0%} of its "
                f"start {self.start:.4g}); the trend moved by {-fall:+.3g}",
                amplitude=amp,
                level=level,
                fall_second_half=fall,
                threshold=self.t.oscillation_amplitude,
            )
        ]

    def spikes(self) -> list[Finding]:
        t, x, w = self.t, self.x, self.w
        med, sg = trailing(x, w)
        with np.errstate(invalid="ignore"):
            hit = (x - med > t.spike_mads * sg) & (x - med > t.spike_rise * np.abs(med))
        if x.min() > 0:
            # a positive batch loss scatters in proportion to its level (converged at 0.02, a
            # digits MLP's batches range over 0.002-0.9; early on a batch of a class not yet
            # learnt reads 3.4 between 0.6 and 0.05), so a rise that is large against the
            # scatter of the loss but not of log(loss) is that scatter, not a spike
            lx = np.log(x)
            med_l, sg_l = trailing(lx, w)
            with np.errstate(invalid="ignore"):
                hit &= lx - med_l > t.spike_mads * sg_l
        excess = x - med
        idx = np.nonzero(hit)[0]
        episodes: list[tuple[int, int]] = []
        for i in idx:
            if episodes and i - episodes[-1][1] <= 2:
                episodes[-1] = (episodes[-1][0], int(i))
            else:
                episodes.append((int(i), int(i)))
        # with fewer than min_dead_batch examples one hard example makes a one-step spike
        # by itself: such a batch's spike must last two steps
        tiny = self.examples is not None and self.examples < t.min_dead_batch
        kept = []
        for a, b in episodes:
            if tiny and b == a:
                continue
            level = med[a]
            back = x[b + 1 : b + 1 + w]
            if back.size and (back <= level + 0.5 * excess[a]).any():
                kept.append((a, b))
        if not kept:
            return []
        peaks = [a + int(np.argmax(x[a : b + 1])) for a, b in kept]
        ratios = [
            float(x[p] / med[a]) if med[a] > 0 else float("inf")
            for p, (a, _) in zip(peaks, kept, strict=True)
        ]
        top = int(np.argmax(ratios))
        a0, b_last = kept[0][0], kept[-1][1]
        shown = [int(self.steps[p]) for p in peaks]
        # a converged loss's excursion is small against what was learnt: info, not warning
        largest = max(float(x[p] - med[a]) for p, (a, _) in zip(peaks, kept, strict=True))
        small = self.positive and largest <= t.spike_start_share * self.start
        return [
            self.finding(
                "loss_spike",
                "info" if small else "warning",
                a0,
                b_last,
                f"{len(kept)} loss spike(s), the first at step {int(self.steps[a0])}; the largest "
                f"at step {shown[top]} is "
                f"{ratios[top]:.3g}× the median of the {w} steps before it",
                spikes=len(kept),
                spike_steps=shown[:20],
                largest_ratio=ratios[top],
                largest_excess_of_start=largest / self.start if self.start else float("nan"),
                threshold_start_share=t.spike_start_share,
                threshold_mads=t.spike_mads,
                threshold_rise=t.spike_rise,
            )
        ]


#: NaN/Inf losses the run recovered from are skipped steps while they are at most this
#: share of the steps before the run's last NaN/Inf-free stretch (more: an unstable run)
RECOVERED_SHARE = 0.1


def _recovered(s: Series) -> np.ndarray:
    """Indices of the NaN/Inf losses followed by finite ones to the end of the run, or up to
    a NaN/Inf that lasts to the end: the run went on from them, so their updates were not
    applied (a GradScaler skips a step whose gradients overflow, the guard or the loop's own
    check skips a NaN loss; an applied NaN update leaves the weights NaN and the loss NaN for
    good). At most ``RECOVERED_SHARE`` of the steps before the last stretch, and a finite
    loss after the last of them."""
    bad = ~np.isfinite(s.values)
    if not bad.any():
        return np.zeros(0, dtype=int)
    end = len(s)
    while end and bad[end - 1]:  # the NaN/Inf that lasts to the end (if any) is diverging
        end -= 1
    idx = np.nonzero(bad[:end])[0]
    if not idx.size or idx.size > RECOVERED_SHARE * end:
        return np.zeros(0, dtype=int)
    return idx


def _recovered_finding(s: Series, idx: np.ndarray) -> Finding:
    steps = [int(x) for x in s.steps[idx]]
    first, n = steps[0], len(steps)
    after = s.values[idx[-1] + 1 :]
    again = int(s.steps[idx[-1] + 1]) if after.size else None
    which = f"step {first}" if n == 1 else f"{n} steps from step {first} to {steps[-1]}"
    return Finding(
        kind="loss_spike",
        layer=LOSS,
        severity="warning",
        step=first,
        onset=first,
        end=steps[-1],
        evidence={
            "non_finite": True,
            "recovered": True,
            "nonfinite_steps": steps[:20],
            "loss": str(float(s.values[idx[0]])),
            "finite_again_at": again,
        },
        remedy=_LINKED,
        message=(
            f"the loss was NaN/Inf at {which} and finite again after it"
            + (f" (step {again})" if again is not None else "")
            + ": the run went on, so those updates were not applied (a GradScaler or a check "
            "in the loop skipped them); the steps are left out of the loss curve"
        ),
    )


def _nonfinite(s: Series, curve: _Curve | None) -> Finding:
    k = s.first_nonfinite
    assert k is not None
    step, value = int(s.steps[k]), float(s.values[k])
    onset = step
    evidence: dict = {"non_finite": True, "loss": str(value), "steps_judged": int(k)}
    if k:
        evidence["last_finite_loss"] = float(s.values[k - 1])
    said = ""
    x = s.values[:k]
    if curve is None and k >= 2 and x.min() > 0 and x[-1] > 1.5 * x.min():  # a short rise
        i = int(np.argmin(x))
        onset = int(s.steps[i])
        evidence.update(best_loss=float(x[i]), best_step=onset)
        said = f", after rising from {float(x[i]):.4g} from step {onset}"
    if curve is not None and curve.final - curve.best > max(3 * curve.noise, 0.1 * abs(curve.best)):
        i = curve.rise_start()
        onset = int(curve.steps[i])
        evidence.update(best_loss=curve.best, best_step=int(curve.steps[curve.best_i]))
        said = f", after rising from {curve.best:.4g} from about step {onset}"
    return Finding(
        kind="diverging",
        layer=LOSS,
        severity="error",
        step=step,
        onset=onset,
        end=step,
        evidence=evidence,
        remedy=_LINKED,
        message=f"the loss became {value} at step {step}{said}",
    )
