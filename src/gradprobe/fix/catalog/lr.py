"""Another learning rate: ×0.1 and ×0.3 when training is unstable, ×3 (and ×10 when the
loss does not move at all) when it is slow; and when the weights barely move, the factors
that bring the update ratio into its usual range.

A step too large for the curvature overshoots (the loss oscillates, diverges, or units die
after a big update); one too small crawls (Bengio 2012, "Practical recommendations"; the lr
is the first hyper-parameter to tune). A per-step update ‖Δw‖/‖w‖ of 10⁻³ to 10⁻² is the
usual healthy range (Karpathy's rule of thumb, cs231n): when the baseline's median ratio r
is below 10⁻⁴, the factors 10⁻³/r and 10⁻²/r (one significant digit, at most ×1000) are
tried as well, since ×10 cannot close a gap of 100. Every group's lr is scaled, rounded to 3
significant digits.
"""

from __future__ import annotations

from . import REMEDIES, Remedy

_UNSTABLE = ("diverging", "large_updates", "loss_spike", "non_finite", "oscillating")
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
        factors = [3.0, 10.0] if "not_learning" in slow else [3.0]
        r = s.update_ratio
        if r is not None and 0 < r < 1e-4:
            for target in (1e-3, 1e-2):
                f = float(f"{min(target / r, 1000.0):.1g}")
                if f > max(factors):
                    factors.append(f)
        return [self.change(f"lr × {f:g} ({lr * f:.3g})", slow, factor=f) for f in factors]

    def optimizer(self, spec, change):
        return spec.scaled(change.opts["factor"])


REMEDIES.register(LearningRate.name, LearningRate())
