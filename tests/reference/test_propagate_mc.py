"""propagate() against Monte-Carlo networks of width 512.

Most settings use the exact O(n)-per-layer sampler of tests/reference/_mc.py (the law
of a real Gaussian network, n times cheaper), so enough networks are averaged for
the stated tolerances; real n×n matrices are checked for the critical points.

Sample sizes: one network's ‖h^l‖²/n strays from the mean by a relative std that
norm_spread predicts (and test_finite_width checks): ≤ 0.10 in these settings
except critical ReLU, where it reaches 0.79 at layer 50. With 400 networks
(1600 for critical ReLU) the standard error is ≤ 2%, a fifth of the 10% tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradprobe.theory import critical_sigma_w2, propagate

from ._mc import exact_single_input, mlp_forward

PHI = {"tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu}
WIDTH = 512
SETTINGS = [  # (activation, σ_w², σ_b², phase)
    ("tanh", 1.0, 0.05, "ordered"),
    ("tanh", None, 0.05, "critical"),
    ("relu", 1.5, 0.1, "ordered"),
    ("relu", 2.0, 0.0, "critical"),
    ("gelu", 1.5, 0.05, "ordered"),
    ("gelu", None, 0.05, "critical"),
]


def _w(act, w, b):
    return critical_sigma_w2(act, b) if w is None else w


@pytest.mark.parametrize(("act", "w", "b", "phase"), SETTINGS)
def test_forward_variance_within_10_percent_over_50_layers(act, w, b, phase):
    w = _w(act, w, b)
    nets = 1600 if (act, phase) == ("relu", "critical") else 400
    q, _ = exact_single_input(PHI[act], w, b, [WIDTH] * 50, nets, seed=11)
    pred = propagate(act, w, b, depth=50).q
    err = np.abs(q.double().mean(0).numpy() / pred - 1)
    assert err.max() < 0.10, f"layer {err.argmax() + 1}: {err.max():.3f}"


@pytest.mark.parametrize(("act", "w", "b", "phase"), SETTINGS)
def test_gradient_ratio_within_20_percent_over_20_layers(act, w, b, phase):
    w = _w(act, w, b)
    _, d = exact_single_input(PHI[act], w, b, [WIDTH] * 20, 400, seed=12, grad=True)
    pred = propagate(act, w, b, depth=20)
    measured = float((d[:, 0].double() / d[:, -1].double()).mean())
    assert measured / pred.gradient_ratio == pytest.approx(1.0, abs=0.20)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_real_matrices_at_criticality(act):
    """Real 512×512 Gaussian matrices: forward within 10%, gradient ratio over 20 layers
    within 20%. Critical tanh strays by ~8% per network, so 4 networks × 16 inputs cover
    50 layers. Critical ReLU strays by 27% per network already at layer 8 (79% at 50), so
    its forward check is 48 networks × 8 layers (standard error < 4%)."""
    b = 0.05 if act == "tanh" else 0.0
    w = critical_sigma_w2(act, b)
    depth, nets, batch = (50, 4, 16) if act == "tanh" else (8, 48, 4)
    q, _ = mlp_forward(PHI[act], w, b, WIDTH, depth, nets=nets, batch=batch, seed=5)
    err = np.abs(q.double().mean(0).numpy() / propagate(act, w, b, depth).q - 1)
    assert err.max() < 0.10
    nets = 4 if act == "tanh" else 16
    _, d = mlp_forward(PHI[act], w, b, WIDTH, 20, nets=nets, batch=8, seed=6, grad=True)
    measured = float((d[:, 0].double() / d[:, -1].double()).mean())
    assert measured / propagate(act, w, b, 20).gradient_ratio == pytest.approx(1.0, abs=0.20)
