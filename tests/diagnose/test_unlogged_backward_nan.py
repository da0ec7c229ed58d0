"""Regression: a NaN made in the backward on an unlogged step (watch()'s default schedule)
was blamed on the first module of the next logged step's forward — whose weights the
optimizer had already made NaN — with "exploding → clip the gradient norm" on top, although
the gradient norm had been steady (0.065 → 0.051) until it turned NaN. The probe now keeps
where in that backward the first NaN/Inf parameter gradient appeared (free: the ‖g‖² it
computes anyway, in the order the backward made them), and the diagnosis names the module
between the last finite and the first NaN parameter gradients; a NaN norm reached from a
steady one is not an explosion.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp


class SqrtAfter(nn.Module):
    """ReLU until ``at`` training forwards have run, then sqrt(h·1[h>0]): the same values
    forward, but the backward's 0 · ∞ is NaN where h ≤ 0."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, h):
        self.calls += self.training
        if self.calls > self.at:
            return (h * (h > 0).float()).sqrt()
        return torch.relu(h)


def _model(at: int, loss_sqrt: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), SqrtAfter(at if not loss_sqrt else 10**9),
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5),
    )  # fmt: skip


def _train(model, steps=50, loss_sqrt_at=None, **watch):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 20, generator=gen), torch.randint(0, 5, (256,), generator=gen)
    probe = gp.watch(model, optimizer=opt, **watch)
    for s in range(steps):
        opt.zero_grad()
        out = model(x)
        if loss_sqrt_at is not None and s >= loss_sqrt_at:
            # a finite loss whose gradient is not: sqrt of a sum that is exactly 0
            loss = F.cross_entropy(out, y) + (out * 0).pow(2).sum().sqrt()
        else:
            loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        probe.step(loss=loss)
    probe.close()
    return probe.run


def _errors(run, kind):
    return [f for f in gp.diagnose(run) if f.kind == kind and f.severity == "error"]


@pytest.mark.parametrize("at", [25, 34])  # unlogged steps of the default schedule
def test_unlogged_backward_nan_is_named_from_its_parameter_gradients(at):
    run = _train(_model(at))
    ep = run.meta["nonfinite_seen"][0]
    assert ep["step"] == at and ep["backward"] == {"at": "2", "after": "4"}
    nf = _errors(run, "non_finite")
    assert [(f.layer, f.step, f.onset) for f in nf] == [("3", at, at)]
    assert nf[0].evidence["phase"] == "backward"
    assert "sqrt" in nf[0].remedy.text and "SqrtAfter" in nf[0].message


def test_unlogged_and_logged_backward_nan_name_the_same_module():
    """The exact search of a logged step (4: the first 20 are logged) and the free check of
    an unlogged one (34) name the same module."""
    logged = _errors(_train(_model(4)), "non_finite")
    unlogged = _errors(_train(_model(34)), "non_finite")
    assert [f.layer for f in logged] == [f.layer for f in unlogged] == ["3"]


def test_a_steady_gradient_norm_turning_nan_is_not_exploding():
    run = _train(_model(34))
    assert not [f for f in gp.diagnose(run) if f.kind == "exploding"]


def test_an_exploding_norm_that_turns_nan_is_still_exploding():
    """SGD at lr 3 on a deep tanh net: the norm grows through finite values first."""
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(32, 32), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(32, 1))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=3.0)
    opt = torch.optim.SGD(model.parameters(), lr=3.0)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 32, generator=gen), torch.randn(64, 1, generator=gen) * 100
    probe = gp.watch(model, optimizer=opt)
    for _ in range(40):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        probe.step(loss=loss)
    probe.close()
    norms = probe.run.to_pandas()
    g = norms[norms.quantity == "grad_norm"].value.to_numpy()
    assert np.nanmax(g) > 100 * g[:3].min()  # the case grows before anything is NaN
    assert [f for f in gp.diagnose(probe.run) if f.kind == "exploding"]


def test_a_finite_loss_with_a_nan_gradient_is_named_as_the_loss():
    run = _train(_model(0, loss_sqrt=True), loss_sqrt_at=33)
    nf = _errors(run, "non_finite")
    assert [(f.layer, f.step) for f in nf] == [("(loss)", 33)]
