"""Gradient clipping by the global norm (Pascanu, Mikolov & Bengio 2013), with the max-norm
taken from the baseline's recorded norms.

The threshold is the 10th percentile of the global gradient norms the baseline recorded
before any went non-finite (AutoClip, Seetharaman et al. 2020: a low percentile of the norm
history cuts the spikes and keeps ordinary steps nearly as they were).
"""

from __future__ import annotations

import math

import numpy as np

from . import REMEDIES, Remedy


def max_norm_from(norms: list[float]) -> float:
    """AutoClip's threshold: the 10th percentile of the finite, positive recorded norms
    before the first non-finite one (3 significant digits); 1.0 without any."""
    finite = []
    for value in norms:
        if not math.isfinite(value):
            break
        if value > 0:
            finite.append(value)
    if not finite:
        return 1.0
    return float(f"{float(np.percentile(finite, 10)):.3g}")


class Clip(Remedy):
    name = "clip"
    target = "loop"
    order = 80
    answers = (
        "diverging", "exploding", "large_updates", "loss_spike", "non_finite", "oscillating",
    )  # fmt: skip
    summary = "clip the global gradient norm at the 10th percentile of the recorded norms"

    def fits(self, s):
        reason = s.present(self.answers)
        if not reason:
            return []
        max_norm = max_norm_from(s.grad_norms)
        return [self.change(f"clip grad norm at {max_norm:g}", reason, max_norm=max_norm)]

    def loop(self, change):
        return {"max_norm": change.opts["max_norm"]}

    def code(self, change, env):
        return (
            f"max_norm = {change.opts['max_norm']!r}  # in your loop, before optimizer.step(): "
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)"
        )


REMEDIES.register(Clip.name, Clip())

__all__ = ["Clip", "max_norm_from"]
