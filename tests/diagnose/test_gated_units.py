"""Regressions: tanh/sigmoid gates (WaveNet's ``tanh(f) * sigmoid(g)``, a GLU) are not hidden
activations, and a remedy that swaps them for GELU or ReLU breaks the gating."""

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.diagnose.finding import Finding
from gradprobe.fix.catalog import REMEDIES
from gradprobe.fix.options import OptimizerSpec
from gradprobe.fix.situation import Situation


class Gated(nn.Module):
    """A WaveNet residual block: a dilated causal conv split into filter and gate,
    ``tanh(f) * sigmoid(g)``, a 1x1 conv back onto the residual stream."""

    def __init__(self, c, dilation):
        super().__init__()
        self.pad = dilation
        self.conv = nn.Conv1d(c, 2 * c, 2, dilation=dilation)
        self.tanh, self.sigmoid = nn.Tanh(), nn.Sigmoid()
        self.res = nn.Conv1d(c, c, 1)

    def forward(self, x):
        f, g = self.conv(F.pad(x, (self.pad, 0))).chunk(2, dim=1)
        return x + self.res(self.tanh(f) * self.sigmoid(g))


class WaveNet(nn.Module):
    """A causal-conv LM of 8 gated blocks (dilations 1, 2, 4, 8, twice); ``hidden``: a Tanh
    between the embedding and the blocks that is no gate."""

    def __init__(self, vocab=16, c=32, blocks=8, hidden=False):
        super().__init__()
        self.emb = nn.Embedding(vocab, c)
        self.act = nn.Tanh() if hidden else nn.Identity()
        self.blocks = nn.ModuleList(Gated(c, 2 ** (i % 4)) for i in range(blocks))
        self.out = nn.Conv1d(c, vocab, 1)

    def forward(self, tok):
        x = self.act(self.emb(tok).transpose(1, 2))
        for b in self.blocks:
            x = b(x)
        return self.out(x)


def _train(scale=10.0, steps=40, hidden=False):
    """The WaveNet with its gates' conv weights ×``scale``, Adam 1e-3 on a copy task."""
    torch.manual_seed(0)
    model = WaveNet(hidden=hidden)
    with torch.no_grad():
        for b in model.blocks:
            b.conv.weight.mul_(scale)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(steps):
            tok = torch.randint(0, 16, (8, 65), generator=g)
            tok[:, 1::2] = (tok[:, 0::2][:, :32] * 3 + 1) % 16
            loss = F.cross_entropy(model(tok[:, :-1]), tok[:, 1:])
            loss.backward(), opt.step(), opt.zero_grad(), probe.step(loss=loss)
    return probe.run, list(gp.diagnose(probe.run))


def test_a_wavenet_s_saturated_gates_were_told_to_become_gelu_regression():
    """×10 gate convs: 43-77 % of every tanh and sigmoid saturated, and each finding's remedy
    was ``swap_activations(model, 'GELU', only=['Sigmoid', 'Tanh'])``, which turns the gated
    unit into GELU(f) · GELU(g). The probe now records which tanh/sigmoid outputs multiply
    another tensor (``meta["gates"]``) and the remedy keeps them: the inputs' scale (LeCun
    init), clipping."""
    run, found = _train()
    gates = {f"blocks.{i}.{a}" for i in range(8) for a in ("tanh", "sigmoid")}
    assert set(run.meta["gates"]) == gates
    sat = [f for f in found if f.kind == "saturated"]
    assert sat and {f.layer for f in sat} <= gates
    assert any(f.severity != "info" for f in sat)
    for f in found:
        assert "swap_activations" not in (f.remedy.code or ""), (f.kind, f.remedy.code)
    for f in (f for f in sat if f.severity != "info"):
        assert "are gates" in f.remedy.text and "lecun_normal" in f.remedy.code
        assert "clip_grad_norm_" in f.remedy.code


def test_a_hidden_tanh_beside_the_gates_is_swapped_and_the_gates_kept():
    """A Tanh that is no gate (after the embedding): a swap may name it, never the gates
    (``keep=``); the saturated gates still get the gates' remedy."""
    run, found = _train(hidden=True)
    assert "act" not in run.meta["gates"]
    for f in found:
        code = f.remedy.code or ""
        assert "swap_activations" not in code or "keep=['blocks.0.sigmoid'" in code
        if f.kind == "saturated" and f.layer in run.meta["gates"] and f.severity != "info":
            assert "are gates" in f.remedy.text and "swap_activations" not in code
    model = WaveNet(hidden=True)
    gp.fix.swap_activations(model, "GELU", only=["Sigmoid", "Tanh"], keep=run.meta["gates"])
    assert isinstance(model.act, nn.GELU)
    assert isinstance(model.blocks[3].sigmoid, nn.Sigmoid) and isinstance(
        model.blocks[3].tanh, nn.Tanh
    )


def test_gates_and_not_gates_as_the_probe_sees_them():
    """A GLU written with a functional sigmoid names the module it reads; x * sigmoid(x)
    (SiLU written out), a tanh times a number, and a plain tanh MLP are no gates."""

    class Glu(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.gate, self.b, self.c = (nn.Linear(8, 8) for _ in range(4))
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            h = self.a(x) * torch.sigmoid(self.gate(x))
            s = self.b(h)
            h = s * torch.sigmoid(s) + 2.0 * torch.tanh(self.c(h))
            return self.out(h)

    run = gp.check(Glu(), torch.randn(16, 8)).run
    assert run.meta["gates"] == ["gate"]
    mlp = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2))
    assert "gates" not in gp.check(mlp, torch.randn(16, 8)).run.meta


def test_the_activation_swap_trial_leaves_gates():
    """gp.fix's activation swap (to ReLU) skips the baseline's gates; a hidden tanh is still
    swapped, with ``keep=`` in its code."""
    model = WaveNet(hidden=True)
    gates = tuple(f"blocks.{i}.{a}" for i in range(8) for a in ("tanh", "sigmoid"))
    s = Situation(
        findings=[Finding("saturated", "blocks.0.sigmoid", "warning", 0)],
        symptoms=[],
        model=model,
        optimizer=OptimizerSpec.from_factory(lambda p: torch.optim.Adam(p, 1e-3), model),
        grad_norms=[1.0],
        losses=[],
        steps=100,
        gates=gates,
    )
    changes = REMEDIES.get("activation").fits(s)
    assert changes and all(dict(c.options)["only"] == ("Tanh",) for c in changes)
    assert any("are gates" in n for n in s.notes)
    edited = REMEDIES.get("activation").apply(WaveNet(hidden=True), changes[0], None)
    assert isinstance(edited.act, nn.ReLU) and isinstance(edited.blocks[0].tanh, nn.Tanh)
    alone = dataclasses.replace(s, model=WaveNet(), notes=[])
    assert REMEDIES.get("activation").fits(alone) == []
