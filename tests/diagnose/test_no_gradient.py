"""Regression: a loop whose loss is not connected to the model (its output detached before
the loss) trained nothing and was told "the loss has not fallen beyond its noise; no cause
was seen in the layers: check the learning rate". No gradient reached any parameter or any
module's output on any step — the run records none — and that is now the finding
(rules/recorded.py), the cause of the loss's symptom."""

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import gradprobe as gp
from gradprobe.diagnose.rules.recorded import NO_GRADIENT


def _run(loop: str, steps: int = 120):
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    if loop == "frozen":
        model.requires_grad_(False)
        model[2].weight.requires_grad_(True)  # a linear probe on frozen features
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    probe = gp.watch(model, optimizer=opt)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        out = model(x[i])
        if loop == "detached":
            out = out.detach().requires_grad_()
        loss = F.cross_entropy(out, y[i])
        if loop != "no_backward":
            loss.backward()
        opt.step()
        probe.step(loss=loss)
    probe.close()
    return gp.diagnose(probe.run)


@pytest.mark.parametrize("loop", ["detached", "no_backward"])
def test_a_loss_that_reaches_no_parameter_is_named(loop):
    found = _run(loop)
    cause = [f for f in found if f.evidence.get("updated") == NO_GRADIENT]
    assert [(f.kind, f.severity, f.onset) for f in cause] == [("small_updates", "error", 0)]
    symptom = [f for f in found if f.kind == "not_learning"]
    assert symptom and "loss.backward()" in symptom[0].remedy.text
    assert symptom[0].causes and symptom[0].causes[0].kind == "small_updates"


@pytest.mark.parametrize("loop", ["connected", "frozen"])
def test_a_loss_that_reaches_the_model_is_no_finding(loop):
    found = _run(loop)
    assert not [f for f in found if f.evidence.get("updated") == NO_GRADIENT]
    assert not [f for f in found if f.severity in ("warning", "error")], found
