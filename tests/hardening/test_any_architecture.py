"""Property test: any model from the zoo can be initialised, checked and watched, and the
probe leaves it exactly as it was (hooks removed, training bit-identical)."""

from __future__ import annotations

import copy
import math
import os

import torch
from hypothesis import HealthCheck, given, settings
from torch import nn

import gradprobe as gp

from .strategies import models

TENSOR_SCHEMES = [n for n in gp.init.names() if gp.init.get(n).kind == "tensor"]


def hook_counts(model: nn.Module) -> list[int]:
    return [
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    ]  # fmt: skip


def primary(out):
    if isinstance(out, dict):
        return out["logits"]
    return out[0] if isinstance(out, tuple) else out


def train(model, inputs, target, steps, probe=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(primary(model(inputs)), target)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if probe is not None:
            probe.step()
        losses.append(loss.detach())
    return losses


# derandomize: CI sees the same 30 architectures every run (a new random failure would block
# an unrelated change); GRADPROBE_HYPOTHESIS_EXAMPLES=300 explores more, randomly, by hand.
_EXPLORE = int(os.environ.get("GRADPROBE_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=_EXPLORE or 30,
    derandomize=not _EXPLORE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(models())
def test_every_scheme_applies_and_check_runs(case):
    model, inputs, target = case
    for scheme in [*TENSOR_SCHEMES, "default"]:
        trial = copy.deepcopy(model)
        gp.init.apply(trial, scheme, generator=torch.Generator().manual_seed(0))
        for name, p in trial.named_parameters():
            assert torch.isfinite(p).all(), (scheme, name)
    trial = copy.deepcopy(model)
    gp.init.apply(trial, "lsuv", data=inputs)
    before = hook_counts(trial)
    result = gp.check(
        trial, inputs, target, loss_fn=lambda out, y: nn.functional.cross_entropy(primary(out), y)
    )
    assert hook_counts(trial) == before
    df = result.run.to_pandas()
    bad = df[~df["value"].map(lambda v: math.isfinite(v))]
    if len(bad):  # a non-finite number must be flagged, never silent
        assert result.run.events() or any(f.kind == "non_finite" for f in result.findings)
    str(result)
    gp.diagnose(result.run)


@SETTINGS
@given(models())
def test_watching_never_changes_training(case):
    model, inputs, target = case
    torch.manual_seed(1)
    a = copy.deepcopy(model)
    b = copy.deepcopy(model)
    torch.manual_seed(2)
    plain = train(a, inputs, target, 3)
    before = hook_counts(b)
    torch.manual_seed(2)
    with gp.watch(b, every=1, histograms=True) as probe:
        watched = train(b, inputs, target, 3, probe)
    assert hook_counts(b) == before
    assert all(torch.equal(x, y) for x, y in zip(plain, watched, strict=True))
    for (n1, p1), (n2, p2) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert probe.run.steps == [0, 1, 2] or probe.run.steps == [1, 2, 3]
