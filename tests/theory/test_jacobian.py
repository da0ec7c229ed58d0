"""Jacobian spectra: measured exactly (torch.func) and by projections, against free probability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.errors import InvalidInputError
from gradprobe.theory import critical_sigma_w2, q_star
from gradprobe.theory.jacobian import jacobian_spectrum, random_mlp, spectrum_prediction

TANH_B = 1e-6  # critical tanh with σ_b² → 0 has q* → 0 (here q* ≈ 0.009)


def _input(act, w, b, n, g):
    """An input whose first layer already sits at q*."""
    qs = q_star(act, w, b)
    q0 = (qs - b) / w if np.isfinite(qs) and qs > 0 else 1.0
    x = torch.randn(n, generator=g)
    return x * (q0 / x.pow(2).mean()).sqrt()


def test_predicted_spreads_in_closed_form():
    # Saxe et al. 2014: a linear orthogonal net is an isometry; Gaussian: Var λ = L
    assert spectrum_prediction("linear", 1.0, 0.0, 10, "orthogonal").var_sq == 0.0
    assert spectrum_prediction("linear", 1.0, 0.0, 10, "gaussian").var_sq == pytest.approx(10)
    # Pennington et al. 2017: critical ReLU, μ₂/μ₁² = 2: Gaussian 2L, orthogonal L
    relu_g = spectrum_prediction("relu", 2.0, 0.0, 10, "gaussian")
    assert relu_g.mean_sq == pytest.approx(1.0) and relu_g.var_sq == pytest.approx(20)
    assert spectrum_prediction("relu", 2.0, 0.0, 10, "orthogonal").var_sq == pytest.approx(10)
    # off criticality the mean is χ₁^L
    assert spectrum_prediction("relu", 1.5, 0.0, 10).mean_sq == pytest.approx(0.75**10)


@pytest.mark.parametrize(
    ("act", "b", "weights"),
    [("relu", 0.0, "gaussian"), ("tanh", TANH_B, "orthogonal"), ("tanh", TANH_B, "gaussian")],
)
@pytest.mark.parametrize("depth", [4, 16])
def test_exact_spectrum_matches_prediction(act, b, weights, depth):
    """Width 256, 4 networks: mean λ within 10%, relative variance within 25%."""
    w = critical_sigma_w2(act, b)
    g = torch.Generator().manual_seed(depth)
    got = []
    for _ in range(4):
        model = random_mlp(act, 256, depth, w, b, weights, generator=g)
        s = jacobian_spectrum(model, _input(act, w, b, 256, g), "exact")
        assert s.method == "exact" and s.singular_values.shape == (256,)
        got.append((s.mean_sq, s.rel_var))
    mean_sq, rel_var = np.mean(got, 0)
    pred = spectrum_prediction(act, w, b, depth, weights)
    assert mean_sq == pytest.approx(pred.mean_sq, rel=0.10)
    assert rel_var == pytest.approx(pred.rel_var, rel=0.25)


def test_spread_grows_with_depth_for_gaussian_relu_not_for_orthogonal_tanh():
    g = torch.Generator().manual_seed(0)
    w_tanh = critical_sigma_w2("tanh", TANH_B)
    relu, tanh = [], []
    for depth in (4, 16, 32):
        m = random_mlp("relu", 256, depth, 2.0, 0.0, "gaussian", generator=g)
        relu.append(jacobian_spectrum(m, _input("relu", 2.0, 0.0, 256, g)).rel_var)
        m = random_mlp("tanh", 256, depth, w_tanh, TANH_B, "orthogonal", generator=g)
        tanh.append(jacobian_spectrum(m, _input("tanh", w_tanh, TANH_B, 256, g)).rel_var)
    assert relu[0] < relu[1] < relu[2] and relu[2] > 40  # ≈ 2L = 64
    assert max(tanh) < 0.05  # dynamical isometry: ≈ 0.02 at depth 32


def test_projections_agree_with_exact_on_the_same_network():
    g = torch.Generator().manual_seed(1)
    model = random_mlp("relu", 256, 8, 2.0, 0.0, "gaussian", generator=g)
    x = _input("relu", 2.0, 0.0, 256, g)
    exact = jacobian_spectrum(model, x, "exact")
    est = jacobian_spectrum(model, x, "projections", probes=64, generator=g)
    assert est.method == "projections" and est.singular_values is None
    assert est.mean_sq == pytest.approx(exact.mean_sq, rel=0.10)
    assert est.var_sq == pytest.approx(exact.var_sq, rel=0.25)


def test_projections_at_width_1024():
    g = torch.Generator().manual_seed(2)
    model = random_mlp("relu", 1024, 8, 2.0, 0.0, "gaussian", generator=g)
    s = jacobian_spectrum(model, _input("relu", 2.0, 0.0, 1024, g), generator=g)
    assert s.method == "projections"  # auto: too wide for the exact route
    assert s.rel_var == pytest.approx(16.0, rel=0.25)


def test_bad_arguments_are_refused():
    model = random_mlp("tanh", 8, 2, 1.0)
    with pytest.raises(InvalidInputError, match="1-D"):
        jacobian_spectrum(model, torch.randn(2, 8))
    with pytest.raises(InvalidInputError, match="method"):
        jacobian_spectrum(model, torch.randn(8), method="svd")
    with pytest.raises(InvalidInputError, match="probes"):
        jacobian_spectrum(model, torch.randn(8), method="projections", probes=1)
    with pytest.raises(InvalidInputError, match="weights"):
        random_mlp("tanh", 8, 2, 1.0, weights="uniform")
    with pytest.raises(InvalidInputError, match="width"):
        random_mlp("tanh", 0, 2, 1.0)
