"""The numbers a diagnosis reports against the same numbers computed here with plain torch
(module hooks, brute force over the batch), independently of the probe.

All comparisons are within one run on one machine: the reference sees the same tensors,
so the agreement is to float32 rounding, whatever the CPU's kernels.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp


def _stack(act, depth, width=64, seed=0, scheme="standard", **options):
    torch.manual_seed(seed)
    layers = [nn.Linear(32, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, 10))
    return gp.init.apply(nn.Sequential(*layers), scheme, **options)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(256, 32, generator=g), torch.randint(0, 10, (256,), generator=g)


def _grad_rms_by_hooks(model, x, y):
    """rms of ∂L/∂(output) of each Linear, by backward hooks on a copy of the model."""
    rms = {}

    def hook(name):
        def fn(module, grad_in, grad_out):
            rms[name] = float(grad_out[0].double().pow(2).mean().sqrt())

        return fn

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    handles = [m.register_full_backward_hook(hook(n)) for n, m in linears]
    with warnings.catch_warnings():  # the first layer's input needs no gradient: expected
        warnings.simplefilter("ignore", UserWarning)
        F.cross_entropy(model(x), y).backward()
    for h in handles:
        h.remove()
    model.zero_grad()
    return {n: rms[n] for n, _ in linears}  # forward order (the hooks ran output first)


def test_vanishing_ratio_and_per_layer_profile_match_backward_hooks(batch):
    model = _stack(nn.Sigmoid, 12)
    f = next(f for f in gp.check(model, *batch).findings if f.kind == "vanishing")
    rms = _grad_rms_by_hooks(model, *batch)
    names = list(rms)  # forward order: the lowest layer first
    top = rms[names[-1]]
    assert f.evidence["ratio_lowest_to_output"] == pytest.approx(rms[names[0]] / top, rel=1e-4)
    for name, ratio in f.evidence["ratio_to_output_per_layer"].items():
        assert ratio == pytest.approx(rms[name] / top, rel=1e-4)
    logs = np.log([rms[n] for n in reversed(names)])  # the fitted growth, output to input
    growth = float(np.exp(np.polyfit(np.arange(len(logs)), logs, 1)[0]))
    assert f.evidence["growth_per_layer"] == pytest.approx(growth, rel=1e-4)


def test_dead_fraction_of_every_relu_layer_matches_brute_force(batch):
    model = _stack(nn.ReLU, 6, scheme="kaiming_normal", bias=-1.0)
    run = gp.check(model, *batch).run
    names, _, values = run.matrix("activation", "dead")
    stored = dict(zip(names, values[:, 0], strict=True))
    h, expected = batch[0], {}
    with torch.no_grad():
        for i, m in enumerate(model):
            h = m(h)
            if isinstance(m, nn.ReLU):
                expected[str(i)] = float((h <= 0).all(dim=0).float().mean())
    assert set(stored) == set(expected)
    for name, frac in expected.items():
        assert stored[name] == pytest.approx(frac, abs=1e-9), name
    samples = run.matrix("activation", "dead_samples")[2]
    assert np.all(samples == 256)


def test_saturated_fraction_of_every_tanh_layer_matches_brute_force(batch):
    model = _stack(nn.Tanh, 6, scheme="xavier_normal")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    run = gp.check(model, *batch).run
    names, _, values = run.matrix("activation", "saturated")
    stored = dict(zip(names, values[:, 0], strict=True))
    h, expected = batch[0], {}
    with torch.no_grad():
        for i, m in enumerate(model):
            h = m(h)
            if isinstance(m, nn.Tanh):  # within 1% of the range (2) of a bound
                expected[str(i)] = float((h.abs() >= 0.98).float().mean())
    assert set(stored) == set(expected)
    for name, frac in expected.items():
        assert stored[name] == pytest.approx(frac, abs=1e-6), name


def test_large_update_median_matches_the_weights_before_and_after(batch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    ratios = {"0.weight": [], "2.weight": []}
    x, y = batch
    with gp.watch(model, optimizer=opt, updates=1) as probe:
        for _ in range(5):
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            F.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            for n in ratios:
                w = dict(model.named_parameters())[n].detach()
                ratios[n].append(float((w - before[n]).norm() / before[n].norm()))
    found = {f.layer: f for f in gp.diagnose(probe.run) if f.kind == "large_updates"}
    names, _, values = probe.run.matrix("update", "ratio")
    stored = dict(zip(names, values, strict=True))
    for n, seen in ratios.items():
        logged = stored[n][np.isfinite(stored[n])]
        # the probe's ratio for step t is ‖w_t − w_{t−1}‖/‖w_{t−1}‖ of the same updates
        np.testing.assert_allclose(logged, seen[-len(logged) :], rtol=1e-4)
        if n in found:
            assert found[n].evidence["median_update_ratio"] == pytest.approx(
                float(np.median(logged)), rel=1e-9
            )
    assert found  # lr = 20 moves these weights far beyond 10% a step
