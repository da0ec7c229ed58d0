"""The code path for accelerators (everything decided on the device, no host reads), run on
the CPU by patching ``reducers.on_host``: it must record the same numbers."""

import math

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.probe import reducers


class Poison(nn.Module):
    def forward(self, x):
        x = x.clone()
        x[0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        return x


def _record(every=1, poison=False, **kw):
    torch.manual_seed(0)
    layers = [nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)]
    if poison:
        layers.insert(2, Poison())
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    with gp.watch(model, every=every, histograms=True, **kw) as probe:
        for _ in range(4):
            loss = model(torch.randn(10, 6, generator=g)).pow(2).sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    run = probe.run
    hists = {
        (la.name, q, s): run.histogram(la.name, q, s)
        for la in run.layers(None)
        for q in ("activation", "grad_output")
        for s in run.steps
    }
    return run.rows(), hists, run.events()


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(("every", "poison"), [(1, False), (1, True), (3, True)])
@pytest.mark.parametrize("hist_range", [None, 0.5])
def test_device_path_records_what_the_host_path_records(monkeypatch, every, poison, hist_range):
    host = _record(every, poison, hist_range=hist_range)
    monkeypatch.setattr(reducers, "on_host", lambda device: False)
    device = _record(every, poison, hist_range=hist_range)
    assert len(host[0]) == len(device[0])
    for a, b in zip(host[0], device[0], strict=True):
        assert a[:4] == b[:4] and _same(a[4], b[4]), a
    for key, h in host[1].items():
        d = device[1][key]
        assert (h is None) == (d is None), key
        if h is not None:
            assert (h.counts == d.counts).all(), key
            assert (h.below, h.above, h.zero, h.nan, h.posinf, h.neginf) == (
                d.below, d.above, d.zero, d.nan, d.posinf, d.neginf
            )  # fmt: skip
    assert host[2] == device[2]
    if poison:
        assert host[2][0].layer == "2"


@pytest.mark.parametrize("bad", [None, float("nan")])
def test_device_path_samples_a_large_tensor_like_the_host_path(monkeypatch, torch_ops, bad):
    """Over 2**20 values: float64 sums of the same sample as the host's torch ops; a NaN the
    sample skips still makes the sums NaN there (no host read decides it), and its count is
    exact."""
    torch.manual_seed(0)
    x = torch.randn(64, 128, 256)
    if bad is not None:
        x[1, 3, 5] = bad  # example 1: not in the sample

    def rows():
        model = nn.Sequential(nn.Linear(256, 4), nn.Tanh())
        with gp.watch(model, first_nonfinite=True) as probe:
            model(x).sum().backward()
            probe.step()
        df = probe.run.to_pandas()
        df = df[(df.layer == "(input)") & (df.quantity == "activation")]
        return dict(zip(df.stat, df.value, strict=True))

    host = rows()
    monkeypatch.setattr(reducers, "on_host", lambda device: False)
    device = rows()
    assert device["nonfinite"] == host["nonfinite"]
    assert device["sampled"] == host["sampled"]
    if bad is None:
        assert device["rms"] == pytest.approx(host["rms"], rel=1e-6)
        assert device["max_abs"] == host["max_abs"]
    else:
        assert math.isnan(device["rms"]) and math.isnan(host["rms"])
