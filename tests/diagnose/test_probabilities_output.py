"""Regression: a classifier ending in ``nn.Softmax`` trained with ``F.cross_entropy`` (which
applies log_softmax itself) stalled at 1.51 on the digits — the least cross-entropy gives on
probabilities over 10 classes is log(1 + 9/e) = 1.46 — and was told "stalled, no cause was
seen in the layers: lower the learning rate". Now the output's probabilities are named, with
the remedy to give the loss logits (rules/probabilities.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import gradprobe as gp
from gradprobe.diagnose.rules.probabilities import floor


@pytest.mark.parametrize("k", [2, 3, 10, 1000])
def test_the_floor_is_the_least_cross_entropy_on_probabilities(k):
    """Against torch: F.cross_entropy of a one-hot probability vector, and of many random
    probability vectors (never below it)."""
    onehot = torch.zeros(1, k, dtype=torch.float64)
    onehot[0, 0] = 1
    at = F.cross_entropy(onehot, torch.tensor([0])).item()
    assert at == pytest.approx(floor(k), rel=1e-12)
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(4096, k, generator=g, dtype=torch.float64) * 5, dim=-1)
    y = torch.randint(0, k, (4096,), generator=g)
    assert F.cross_entropy(p, y, reduction="none").min().item() >= floor(k) - 1e-12
    assert floor(k) == pytest.approx(math.log(1 + (k - 1) / math.e))


def _digits_run(end: str, seed: int, steps: int = 300):
    torch.manual_seed(seed)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    layers = [nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)]
    if end in ("softmax", "log_nll"):
        layers.append(nn.Softmax(dim=-1))
    model = nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    probe = gp.watch(model, optimizer=opt)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        out = model(x[i])
        if end == "log_nll":  # the right use of probabilities
            loss = F.nll_loss(torch.log(out + 1e-12), y[i])
        else:
            loss = F.cross_entropy(out, y[i])
        loss.backward()
        opt.step()
        probe.step(loss=loss)
    probe.close()
    return gp.diagnose(probe.run)


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_before_cross_entropy_is_named_as_the_cause(seed):
    found = _digits_run("softmax", seed)
    cause = [f for f in found if f.kind == "saturated" and "loss_floor" in f.evidence]
    assert [(f.layer, f.severity, f.onset) for f in cause] == [("5", "warning", 0)]
    assert cause[0].evidence["classes"] == 10
    stalled = [f for f in found if f.kind in ("stalled", "not_learning")]
    assert stalled and stalled[0].severity == "warning"
    assert "remove the final Softmax" in stalled[0].remedy.text


@pytest.mark.parametrize("end", ["log_nll", "logits"])
def test_probabilities_used_right_or_logits_are_no_finding(end):
    found = _digits_run(end, 0)
    assert not [f for f in found if "loss_floor" in f.evidence]
    assert not [f for f in found if f.severity in ("warning", "error")], found


class _SoftmaxForward(nn.Module):
    """A softmax written at the end of ``forward``: the root's output is the probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, 128), nn.Linear(128, 10)

    def forward(self, x):
        return F.softmax(self.b(torch.relu(self.a(x))), dim=-1)


def test_a_softmax_at_the_end_of_forward_is_named_too():
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    model = _SoftmaxForward()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    probe = gp.watch(model, optimizer=opt)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        i = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        loss = F.cross_entropy(model(x[i]), y[i])
        loss.backward()
        opt.step()
        probe.step(loss=loss)
    probe.close()
    cause = [f for f in gp.diagnose(probe.run) if "loss_floor" in f.evidence]
    assert [f.layer for f in cause] == ["(model)"]
    assert "softmax at the end of the forward" in cause[0].remedy.text
