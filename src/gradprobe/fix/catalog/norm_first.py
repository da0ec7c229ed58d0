"""Pre-LN: ``norm_first=True`` for torch Transformer layers (Xiong et al. 2020).

A Post-LN transformer's gradient at init grows towards the output layers, so its first
updates are too large unless the learning rate warms up; with the LayerNorm before each
sublayer the residual stream carries the gradient unchanged and training is stable without
warm-up. Offered when a torch Transformer layer is Post-LN and the baseline shows a problem.
"""

from __future__ import annotations

from ..edit import _TRANSFORMER_LAYERS, set_norm_first
from . import REMEDIES, Remedy


class NormFirst(Remedy):
    name = "norm_first"
    target = "model"
    order = 45
    answers = (
        "diverging",
        "exploding",
        "large_updates",
        "non_finite",
        "not_learning",
        "oscillating",
        "slow_convergence",
        "vanishing",
    )
    summary = "Pre-LN (norm_first=True) for torch Transformer layers"

    def fits(self, s):
        post = [m for m in s.model.modules() if isinstance(m, _TRANSFORMER_LAYERS)]
        post = [m for m in post if not m.norm_first]
        reason = s.present(self.answers)
        return [self.change("Pre-LN (norm_first=True)", reason)] if post and reason else []

    def apply(self, model, change, env):
        return set_norm_first(model)

    def code(self, change, env):
        return "gp.fix.set_norm_first(model)"


REMEDIES.register(NormFirst.name, NormFirst())
