"""A NaN/Inf loss the run came back from (a GradScaler or the loop skipped that step's
update) is a skipped step, not a run that diverged. Before: "diverging" (an error) at the
first NaN loss, every later step left out of the loss curve, and a forward NaN named by the
probe an error with a lower-lr remedy; a float16 module's overflow on an unlogged step was
told "a log or sqrt of a value ≤ 0"."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import diagnose

from ._runs import decaying, training_run


def _kinds(found):
    return [(f.kind, f.severity) for f in found if f.severity in ("warning", "error")]


def test_one_nan_loss_the_run_recovered_from_is_a_skipped_step_regression():
    loss = decaying(80)
    loss[43] = np.nan
    found = diagnose(training_run(loss=loss), rules="loss")
    assert _kinds(found) == [("loss_spike", "warning")]
    [f] = found
    assert f.evidence["recovered"] and f.evidence["nonfinite_steps"] == [43]
    assert f.step == 43 and f.evidence["finite_again_at"] == 44


def test_a_nan_that_lasts_to_the_end_is_still_diverging_after_recovered_ones():
    loss = decaying(80)
    loss[30] = np.inf
    loss[70:] = np.nan
    found = diagnose(training_run(loss=loss), rules="loss")
    kinds = {(f.kind, f.step) for f in found if f.severity in ("warning", "error")}
    assert kinds == {("loss_spike", 30), ("diverging", 70)}


def test_nan_losses_on_many_steps_are_no_skipped_steps():
    """More than a tenth of the steps NaN: an unstable run, judged as diverging."""
    loss = decaying(80)
    loss[10:80:5] = np.nan  # 14 of 80
    found = diagnose(training_run(loss=loss), rules="loss")
    assert [f.kind for f in found if f.severity == "error"] == ["diverging"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.act, self.b, self.c = (
            nn.Linear(16, 64),
            nn.GELU(),
            nn.Linear(64, 64),
            nn.Linear(64, 4),
        )

    def forward(self, x):
        return self.c(self.b(self.act(self.a(x))))


def _fp16_run(bad_step=43, steps=60):
    """float16 autocast with a GradScaler; one batch at ``bad_step`` (unlogged under the
    default schedule) is 1e5× too large, so float16 overflows in the first Linear."""
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    g = torch.Generator().manual_seed(0)
    with gp.watch(model, optimizer=opt, scaler=scaler) as probe:
        for step in range(steps):
            x = torch.randn(32, 16, generator=g)
            y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
            if step == bad_step:
                x = x * 1e5
            with torch.autocast("cpu", dtype=torch.float16):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            probe.step(loss=loss)
    return probe.run


def test_a_float16_overflow_of_one_batch_is_named_transient_and_float16s_regression():
    run = _fp16_run()
    ev = run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (43, "a")
    found = diagnose(run)
    assert not [f for f in found if f.severity == "error"], [str(f) for f in found]
    nan = [f for f in found if f.kind == "non_finite" and f.severity == "warning"]
    assert [(f.layer, f.onset) for f in nan] == [("a", 43)]
    assert nan[0].evidence["transient"] and "65504" in nan[0].remedy.text
    assert "bfloat16" in nan[0].remedy.code
    spike = [f for f in found if f.kind == "loss_spike" and f.evidence.get("recovered")]
    assert spike and spike[0].causes and spike[0].causes[0].layer == "a"
