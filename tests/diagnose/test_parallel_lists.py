"""A module list whose members never feed each other (a mixture's experts, an ensemble) is one
block, not a chain (blocks.py, from the probe's ``meta["module_lists"]``). Read as a chain,
a hand-written top-level mixture of experts warned "exploding at experts.0" (101×, step 100)
or "vanishing at experts.0" on 3 of 8 healthy runs (seeds 0-3, top-1 and top-2 routing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Context, Thresholds
from gradprobe.diagnose.blocks import parallel_lists

from ._training import digits, train_on_digits


class TopLevelExperts(nn.Module):
    def __init__(self, d: int = 64, experts: int = 4, k: int = 1) -> None:
        super().__init__()
        self.inp = nn.Linear(64, d)
        self.router = nn.Linear(d, experts)
        self.k = k
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
            for _ in range(experts)
        )
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h = F.relu(self.inp(x))
        top, idx = self.router(h).softmax(-1).topk(self.k, -1)
        out = torch.zeros_like(h)
        for j, expert in enumerate(self.experts):
            for kk in range(self.k):
                sel = idx[:, kk] == j
                if sel.any():
                    out[sel] = out[sel] + top[sel, kk : kk + 1] * expert(h[sel])
        return self.head(h + out)


def _train(steps: int, seed: int = 0, k: int = 1):
    torch.manual_seed(seed)
    model = TopLevelExperts(k=k)
    return train_on_digits(model, torch.optim.Adam(model.parameters(), lr=1e-3), steps, seed)


def test_top_level_experts_are_one_block_regression():
    run = _train(3)
    assert parallel_lists(run.meta) == {"experts"}
    blocks = Context(run, Thresholds()).structure.blocks
    assert [b.name for b in blocks] == ["experts"]
    names = {la.name for la in blocks[0].layers}  # the experts that ran (routing decides)
    assert len({n.split(".")[1] for n in names}) >= 2
    assert names <= {f"experts.{j}.{i}" for j in range(4) for i in (0, 2)}


def test_trained_top_level_experts_get_no_depth_finding_regression():
    """Seed 0, top-1 routing, 400 steps: "exploding at experts.0" from step 100 before."""
    found = gp.diagnose(_train(400, seed=0, k=1))
    depth = [f for f in found if f.kind in ("vanishing", "exploding")]
    assert not [f for f in depth if f.severity in ("warning", "error")], [str(f) for f in depth]


def test_a_chain_in_a_list_is_still_a_chain():
    """Without the probe's record (an older run, or a list that ran without gradients) the
    names decide, as before; a list whose members fed each other stays a chain."""
    assert parallel_lists({}) == frozenset()
    assert parallel_lists({"module_lists": {"parallel": {}, "chains": ["h"]}}) == set()
    assert parallel_lists({"module_lists": {"parallel": {"": [1]}, "chains": []}}) == set()
    assert parallel_lists({"module_lists": {"parallel": {"e": [1, 2]}, "chains": []}}) == {"e"}
    assert parallel_lists({"module_lists": [1, 2]}) == set()  # not what the probe writes


class SigmoidTrunkTwoHeads(nn.Module):
    """8 sigmoid layers, then two heads held in a ModuleList (parallel single layers)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(8):
            layers += [nn.Linear(64, 64), nn.Sigmoid()]
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList([nn.Linear(64, 10), nn.Linear(64, 2)])

    def forward(self, x):
        h = self.trunk(x)
        return [head(h) for head in self.heads]


def test_parallel_single_layer_heads_leave_the_trunk_judged():
    """Parallel heads that are single layers stay in the plain stack: the trunk below them is
    still a chain of layers, and its vanishing is found."""
    x, y = digits()
    torch.manual_seed(0)

    def loss_fn(out, target):
        return F.cross_entropy(out[0], target) + F.cross_entropy(out[1], target % 2)

    result = gp.check(SigmoidTrunkTwoHeads(), x[:64], y[:64], loss_fn=loss_fn)
    assert parallel_lists(result.run.meta) == {"heads"}
    blocks = Context(result.run, Thresholds()).structure.blocks
    assert [b.name for b in blocks][:8] == [f"trunk.{2 * i}" for i in range(8)]
    vanishing = [f for f in result.findings if f.kind == "vanishing"]
    assert vanishing and vanishing[0].layer == "trunk.0"
    assert vanishing[0].severity in ("warning", "error")
