"""Regressions: a model cast whole to bfloat16 or float16 (no float32 copy of its weights),
whose optimizer's steps are under half the format's spacing and round to nothing."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp


def _train(dtype, opt, lr, steps=60, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)]
    model = nn.Sequential(*layers).to(dtype)
    opt = (torch.optim.Adam if opt == "adam" else torch.optim.SGD)(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(32, 10, generator=g)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(steps):
            x = torch.randn(64, 32, generator=g)
            loss = F.cross_entropy(model(x.to(dtype)).float(), (x @ w).argmax(1))
            loss.backward(), opt.step(), opt.zero_grad()
            probe.step(loss=loss)
    return probe.run, list(gp.diagnose(probe.run))


def _rounded(found):
    return [f for f in found if str(f.evidence.get("updated", "")).startswith("rounded away")]


@pytest.mark.parametrize(
    "dtype, opt, lr, spacing",
    [(torch.bfloat16, "adam", 1e-5, "2⁻⁸"), (torch.bfloat16, "sgd", 1e-5, "2⁻⁸"),
     (torch.float16, "sgd", 1e-3, "2⁻¹¹")],
)  # fmt: skip
def test_bf16_weights_whose_small_updates_round_away_were_not_named_regression(
    dtype, opt, lr, spacing
):
    """Adam 1e-5 on bfloat16 weights: ‖Δw‖/‖w‖ 6.5e-6 a step against the 6.5e-5 the same
    model moves in float32 (most steps round to nothing), and the diagnosis said only "the
    learning rate is too low"; SGD 1e-5: every update exactly 0, and it said "no parameter
    is updated: build the optimizer over this model's parameters". Now small_updates names
    the dtype, the measured ratio next to the format's spacing, and the remedy: float32
    weights under autocast (or a larger lr, stochastic rounding)."""
    name = str(dtype).removeprefix("torch.")
    run, found = _train(dtype, opt, lr)
    assert run.meta["param_dtypes"]["0.weight"] == name
    (f,) = _rounded(found)
    assert f.kind == "small_updates" and f.evidence["dtype"] == name
    assert f.evidence["median_update_ratio"] < f.evidence["threshold"]
    assert f.evidence["relative_spacing"] == torch.finfo(dtype).eps / 2
    assert spacing in f.message and f.evidence["weights_under"] == 3
    assert "model.float()" in f.remedy.code and f"dtype=torch.{name}" in f.remedy.code
    assert "device_type='cpu'" in f.remedy.code and "stochastic rounding" in f.remedy.text
    assert not [x for x in found if x.evidence.get("updated") == "never"]
    s = next(x for x in found if x.kind == "not_learning")
    assert (s.causes[0].kind, s.causes[0].layer) == ("small_updates", f.layer)
    assert f"{name} weights whose steps round away" in s.causes[0].summary
    assert "model.float()" in s.remedy.code


def test_bf16_weights_that_move_or_float32_weights_have_no_rounding_finding():
    """bfloat16 weights under Adam 1e-3 move ~8e-3 of their norm a step (over 2⁻⁹) and learn;
    float32 weights at Adam 1e-5 are a learning rate too low, not rounding."""
    run, found = _train(torch.bfloat16, "adam", 1e-3)
    assert not _rounded(found)
    run, found = _train(torch.float32, "adam", 1e-5)
    assert "param_dtypes" not in run.meta and not _rounded(found)
    s = next(x for x in found if x.kind == "not_learning")
    assert "model.float()" not in (s.remedy.code or "")


def test_the_sparse_rows_of_a_bf16_embedding_are_not_rounding():
    """An embedding's rows outside the batch get no step from SGD by design: not judged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(1000, 16), nn.Flatten(), nn.Linear(64, 4))
    model = model.to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    g = torch.Generator().manual_seed(0)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(40):
            x = torch.randint(0, 1000, (8, 4), generator=g)
            loss = F.cross_entropy(model(x).float(), x[:, 0] % 4)
            loss.backward(), opt.step(), opt.zero_grad(), probe.step(loss=loss)
    found = gp.diagnose(probe.run)
    assert not [f for f in _rounded(found) if "0.weight" in f.evidence["per_weight"]]
