"""probe/_dataflow.py: which module lists are chains and which parallel branches, read once
from the autograd graph of the first logged step with gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.probe._dataflow import LIMIT, _reaches, member


def _mlp(d: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))


class Experts(nn.Module):
    """Top-1 routing over four experts held in a top-level ModuleList."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.router = nn.Linear(d, 4)
        self.experts = nn.ModuleList(_mlp(d) for _ in range(4))

    def forward(self, x):
        choice = self.router(x).argmax(-1)
        out = torch.zeros_like(x)
        for j, expert in enumerate(self.experts):
            sel = choice == j
            if sel.any():
                out[sel] = expert(x[sel])
        return x + out


class Ensemble(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.members = nn.ModuleList(_mlp(d) for _ in range(3))

    def forward(self, x):
        return torch.stack([m(x) for m in self.members]).mean(0)


class ResidualOutside(nn.Module):
    """``h = h + block(h)``: no block takes another's output as is, yet each feeds the next."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), _mlp(d)) for _ in range(4))

    def forward(self, x):
        for b in self.blocks:
            x = x + b(x)
        return x


class KeywordBlocks(nn.Module):
    """Blocks called with their input by keyword (Hugging Face's ``hidden_states=``)."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Wrapped(d) for _ in range(3))

    def forward(self, x):
        for layer in self.layers:
            x = layer(hidden_states=x)
        return x


class Wrapped(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.mlp = _mlp(d)

    def forward(self, hidden_states):
        return hidden_states + self.mlp(hidden_states)


def _lists(model: nn.Module, steps: int = 2, no_grad_first: bool = False):
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    with gp.watch(model) as probe:
        if no_grad_first:
            with torch.no_grad():
                model(x)  # an evaluation before any training: not a step, nothing seen
        for _ in range(steps):
            model(x).pow(2).mean().backward()
            probe.step()
    return probe.run.meta.get("module_lists"), probe


def test_parallel_experts_and_an_ensemble_are_seen_as_parallel():
    lists, _ = _lists(Experts())
    assert lists["parallel"]["experts"] and "experts" not in lists["chains"]
    lists, _ = _lists(Ensemble())
    assert lists["parallel"] == {"members": [1, 2]}
    assert "members.0" not in lists["chains"]  # a Sequential chains its members: not read


def test_chains_are_seen_as_chains_residual_outside_and_by_keyword():
    lists, _ = _lists(ResidualOutside())
    assert lists["parallel"] == {} and "blocks" in lists["chains"]
    lists, _ = _lists(KeywordBlocks())
    assert lists["parallel"] == {} and "layers" in lists["chains"]


def test_the_flow_hooks_are_removed_after_the_first_logged_step():
    model = Ensemble()
    x = torch.randn(4, 8)
    with gp.watch(model) as probe:
        before = len(probe.hooks)
        model(x).sum().backward()
        probe.step()
        assert probe._flow.done and len(probe.hooks) < before
    assert len(probe.hooks) == 0
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_a_frozen_chain_is_not_called_parallel():
    """Frozen members make no autograd graph: nothing to read, so no verdict (the names
    decide), not "parallel"."""
    model = ResidualOutside()
    for p in model.parameters():
        p.requires_grad_(False)
    head = nn.Linear(8, 8)
    with gp.watch(nn.Sequential(model, head)) as probe:
        head(model(torch.randn(4, 8))).sum().backward()
        probe.step()
    lists = probe.run.meta.get("module_lists") or {"parallel": {}}
    assert not any(p.endswith("blocks") for p in lists["parallel"])


def test_a_forward_without_gradients_first_is_looked_past():
    lists, _ = _lists(ResidualOutside(), no_grad_first=True)
    assert "blocks" in lists["chains"]


def test_the_flow_does_not_change_training():
    def train(watch: bool):
        torch.manual_seed(1)
        model = ResidualOutside()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(16, 8), torch.randn(16, 8)
        ctx = gp.watch(model, optimizer=opt) if watch else None
        for _ in range(3):
            F.mse_loss(model(x), y).backward()
            opt.step()
            opt.zero_grad()
        if ctx is not None:
            ctx.close()
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(train(False), train(True), strict=True))


def test_member_names_and_the_walk_limit():
    assert member("blocks.3") == ("blocks", 3)
    assert member("3") == ("", 3)
    assert member("blocks.head") is None
    x = torch.randn(3, requires_grad=True)
    h = x.exp()
    target = h.grad_fn
    for _ in range(LIMIT + 10):
        h = h * 1.0
    assert not _reaches([h.grad_fn], {target})  # beyond the walk: not found
    assert _reaches([h.grad_fn], {target}, limit=LIMIT + 20)
