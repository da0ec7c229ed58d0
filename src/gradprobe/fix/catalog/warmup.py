"""Learning-rate warm-up: the lr rises linearly from lr/W to lr over the first W steps
(W = a tenth of the trial's steps; Goyal et al. 2017).

The first updates of an untrained network are the largest relative to its weights; Adam's
second-moment estimate is still poor then (Liu et al. 2020), and a Post-LN transformer needs
warm-up to train at all (Xiong et al. 2020).
"""

from __future__ import annotations

from . import REMEDIES, Remedy


class Warmup(Remedy):
    name = "warmup"
    target = "loop"
    order = 90
    answers = ("diverging", "large_updates", "loss_spike", "non_finite", "oscillating")
    summary = "linear learning-rate warm-up over the first tenth of the steps"

    def fits(self, s):
        reason = s.present(self.answers)
        if not reason:
            return []
        steps = max(1, s.steps // 10)
        return [self.change(f"warm-up {steps} steps", reason, steps=steps)]

    def loop(self, change):
        return {"warmup": change.opts["steps"]}

    def code(self, change, env):
        w = change.opts["steps"]
        return (
            "scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: "
            f"min(1.0, (step + 1) / {w}))  # scheduler.step() after each optimizer.step()"
        )


REMEDIES.register(Warmup.name, Warmup())
