"""``through_time``: the gradient's reach back in time (the last steps that get at least
``time_ratio`` of the largest ∂L/∂x_t) against the sequence and against what a healthy
init of the cell reaches (docs/DIAGNOSIS.md, "Through time"), on real recurrent layers and
on series written by hand.
"""

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import diagnose

from ._synthetic import synthetic_run


def _rnn_run(norms, cell="RNN"):
    run = synthetic_run([("rnn", cell, None), ("head", "Linear", None)], {0: []})
    run.write_step(0, [], series=[("rnn", "rnn_grad_input_t", list(norms))], mark_step=False)
    return run


def _classifier(cell):
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = cell, nn.Linear(32, 4)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    return Seq()


def _through_time(model, length):
    x = torch.randn(8, length, 16, generator=torch.Generator().manual_seed(1))
    findings = gp.check(model, x, torch.arange(8) % 4, histograms=False).findings
    return [f for f in findings if f.time_step is not None]


def test_a_gru_at_its_default_init_was_told_vanishing_at_32_steps():
    """PyTorch's GRU divides ∂L/∂x_t by ~1.6 a step (update gate ≈ 0.5), so ∂L/∂x_0 is
    ~3e-7 of the largest at T = 32 and the rule said "error"; the same ×0.6 a step in
    PyTorch's LSTM over 200 steps leaves 9 of 200 steps within reach: vanishing."""
    torch.manual_seed(0)
    assert _through_time(_classifier(nn.GRU(16, 32, batch_first=True)), 32) == []
    torch.manual_seed(0)
    found = _through_time(_classifier(nn.LSTM(16, 32, batch_first=True)), 200)
    assert [(f.kind, f.severity) for f in found] == [("vanishing", "error")]
    assert found[0].evidence["steps_within_threshold"] <= 12  # measured 8-10
    assert 0.5 < found[0].evidence["decay_per_time_step"] < 0.75  # measured 0.60-0.66


def test_a_forget_gate_that_closes_reaches_a_few_steps_whatever_the_length():
    """Forget-gate bias −3: ×0.16 a step, 3 steps within 1% (a healthy gated init: 8-38)."""
    torch.manual_seed(0)
    lstm = nn.LSTM(16, 32, batch_first=True)
    with torch.no_grad():
        lstm.bias_ih_l0.chunk(4)[1].fill_(-3.0)
        lstm.bias_hh_l0.chunk(4)[1].zero_()
    found = _through_time(_classifier(lstm), 32)
    assert [(f.kind, f.severity) for f in found] == [("vanishing", "error")]
    assert found[0].evidence["steps_within_threshold"] < 5
    assert "forget-gate bias to 1–3" in found[0].remedy.text and "×0." in found[0].remedy.text


def test_a_vanilla_rnn_over_20_steps_forgets_where_a_gru_does_not():
    """nn.RNN(8, 16) at PyTorch's init over 20 steps: ×0.45-0.49 a step, 7 steps within 1%
    (30 % of the sequence, so the gated line passes it); without gates it cannot learn to
    keep its state, and its healthy inits (orthogonal, identity) reach 15-52 steps."""

    class Recurrent(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.rnn, self.head = cell, nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    def verdict(cell, orthogonal=False):
        torch.manual_seed(0)
        model = Recurrent(cell)
        if orthogonal:
            with torch.no_grad():
                nn.init.orthogonal_(model.rnn.weight_hh_l0)
                model.rnn.bias_hh_l0.zero_(), model.rnn.bias_ih_l0.zero_()
        x = torch.randn(4, 20, 8, generator=torch.Generator().manual_seed(0))
        found = gp.check(model, x, histograms=False).findings
        return [(f.kind, f.evidence["steps_within_threshold"]) for f in found if f.time_step == 0]

    [(kind, reach)] = verdict(nn.RNN(8, 16, batch_first=True))
    assert kind == "vanishing" and reach < 12  # measured 7
    assert verdict(nn.GRU(8, 16, batch_first=True)) == []
    assert verdict(nn.RNN(8, 16, batch_first=True), orthogonal=True) == []


def _reach_run(reach, length, flat=False, cell="GRU"):
    """∂L/∂x_t falling geometrically back in time; ``reach`` steps within 1% of the largest."""
    t = np.arange(length)
    drop = np.log(1e-2) / (reach - 0.5)  # crosses 1% half a step before the reach ends
    return _rnn_run(np.ones(length) if flat else np.exp(drop * (length - 1 - t)), cell)


@pytest.mark.parametrize(
    ("reach", "length", "cell", "flagged"),
    [
        (8, 100, "GRU", False), (7, 100, "GRU", True), (5, 32, "LSTM", False),
        (4, 32, "LSTM", True), (14, 16, "GRU", False), (12, 32, "RNN", False),
        (11, 32, "RNN", True),
    ],
)  # fmt: skip
def test_the_reach_lines_time_reach_fraction_and_time_min_reach(reach, length, cell, flagged):
    """Vanishing through time when fewer than 8% of the steps (time_reach_fraction) or
    fewer than 5 steps (time_min_reach; 12 without gates, time_ungated_reach) get ≥ 1%
    (time_ratio) of the largest ∂L/∂x_t."""
    found = diagnose(_reach_run(reach, length, cell=cell), rules=["through_time"])
    assert bool(found) == flagged, found
    if found:
        assert found[0].evidence["steps_within_threshold"] == reach


def test_a_loss_at_every_step_keeps_the_gradient_within_reach():
    """An LM's loss at every step: ∂L/∂x_t is flat (0.83-0.92 at t=0), never vanishing."""
    assert diagnose(_reach_run(1, 200, flat=True), rules=["through_time"]) == []
