"""Theory's numbers against independent references: adaptive QUADPACK quadrature (scipy),
a 30-digit mpmath root, and Monte-Carlo networks of width 1024.

None of the references uses gradprobe.theory: scipy.integrate.quad integrates
φ(√q z)² N(z) over the real line on its own adaptive rule (not the package's composite
Gauss–Legendre panels), and scipy.optimize.brentq solves the fixed-point equations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, optimize, special

from gradprobe.theory import chi_1, critical_sigma_w2, q_star, resolve
from gradprobe.theory import kernels as K

from ._mc import exact_single_input

SQRT_2PI = math.sqrt(2 * math.pi)

# numpy versions of the activations, written independently of gradprobe's table
PHI = {
    "tanh": (np.tanh, lambda u: 1 / np.cosh(min(abs(u), 350.0)) ** 2),  # no overflow
    "gelu": (
        lambda u: u * special.ndtr(u),
        lambda u: special.ndtr(u) + u * np.exp(-(u**2) / 2) / SQRT_2PI,
    ),
    "softsign": (lambda u: u / (1 + abs(u)), lambda u: 1 / (1 + abs(u)) ** 2),
    "elu": (lambda u: u if u > 0 else math.expm1(u), lambda u: 1.0 if u > 0 else math.exp(u)),
}


def gauss(f, q: float) -> float:
    """E[f(√q z)], z ~ N(0, 1), by QUADPACK on each half line (split at the kink at 0)."""
    s = math.sqrt(q)

    def g(z):
        return f(s * z) * math.exp(-z * z / 2) / SQRT_2PI

    opts = {"epsabs": 1e-14, "epsrel": 1e-13, "limit": 200}
    return integrate.quad(g, -np.inf, 0, **opts)[0] + integrate.quad(g, 0, np.inf, **opts)[0]


def reference_q_star(phi, w: float, b: float) -> float:
    """Root of w E[φ(√q z)²] + b − q, bracketed between b and the first q where it is < 0."""

    def gap(q):
        return w * gauss(lambda u: phi(u) ** 2, q) + b - q

    hi = max(b, 1e-3) * 2
    while gap(hi) > 0:
        hi *= 2
    return optimize.brentq(gap, max(b, 1e-300) if gap(max(b, 1e-300)) > 0 else 0, hi, xtol=1e-15)


@pytest.mark.parametrize("name", sorted(PHI))
@pytest.mark.parametrize("q", [0.01, 1.0, 30.0])
def test_kernels_match_quadpack(name, q):
    phi, dphi = PHI[name]
    act = resolve(name)
    assert float(K.V(act, q)) == pytest.approx(gauss(lambda u: phi(u) ** 2, q), rel=1e-10)
    assert float(K.D(act, q)) == pytest.approx(gauss(lambda u: dphi(u) ** 2, q), rel=1e-10)
    # dV/dq = E[φ²(z² − 1)]/(2q): the integration-by-parts form, not the one the code uses
    ref = gauss(lambda u: phi(u) ** 2 * (u * u / q - 1), q) / (2 * q)
    assert float(K.dV(act, q)) == pytest.approx(ref, rel=1e-8, abs=1e-14)


def test_correlation_kernel_matches_a_double_quadpack_integral():
    q1, q2, c = 1.2, 0.7, 0.6
    s = math.sqrt(1 - c * c)

    def g(z2, z1):
        u1, u2 = math.sqrt(q1) * z1, math.sqrt(q2) * (c * z1 + s * z2)
        return math.tanh(u1) * math.tanh(u2) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)

    ref = integrate.dblquad(g, -12, 12, -12, 12, epsabs=1e-12, epsrel=1e-11)[0]
    assert float(K.C(resolve("tanh"), q1, q2, c)) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "w", "b"),
    [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.3), ("gelu", 2.0, 0.1), ("softsign", 2.5, 0.1)],
)
def test_q_star_matches_a_quadpack_fixed_point(name, w, b):
    phi, _ = PHI[name]
    ref = reference_q_star(phi, w, b)
    assert q_star(name, w, b) == pytest.approx(ref, rel=1e-10)
    dphi = PHI[name][1]
    assert chi_1(name, w, b) == pytest.approx(w * gauss(lambda u: dphi(u) ** 2, ref), rel=1e-9)


# (σ_b², critical σ_w²) from mpmath at 30 digits: mp.findroot on the pair of equations
# q = σ_w² E[tanh²(√q z)] + σ_b² and σ_w² E[sech⁴(√q z)] = 1, with mp.quad over
# (−∞, 0, ∞). docs/THEORY.md once printed 1.7624 for σ_b² = 0.05: this is what refutes it.
MPMATH_CRITICAL = [(0.05, 1.76095463960673913163), (0.02, 1.54419284034493925508)]


@pytest.mark.parametrize(("b", "w_crit"), MPMATH_CRITICAL)
def test_tanh_critical_line_matches_a_30_digit_root(b, w_crit):
    assert critical_sigma_w2("tanh", b) == pytest.approx(w_crit, rel=1e-11)


def test_tanh_critical_line_matches_a_quadpack_root():
    phi, dphi = PHI["tanh"]

    def log_chi(w, b=0.3):
        return math.log(w * gauss(lambda u: dphi(u) ** 2, reference_q_star(phi, w, b)))

    ref = optimize.brentq(log_chi, 1.5, 4.0, xtol=1e-13)
    assert critical_sigma_w2("tanh", 0.3) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "phi", "w", "b"),
    [
        ("tanh", torch.tanh, 1.5, 0.05),  # ordered
        ("tanh", torch.tanh, 2.5, 0.1),  # chaotic
        ("gelu", F.gelu, 1.8, 0.05),
        ("relu", torch.relu, 2.0, 0.0),  # critical: χ₁ = 1 exactly
    ],
)
def test_chi_1_matches_monte_carlo_networks_of_width_1024(name, phi, w, b):
    """At the fixed point every layer multiplies E[δ²] by χ₁ on the way back. Real Gaussian
    networks (the exact O(n) sampler), width 1024, 400 networks, input scaled so that
    q¹ = q*: each network's ‖δ‖² has a relative std of about √(2/n) = 4.4% per layer, so the
    ratio of the means over 400 networks is within ~0.5%; the tolerance is 4%, for the
    O(1/n) finite-width bias on top."""
    qs = q_star(name, w, b)
    q0 = (qs - b) / w if math.isfinite(qs) and qs > 0 else 1.0
    _, d = exact_single_input(phi, w, b, [1024] * 6, 400, q0=q0, seed=21, grad=True)
    d = d.double().mean(0).numpy()
    measured = d[:-1] / d[1:]  # E[δ^l²] / E[δ^{l+1}²]
    np.testing.assert_allclose(measured, chi_1(name, w, b), rtol=0.04)
