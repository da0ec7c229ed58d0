"""LSTM forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015).

PyTorch initialises every LSTM bias to U(±1/√h), so the forget gate starts near 0.5 and the
memory halves at every time step: gradients through time vanish before the network can learn
to keep anything. A forget bias of 1 starts the gate near 0.73.
"""

from __future__ import annotations

from torch import nn

from ..edit import set_forget_bias
from . import REMEDIES, Remedy


class ForgetBias(Remedy):
    name = "forget_bias"
    target = "model"
    order = 40
    answers = ("not_learning", "slow_convergence", "vanishing")
    summary = "set each LSTM's forget-gate bias to 1"

    def fits(self, s):
        lstms = [m for m in s.model.modules() if isinstance(m, (nn.LSTM, nn.LSTMCell)) and m.bias]
        reason = s.present(self.answers)
        return [self.change("LSTM forget bias 1", reason, value=1.0)] if lstms and reason else []

    def apply(self, model, change, env):
        return set_forget_bias(model, change.opts["value"])

    def code(self, change, env):
        return f"gp.fix.set_forget_bias(model, {change.opts['value']!r})"


REMEDIES.register(ForgetBias.name, ForgetBias())
