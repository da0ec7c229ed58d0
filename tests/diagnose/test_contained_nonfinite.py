"""A forward -inf that reaches neither the loss nor a gradient (an action or class mask on the
logits) is information, not an error: the loss and the gradients stayed finite. Before, a
healthy classifier whose two impossible classes get -inf logits read "error: (model) turned
finite inputs into NaN/Inf" at step 0."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp

from ._training import digits


class MaskedLogits(nn.Module):
    """10 digit classes plus 2 that can never be chosen: their logits are -inf."""

    def __init__(self, nan: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 12))
        self.fill = float("nan") if nan else float("-inf")

    def forward(self, x):
        out = self.net(x)
        return torch.cat([out[:, :10], torch.full_like(out[:, 10:], self.fill)], 1)


def _train(model: nn.Module, steps: int = 30):
    x_all, y_all = digits()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(steps):
            i = torch.randint(0, len(x_all), (32,), generator=gen)
            loss = F.cross_entropy(model(x_all[i]), y_all[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss=loss)
    return gp.diagnose(probe.run)


def test_masked_logits_that_never_reach_the_loss_are_info_regression():
    torch.manual_seed(0)
    found = [f for f in _train(MaskedLogits()) if f.kind == "non_finite"]
    assert found and all(f.severity == "info" for f in found), [str(f) for f in found]
    assert found[0].evidence["reached_loss"] is False and "did not reach" in found[0].message


def test_a_nan_that_reaches_the_loss_stays_an_error():
    torch.manual_seed(0)
    found = [f for f in _train(MaskedLogits(nan=True)) if f.kind == "non_finite"]
    assert any(f.severity == "error" for f in found), [str(f) for f in found]
    assert not any(f.evidence.get("reached_loss") is False for f in found)
