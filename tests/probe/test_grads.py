"""probe/_grads.py: a logged step's parameter gradients read in one C call at the end of the
backward (``_fused.grads_f32``), and the step's updates in one (``_fused.sqdiffs_f32``):
the same numbers as the per-parameter path (the same kernels), the same order of records."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.probe import _grads as G
from gradprobe.probe import reducers as R

pytestmark = pytest.mark.skipif(not G.available(), reason="the compiled module is not built")


def _grads_f32(rows):
    """grads_f32 over ``rows`` of (grad, weights or None, snapshot or None)."""
    spec = np.zeros((len(rows), 4), dtype=np.int64)
    for j, (g, w, snap) in enumerate(rows):
        spec[j, :2] = g.data_ptr(), g.numel()
        spec[j, 2] = 0 if w is None else w.data_ptr()
        spec[j, 3] = 0 if snap is None else snap.data_ptr()
    out = np.full((len(rows), G.WIDTH), -1.0)
    R.FUSED.grads_f32(spec.ctypes.data, len(rows), out.ctypes.data)
    return out


def test_grads_f32_gives_each_rows_moments_and_weight_norm_and_copies_the_snapshot():
    gen = torch.Generator().manual_seed(3)
    shapes = [(1,), (17,), (128, 33), (1000, 70)]
    grads = [torch.randn(s, generator=gen) * 4 - 1 for s in shapes]
    weights = [torch.randn(s, generator=gen) for s in shapes]
    grads[1][5] = math.nan
    grads[2][0, 0] = -math.inf
    snaps = [torch.zeros(s) for s in shapes]
    rows = [
        (g, w, s if i % 2 == 0 else None)
        for i, (g, w, s) in enumerate(zip(grads, weights, snaps, strict=True))
    ]
    out = _grads_f32(rows)
    for j, (g, w, snap) in enumerate(rows):
        want = R.FUSED.moments_f32(g.data_ptr(), g.numel())  # the same kernel: bit for bit
        for got, exp in zip(out[j, :5], want, strict=True):
            assert (math.isnan(got) and math.isnan(exp)) or got == exp
        assert out[j, 5] == R.FUSED.sumsq_f32(w.data_ptr(), w.numel())
        if snap is not None:
            assert torch.equal(snap, w)
    assert torch.equal(snaps[1], torch.zeros(17))  # no snapshot asked: nothing written


def test_grads_f32_without_weights_gives_nan_for_their_norm():
    g = torch.randn(40)
    out = _grads_f32([(g, None, None)])
    assert math.isnan(out[0, 5]) and out[0, 4] == 0


@pytest.mark.parametrize(
    "row, msg",
    [((0, 4, 0, 0), "data address"), ((1, 0, 0, 0), "n > 0"), ((1, 4, 0, 1), "snapshot")],
)
def test_grads_f32_refuses_a_row_it_cannot_read(row, msg):
    x = torch.zeros(4)
    spec = np.array([row], dtype=np.int64)
    if spec[0, 0]:
        spec[0, 0] = x.data_ptr()
    out = np.empty((1, G.WIDTH))
    with pytest.raises(ValueError, match=msg):
        R.FUSED.grads_f32(spec.ctypes.data, 1, out.ctypes.data)


def test_norms_diff_is_norm_diff_of_each_pair():
    gen = torch.Generator().manual_seed(4)
    pairs = [
        (torch.randn(s, generator=gen), torch.randn(s, generator=gen)) for s in [(3,), (64, 65)]
    ]
    got = R.norms_diff(pairs)
    want = [R.norm_diff(a.clone(), b) for a, b in pairs]
    assert got.tolist() == want
    assert R.norms_diff([]).shape == (0,)
    assert not R.plain_pair(pairs[1][0].t(), pairs[1][1].t())  # strided: the other path


def test_sqdiffs_f32_refuses_a_row_without_addresses():
    spec, out = np.array([[0, 4, 0]], dtype=np.int64), np.empty(1)
    with pytest.raises(ValueError, match="sqdiffs_f32"):
        R.FUSED.sqdiffs_f32(spec.ctypes.data, 1, out.ctypes.data)


class _Big(nn.Module):
    """Small layers, one weight above NORM_FUSED_MAX (torch's dot, in the hook), a frozen
    parameter, a bias-free layer used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(20, 600)
        self.big = nn.Linear(600, 500)  # 300,000 weights > 2^18
        self.shared = nn.Linear(500, 500, bias=False)
        self.head = nn.Linear(500, 4)
        self.head.bias.requires_grad_(False)

    def forward(self, x):
        h = torch.relu(self.big(torch.tanh(self.a(x))))
        return self.head(self.shared(self.shared(h) * 0.5))


def _train(batched: bool, steps=4, accumulate=2, **kw):
    torch.manual_seed(0)
    model = _Big()
    assert model.big.weight.numel() > R.NORM_FUSED_MAX
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))
    with gp.watch(model, optimizer=opt, every=1, updates=1, **kw) as probe:
        if not batched:
            probe._grads = None
        for _ in range(steps):
            for k in range(accumulate):  # gradient accumulation: two backwards per step
                nn.functional.cross_entropy(model(x[k::accumulate]), y[k::accumulate]).backward()
            opt.step()
            opt.zero_grad()
    return probe.run


