"""A NaN/Inf made by a parent's own forward code between two modules (``x / x.std()`` of a
constant row) is said to be made before the module it reached, in that code.

Regression: the probe noted the outputs of modules only, so the first Linear after such a
division read as having "turned finite inputs into NaN/Inf" (a log, sqrt or exp inside the
Linear), on a logged step, an unlogged one, and with ``first_nonfinite=True``. The probe now
also notes a module's input that no watched module made; the remedy names the parent's
forward and an eps in its denominators."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp


class StdScaled(nn.Module):
    """Standardises each row by hand, without an eps: a constant row gives 0/0."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.body((x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True))


class LogOfShifted(nn.Module):
    """A module whose own forward makes the NaN from a finite input (log of a value < 0)."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += 1
        return (x - 100.0).log() if self.calls - 1 == self.at else x


def _run(model, at, **kw):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gp.watch(model, optimizer=opt, **kw) as probe:
        for s in range(at + 3):
            x = torch.randn(16, 8, generator=g)
            if s == at:
                x[0] = 1.0  # a constant row: its std is 0
            loss = F.cross_entropy(model(x), torch.randint(0, 3, (16,), generator=g))
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    return gp.diagnose(probe.run)


@pytest.mark.parametrize(
    ("at", "kw"),
    [(30, {}), (33, {}), (33, {"first_nonfinite": True})],
    ids=["logged_step", "unlogged_step", "search_every_step"],
)
def test_a_nan_made_by_the_parents_own_code_is_not_blamed_on_the_next_linear_regression(at, kw):
    f = next(f for f in _run(StdScaled(), at, **kw) if f.kind == "non_finite")
    assert f.severity == "error" and f.onset == at and f.layer == "body.0"
    assert "turned finite inputs" not in f.message and "input already held NaN/Inf" in f.message
    # the code that made it: the model's forward (body is a Sequential, which only chains)
    assert "StdScaled.forward" in f.remedy.text and "+ 1e-5" in f.remedy.code


def test_a_module_that_makes_the_nan_itself_is_still_named_as_its_maker():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), LogOfShifted(at=33), nn.Linear(16, 3))
    f = next(f for f in _run(model, 33) if f.kind == "non_finite")
    assert f.layer == "1" and "turned finite inputs into NaN/Inf" in f.message
    assert "made before" not in f.remedy.text
