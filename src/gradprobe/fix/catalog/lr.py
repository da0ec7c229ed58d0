"""Another learning rate: ×0.1 and ×0.3 when training is unstable, ×3 (and ×10 when the
loss does not move at all) when it is slow.

A step too large for the curvature overshoots (the loss oscillates, diverges, or units die
after a big update); one too small crawls (Bengio 2012, "Practical recommendations"; the lr
is the first hyper-parameter to tune). Every group's lr is scaled, rounded to 3 digits.
"""

from __future__ import annotations

from . import REMEDIES, Remedy

_UNSTABLE = ("diverging", "large_updates", "non_finite", "oscillating")
_DURING = ("dead_units", "exploding", "saturated")  # when they appear during training
_SLOW = ("not_learning", "slow_convergence", "small_updates")


class LearningRate(Remedy):
    name = "lr"
    target = "optimizer"
    order = 70
    answers = tuple(sorted({*_UNSTABLE, *_DURING, *_SLOW}))
    summary = "scale the learning rate: ×0.1, ×0.3 when unstable; ×3 (×10) when slow"

    def fits(self, s):
        if s.optimizer.lr is None:
            return []
        lr = s.optimizer.lr
        unstable = tuple(sorted({*s.present(_UNSTABLE), *s.during(_DURING)}))
        if unstable:
            return [
                self.change(f"lr × {f:g} ({lr * f:.3g})", unstable, factor=f) for f in (0.1, 0.3)
            ]
        slow = s.present(_SLOW)
        if not slow:
            return []
        factors = (3.0, 10.0) if "not_learning" in slow else (3.0,)
        return [self.change(f"lr × {f:g} ({lr * f:.3g})", slow, factor=f) for f in factors]

    def optimizer(self, spec, change):
        return spec.scaled(change.opts["factor"])


REMEDIES.register(LearningRate.name, LearningRate())
