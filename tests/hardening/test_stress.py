"""Under stress: failing hooks, checkpointing, eval phases and no_grad loops while watching."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import gradprobe as gp
from gradprobe.probe import reducers


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)
    )


def train(model, steps=4, probe=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        if probe is not None:
            probe.step()


def test_an_exception_inside_a_hook_is_recorded_and_never_reaches_training(monkeypatch):
    plain = mlp()
    train(plain)
    watched = mlp()
    calls = {"n": 0}

    def flaky(real):
        def call(t, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("reducer exploded")
            return real(t, *args, **kwargs)

        return call

    # what the recorder calls for every tensor: the one C call, or torch's ops without it
    for name in ("summarise", "moments_from"):
        monkeypatch.setattr(reducers, name, flaky(getattr(reducers, name)))
    with gp.watch(watched) as probe:
        train(watched, probe=probe)
    assert all(
        torch.equal(a, b) for a, b in zip(plain.parameters(), watched.parameters(), strict=True)
    )
    assert any("reducer exploded" in w for w in probe.warnings)
    assert any("reducer exploded" in w for w in probe.run.meta["warnings"])
    assert len(probe.run.steps) >= 2  # the other steps were recorded


def test_gradient_checkpointing_records_the_same_numbers():
    class Checkpointed(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return checkpoint(self.body, x, use_reentrant=False)

    body = mlp()
    ref, ckpt = copy.deepcopy(body), Checkpointed(copy.deepcopy(body))
    x = torch.randn(8, 6)
    a = gp.check(ref, x).run
    b = gp.check(ckpt, x).run
    for layer in ("0", "2", "4"):
        for quantity in ("activation", "grad_output"):
            _, _, va = a.matrix(quantity, "rms")
            names_b, _, vb = b.matrix(quantity, "rms")
            row_a = a.matrix(quantity, "rms")[0].index(layer)
            row_b = names_b.index(f"body.{layer}")
            assert abs(va[row_a, 0] - vb[row_b, 0]) <= 1e-6 * abs(va[row_a, 0]), (layer, quantity)


def test_eval_phases_and_no_grad_loops_while_watching():
    model = mlp()
    with gp.watch(model) as probe:
        train(model, steps=2, probe=probe)
        model.eval()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(4, 6))
        model.train()
        train(model, steps=2, probe=probe)
    assert probe.run.steps[:2] == [0, 1] and len(probe.run.steps) >= 4
    assert not probe.warnings
