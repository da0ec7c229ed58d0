"""SGD → Adam (Kingma & Ba 2015), lr 1e-3.

Adam divides each parameter's step by the running rms of its gradient, so a layer whose
gradient vanished still moves and one whose gradient is large does not overshoot: the
remedy for a plain-SGD run that is slow, stuck, or unstable because its gradients are badly
scaled across layers.
"""

from __future__ import annotations

import torch

from ..options import OptimizerSpec
from . import REMEDIES, Remedy

_ANSWERS = (
    "dead_units",
    "diverging",
    "exploding",
    "non_finite",
    "not_learning",
    "oscillating",
    "saturated",
    "slow_convergence",
    "small_updates",
    "vanishing",
)


class SwitchToAdam(Remedy):
    name = "adam"
    target = "optimizer"
    order = 60
    answers = _ANSWERS
    summary = "replace SGD by Adam with lr 1e-3"

    def fits(self, s):
        if s.optimizer.cls is not torch.optim.SGD:
            return []
        reason = s.present(_ANSWERS)
        return [self.change("SGD → Adam (lr 1e-3)", reason)] if reason else []

    def optimizer(self, spec, change):
        return OptimizerSpec(torch.optim.Adam, (("lr", 1e-3),))


REMEDIES.register(SwitchToAdam.name, SwitchToAdam())