def test_the_batched_path_records_exactly_the_rows_of_the_per_parameter_path():
    a, b = _train(True).to_pandas(), _train(False).to_pandas()
    keys = ["step", "layer", "quantity", "stat"]
    m = a.merge(b, on=keys, suffixes=("_a", "_b"), how="outer", indicator=True)
    assert (m["_merge"] == "both").all() and len(m) > 0
    assert np.array_equal(m["value_a"], m["value_b"], equal_nan=True)  # the same kernels
    got = set(a.loc[a["quantity"] == "update", "layer"])
    assert {"a.weight", "big.weight", "shared.weight", "head.weight"} <= got
    assert "head.bias" not in got  # frozen: no update


def test_a_nan_in_one_parameters_gradient_is_named_the_same_way_batched_or_not():
    def run(batched):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        model[0].weight.register_hook(lambda g: g * math.nan)  # only this gradient
        with gp.watch(model, every=1) as probe:
            if not batched:
                probe._grads = None
            nn.functional.cross_entropy(
                model(torch.randn(5, 8)), torch.tensor([0, 1, 2, 0, 1])
            ).backward()
            probe.step()
        return [(e.phase, e.layer, e.detail) for e in probe.run.events()]

    got = run(True)
    assert got == run(False)
    assert any(phase == "backward" and "0.weight" in detail for phase, _, detail in got), got


class _Fails(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("backward failed on purpose")


def test_regression_a_backward_that_raises_still_records_the_parameters_it_reached():
    """The engine runs no callback after an error: the step's end reads what was noted."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    with gp.watch(model, every=1) as probe:
        out = model[2](_Fails.apply(model[1](model[0](torch.randn(4, 8)))))
        with pytest.raises(RuntimeError, match="on purpose"):
            out.sum().backward()
        probe.step()
    df = probe.run.to_pandas()
    grads = df[(df["quantity"] == "param_grad") & (df["stat"] == "norm")]
    assert set(grads["layer"]) == {"2.weight", "2.bias"}  # reached before the failure
    assert not probe.warnings


def test_regression_an_optimizer_stepped_inside_the_backward_is_read_before_it_steps():
    """torch's "optimizer in backward": a parameter hook of the user's steps and zeroes each
    parameter during the backward; its gradient and weights are read in the probe's hook (as
    without the batch), not at the end of the backward, when both have changed."""

    def run(batched):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        with gp.watch(model, every=1, updates=1) as probe:  # the probe's hooks come first
            if not batched:
                probe._grads = None
            opts = {p: torch.optim.SGD([p], lr=0.5) for p in model.parameters()}

            def step(p):
                opts[p].step()
                opts[p].zero_grad()

            for p in model.parameters():
                p.register_post_accumulate_grad_hook(step)
            x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2])
            for _ in range(3):
                nn.functional.cross_entropy(model(x), y).backward()
                probe.step()
        return probe.run.to_pandas()

    a, b = run(True), run(False)
    grads = a[(a["quantity"] == "param_grad") & (a["stat"] == "norm")]
    assert len(grads) == 12 and (grads["value"] > 0).all()  # read before zero_grad()
    assert a.equals(b)
