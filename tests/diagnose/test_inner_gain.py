"""rules/depth_profile.py's ``_inner_gain``: a gradient that grows between two layers by more
than the later one's weights can give (‖Wᵀδ‖ ≤ ‖W‖_F‖δ‖) grows in the code between them.

Regression: a diagonal scan h_t = a·h_(t-1) + B x_t whose a is the raw parameter, drawn above
1 (held-out 7's strict xfail ``scan_a_above_1``), read as exploding at scan.b and was told to
re-initialise its Linears with Kaiming; the growth is |a|^T, which no init changes."""

import torch

import gradprobe as gp

from ._training_heldout7 import ScanRegressor, _adding48


def _findings(stable: bool, lo: float, hi: float):
    torch.manual_seed(0)
    model = ScanRegressor(stable, lo, hi)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = _adding48(16, torch.Generator().manual_seed(0))
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(5):
            x, y = next(batches)
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    return gp.diagnose(probe.run)


def test_a_scan_with_a_above_1_is_told_to_keep_a_below_1_not_to_reinitialise_regression():
    f = next(f for f in _findings(False, 1.05, 1.25) if f.kind == "exploding")
    assert f.onset == 0 and f.layer == "scan.b"
    assert f.evidence["inner_parent"] == "scan" and f.evidence["inner_between"] == [
        "scan.c",
        "scan.b",
    ]
    # the gain is beyond what scan.c's weights allow, by the line (100) and more
    assert f.evidence["inner_gain"] > 100 * f.evidence["inner_weight_norm"]
    assert "|a| < 1" in f.remedy.text and "gp.init" not in (f.remedy.code or "")
    assert "exp(-torch.exp(nu))" in f.remedy.code


def test_a_stable_scan_has_no_inner_gain():
    """The LRU's a = exp(-exp(ν)) in (0.8, 0.99): nothing explodes, nothing is said."""
    assert not [f for f in _findings(True, 0.8, 0.99) if f.kind == "exploding"]
