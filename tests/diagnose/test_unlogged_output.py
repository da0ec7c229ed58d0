"""A NaN made in the forward on an unlogged step (watch()'s default) is not blamed on the
loss: the probe reads the model's output on every step (one sum), so the diagnosis tells a
forward NaN/Inf from one the loss made. Before, a fully masked attention row (softmax of
-inf everywhere) at step 47 read "the loss itself is the origin, not a layer", with the
remedy of a loss outside its domain, although the model's output was NaN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.probe import _trail as trail


class MaskedAttention(nn.Module):
    """Hand-written attention with an additive -inf mask (``masked_fill``, then softmax)."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x, mask):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) / (d // self.heads) ** 0.5
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, n, d))


class Tagger(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.inp = nn.Linear(4, d)
        self.attn = MaskedAttention(d)
        self.head = nn.Linear(d, 3)

    def forward(self, x, mask):
        h = self.inp(x)
        return self.head(h + self.attn(h, mask))


def _train(bad_step: int | None, loss_nan_at: int | None = None, steps: int = 40):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = Tagger()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with gp.watch(model, optimizer=opt) as probe:  # steps 0-19 logged, then one in ten
        for step in range(steps):
            x = torch.randn(4, 6, 4, generator=gen)
            y = torch.randint(0, 3, (4, 6), generator=gen)
            mask = torch.ones(4, 1, 6, 6, dtype=torch.bool).tril()
            if step == bad_step:
                mask[1, :, 2, :] = False  # a query that sees no key: its softmax is NaN
            out = model(x, mask)
            loss = F.cross_entropy(out.reshape(-1, 3), y.reshape(-1))
            if step == loss_nan_at:
                loss = loss * torch.log(torch.tensor(-1.0))  # a loss of the user's own
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss=loss)
    return probe.run


def test_forward_nan_on_an_unlogged_step_is_not_the_loss_regression():
    run = _train(bad_step=27)
    [episode] = run.meta["nonfinite_seen"][:1]
    assert episode["step"] == 27 and "output" in episode["seen_in"]
    found = gp.diagnose(run)
    said = " ".join(f.message for f in found)
    assert "the loss itself is the origin" not in said


def test_forward_nan_on_an_unlogged_step_names_its_module_regression():
    """The module is named at the unlogged step itself, from the outputs its forward noted
    (probe/_trail.py). Before, the diagnosis said the model output was NaN and that
    first_nonfinite=True would name the module: the next logged step found every module
    NaN, from weights that had taken step 27's NaN gradient."""
    run = _train(bad_step=27)
    ev = run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (27, "attn.out")  # the first module output after softmax
    found = gp.diagnose(run)
    first = [f for f in found if f.kind == "non_finite" and f.severity == "error"]
    assert [(f.layer, f.onset) for f in first] == [("attn.out", 27)]
    assert "first_nonfinite=True" not in (first[0].remedy.code or "")
    # attn.out's input already held the NaN: the softmax in MaskedAttention.forward made it
    assert "MaskedAttention.forward (attn)" in first[0].remedy.text
    symptom = [f for f in found if f.kind == "diverging" and f.severity == "error"]
    assert symptom and "attn.out" in symptom[0].message


def test_an_output_freed_before_it_was_read_is_named_as_a_possible_origin(monkeypatch):
    """Held weakly (past STRONG_MAX), attn.out's output is freed once the residual addition
    has used it (an addition saves nothing for the backward): the first output still
    readable is the head's, and the diagnosis says the NaN may have begun in attn.out.
    (The inputs the trail notes are left out here: attn.out's, alive as its saved input,
    would name it by its input — tests/diagnose/test_made_before_module.py.)"""
    monkeypatch.setattr(trail, "STRONG_MAX", 0)
    monkeypatch.setattr(trail.Trail, "note_input", lambda self, name, t: None)
    run = _train(bad_step=27)
    ev = run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (27, "head")
    first = [f for f in gp.diagnose(run) if f.kind == "non_finite" and f.severity == "error"]
    assert first[0].layer == "head" and "attn.out" in first[0].message
    assert "freed before the probe read it" in first[0].message


def test_a_nan_the_loss_made_is_still_the_loss():
    """The converse: the output was finite at the unlogged step, the loss was not."""
    run = _train(bad_step=None, loss_nan_at=27)
    [episode] = run.meta["nonfinite_seen"][:1]
    assert episode["step"] == 27 and "output" not in episode["seen_in"]
    said = " ".join(f.message for f in gp.diagnose(run))
    assert "the loss itself is the origin" in said
