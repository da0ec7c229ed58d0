"""probe/_trail.py: the module outputs of an unlogged step, read only when the model's output
is NaN/Inf (first_nonfinite="auto", CPU): the module that made it is named at that step."""

import torch
from test_nonfinite import NaNAt  # the module beside this one (pytest puts it on sys.path)
from torch import nn

import gradprobe as gp
from gradprobe.probe import _trail as trail
from gradprobe.probe._trail import Trail


def _loop(model, probe, poison, bad, steps=30, micro=1, evaluate=False):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for s in range(steps):
        for m in range(micro):
            poison.poison = (s, m) == bad
            loss = model(torch.randn(4, 6, generator=g)).pow(2).mean()
            loss.backward()
        opt.step()
        opt.zero_grad()
        probe.step(loss=loss)
        if evaluate:
            with torch.no_grad():
                model(torch.randn(4, 6, generator=g))


def test_an_inplace_relu_reads_the_linear_output_as_its_own():
    """A Linear's output changed in place by the ReLU after it is read as the ReLU's: no
    "may have begun before it" for a module whose output was read, just changed."""
    torch.manual_seed(0)
    poison = NaNAt()
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(inplace=True), poison, nn.Linear(6, 2))
    with gp.watch(model, every=100) as probe:
        _loop(model, probe, poison, bad=(25, 0))
    ev = probe.run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (25, "2")
    assert "freed or changed in place" not in ev.detail


def test_a_nan_in_the_second_micro_batch_is_named_at_its_step():
    """Gradient accumulation: two forwards a step, each read and let go at its own end."""
    torch.manual_seed(0)
    poison = NaNAt()
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), poison, nn.Linear(6, 2))
    with gp.watch(model, every=100) as probe:
        _loop(model, probe, poison, bad=(27, 1), micro=2)
    ev = probe.run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (27, "2")
    assert len(probe._trail) == 0


def test_evaluation_forwards_note_nothing_and_nothing_is_held_between_steps():
    torch.manual_seed(0)
    poison = NaNAt()
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), poison, nn.Linear(6, 2))
    with gp.watch(model, every=100) as probe:
        _loop(model, probe, poison, bad=None, steps=25, evaluate=True)
        assert len(probe._trail) == 0  # the last evaluation under no_grad noted nothing
    assert probe.run.events() == [] and not probe.warnings


def test_no_trail_without_the_free_check_or_once_the_nan_is_named():
    """first_nonfinite=False or True: no hook per module on unlogged steps for the trail
    (True searches with its own hooks); "auto": off again once an event is found."""

    def unlogged_hooks(mode, bad):
        torch.manual_seed(0)
        poison = NaNAt()
        model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), poison, nn.Linear(6, 2))
        with gp.watch(model, every=100, first_nonfinite=mode) as probe:
            _loop(model, probe, poison, bad=bad, steps=30)
            return sum(len(m._forward_hooks) for m in model if m is not model)

    assert unlogged_hooks(False, None) == 0
    assert unlogged_hooks("auto", None) == 4  # one per module, to the end
    assert unlogged_hooks("auto", (25, 0)) == 0  # named at step 25: the trail stops


class LogRoot(nn.Module):
    """A watched root: its own forward, after its child's, makes the NaN (log of x ≤ 0)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.w = nn.Parameter(torch.ones(6))
        self.poison = False

    def forward(self, x):
        return (self.lin(x).abs() * self.w - (10.0 if self.poison else 0.0)).log()


def test_a_watched_root_that_makes_the_nan_is_named():
    model = LogRoot()
    with gp.watch(model, every=100) as probe:
        _loop(model, probe, model, bad=(24, 0))
    ev = probe.run.first_nonfinite("forward")
    assert ev is not None and ev.step == 24 and ev.layer == probe._root_slot.name


def test_trail_holds_strongly_up_to_its_budget_then_weakly(monkeypatch):
    monkeypatch.setattr(trail, "STRONG_MAX", 10)
    t = Trail()
    t.note("a", torch.zeros(8))
    t.note("b", torch.zeros(8))  # past the budget: weak, and freed at once
    bad = torch.zeros(8)
    bad[3] = float("inf")
    t.note("c", bad)
    name, frac, unread, is_input = t.first_nonfinite()
    assert (name, frac, unread, is_input) == ("c", 1 / 8, ["b"], False)
    assert len(t) == 0 and t.first_nonfinite() is None


def _nan_row(n=8):
    x = torch.zeros(n)
    x[0] = float("nan")
    return x


def test_an_input_no_module_made_is_noted_and_named_as_an_input():
    """The input of ``b`` was made between ``a`` and ``b`` (by the parent's code): when it is
    the first tensor holding NaN/Inf, the trail says it was ``b``'s input, not its output."""
    t = Trail()
    t.note("a", torch.zeros(8))
    bad = _nan_row()
    t.note_input("b", bad)
    t.note("b", bad * 2)
    assert t.first_nonfinite() == ("b", 1 / 8, [], True)


def test_the_output_noted_last_is_not_noted_again_as_the_next_input():
    t = Trail()
    out = torch.zeros(8)
    t.note("a", out)
    t.note_input("b", out)  # a chain: b's input is a's output
    assert len(t) == 1
    t.note_input("c", torch.zeros(8))  # made by code between them
    assert len(t) == 2


def test_find_input_reads_the_input_noted_for_a_module():
    t = Trail()
    t.note_input("a", torch.zeros(8))
    bad = _nan_row()
    t.note_input("b", bad)
    assert t.find_input("a") is None  # finite
    assert t.find_input("b") == 1 / 8
    assert t.find_input("c") is None  # none noted
    bad.add_(1.0)  # changed in place since: cannot be read as it was
    assert t.find_input("b") is None


def test_a_sum_that_overflows_float32_is_not_a_nan():
    t = Trail()
    t.note("big", torch.full((4,), 3e38))
    assert t.first_nonfinite() is None
