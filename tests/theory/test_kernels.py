"""Closed-form kernels (ReLU arc-cosine, erf, linear) against the generic quadrature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.theory import kernels as K
from gradprobe.theory._activations import Activation, resolve
from gradprobe.theory._gauss import expect

# the same functions wrapped as plain callables: resolve() cannot recognise them, so every
# expectation goes through the numerical path
GENERIC = {
    "relu": Activation("relu?", lambda x: torch.relu(x)),
    "erf": Activation("erf?", lambda x: torch.erf(x)),
    "linear": Activation("linear?", lambda x: 1.0 * x),
}
Q = np.array([0.0, 1e-6, 0.03, 0.5, 1.0, 3.0, 50.0, 1e4])
QS = np.array([0.01, 2.0])
CS = np.array([-1.0, -0.5, 0.3, 0.95, 0.9999, 1.0])


@pytest.mark.parametrize("name", sorted(GENERIC))
@pytest.mark.parametrize("kernel", ["V", "D", "dV"])
def test_one_dimensional_kernels_match_quadrature(name, kernel):
    closed, generic = resolve(name), GENERIC[name]
    assert closed.closed == name and generic.closed is None
    q = Q[1:] if kernel == "dV" else Q
    f = getattr(K, kernel)
    np.testing.assert_allclose(f(closed, q), f(generic, q), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["relu", "erf"])
@pytest.mark.parametrize("kernel", ["C", "Cd"])
def test_two_dimensional_kernels_match_quadrature(name, kernel):
    closed, generic = resolve(name), GENERIC[name]
    f = getattr(K, kernel)
    q1, q2, c = np.meshgrid(QS, QS[::-1], CS, indexing="ij")
    np.testing.assert_allclose(f(closed, q1, q2, c), f(generic, q1, q2, c), rtol=1e-6, atol=1e-9)


def test_relu_fourth_moment_and_kernel_diagonal():
    relu = GENERIC["relu"]
    np.testing.assert_allclose(K.M4(relu, QS), 1.5 * QS**2, rtol=1e-9)
    # C(q, q, 1) = V(q) and Cd(q, q, 1) = D(q) for any φ (u₁ = u₂)
    for act in (resolve("tanh"), resolve("gelu")):
        np.testing.assert_allclose(K.C(act, QS, QS, 1.0), K.V(act, QS), rtol=1e-8)
        np.testing.assert_allclose(K.Cd(act, QS, QS, 1.0), K.D(act, QS), rtol=1e-8)


def test_quadrature_resolves_very_large_and_tiny_variances():
    # 1 − tanh(√q z)² = sech²(√q z), a spike of width 1e-4 in z at q = 1e8:
    # E[sech²] = N(0) ∫ sech²(√q z) dz + O(q^-3/2) = 2 / √(2π q)
    exact = 1 - 2 / np.sqrt(2 * np.pi * 1e8)
    assert float(expect(lambda u: torch.tanh(u) ** 2, 1e8)) == pytest.approx(exact, abs=1e-8)
    # small q: tanh is linear, V(q) = q − 2q² + O(q³)
    q = 1e-5
    assert float(K.V(resolve("tanh"), q)) == pytest.approx(q - 2 * q**2, rel=1e-9)


def test_kinks_away_from_zero_are_split_exactly():
    """hardtanh has kinks at ±1: V(q) = q(2Φ(a) − 1 − 2a N(a)) + 2(1 − Φ(a)), a = 1/√q, and
    D(q) = 2Φ(a) − 1 (regression: splitting only at 0 left errors of 1e-4)."""
    from scipy.stats import norm

    act = resolve("hardtanh")
    q = np.array([0.04, 0.4, 1.0, 4.0, 100.0])
    a = 1 / np.sqrt(q)
    v = q * (2 * norm.cdf(a) - 1 - 2 * a * norm.pdf(a)) + 2 * norm.sf(a)
    np.testing.assert_allclose(K.V(act, q), v, rtol=1e-10)
    np.testing.assert_allclose(K.D(act, q), 2 * norm.cdf(a) - 1, rtol=1e-10)
    # 2-D, at c = 1 the kernels reduce to the 1-D ones
    np.testing.assert_allclose(K.C(act, q, q, 1.0), v, rtol=1e-8)
