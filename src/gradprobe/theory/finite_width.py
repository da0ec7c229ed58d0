"""Finite width: how far one network's per-layer mean square strays from the mean-field value.

For one input and W ~ N(0, σ_w²/n), the units of h^l are, given the layer
below, iid N(0, q^l) with q^l = σ_w² s^{l−1} + σ_b² and s = ‖φ(h)‖²/n. So s^l
is a scalar Markov chain: E[s^l | q] = V(q), Var[s^l | q] = (E φ⁴ − V²)/n_l.
Tracking its mean and variance with a second-order (moment) closure gives the
spread across random networks; for ReLU and linear nets the closure is exact
and reduces to Hanin & Rolnick (2018): Var[p^L]/E[p^L]² = Π(1 + κ/n_l) − 1
≈ exp(κ Σ 1/n_l) − 1 with κ = 5 for ReLU at σ_b² = 0 (κ = 2 for a linear chain).
So the spread grows with β = Σ 1/n_l where the length map does not contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidInputError
from ._activations import resolve
from ._checks import check_depth, check_q0, check_variances
from ._gauss import expect
from .kernels import V


@dataclass(frozen=True)
class Spread:
    """Mean and spread across networks of p^l = ‖h^l‖²/n_l (pre-activations), layer by layer."""

    widths: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def rel_std(self) -> np.ndarray:
        """std / mean: the typical relative deviation of one network from the mean field
        (nan where the mean is 0: every network's signal is exactly 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.mean > 0, self.std / self.mean, np.nan)

    @property
    def beta(self) -> np.ndarray:
        """Hanin & Rolnick's β = Σ_{k<=l} 1/n_k, per layer."""
        return np.cumsum(1.0 / self.widths)


def _widths(widths, depth) -> np.ndarray:
    if isinstance(widths, bool) or (
        isinstance(widths, (list, tuple)) and any(isinstance(n, bool) for n in widths)
    ):
        raise InvalidInputError(f"widths must be layer widths (integers >= 1), got {widths!r}")
    if np.isscalar(widths):
        if depth is None:
            raise InvalidInputError("give depth= when widths is a single number")
        widths = [widths] * check_depth(depth)
    try:
        w = np.asarray(widths, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"widths must be a list of layer widths >= 1 (or one width and depth=), got {widths!r}"
        ) from None
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 1):
        raise InvalidInputError(
            f"widths must be a non-empty list of layer widths >= 1 (or one width and depth=),"
            f" got {widths!r}"
        )
    return w


def _scaled_kernels(act, qm: float, c: float):
    """t ↦ V(t·qm)/c and t ↦ E[φ⁴](t·qm)/c², c = V(qm) the layer's output scale: neither a
    vanishing (qm = 1e-300) nor a huge signal (qm = 1e200, or tanh's saturated output at
    q = 1e299) under- or overflows; closed forms where they exist."""
    if act.closed == "relu":
        return (lambda t: t * qm / 2 / c), (lambda t: 1.5 * (t * qm / c) ** 2)
    if act.closed == "linear":
        return (lambda t: t * qm / c), (lambda t: 3 * (t * qm / c) ** 2)
    s = math.sqrt(c)

    def v(t):
        return expect(lambda u: (act(u) / s) ** 2, t * qm, False, act.kinks).numpy()

    def m4(t):
        return expect(lambda u: (act(u) / s) ** 4, t * qm, False, act.kinks).numpy()

    return v, m4


def _moments(f, h: float = 1e-3) -> tuple[float, float]:
    """f(1) and f″(1) by a central difference in t (the quadrature is smooth in q)."""
    vals = np.asarray(f(np.array([1 - h, 1.0, 1 + h])), dtype=float)
    return float(vals[1]), float((vals[0] - 2 * vals[1] + vals[2]) / h**2)


def norm_spread(
    activation, sigma_w2: float, sigma_b2: float, widths, depth: int | None = None, q0: float = 1.0
) -> Spread:
    """Predicted mean and std across random networks of each layer's ‖h^l‖²/n_l.

    ``widths`` lists n_1..n_L (or is one width with ``depth``); ``q0`` = ‖x‖²/n₀.

    >>> s = norm_spread("linear", 1.0, 0.0, widths=100, depth=50)   # the matrix chain
    >>> round(float(s.rel_std[-1]), 2)                               # sqrt(1.02**50 - 1)
    1.3
    """
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    w, q0 = _widths(widths, depth), check_q0(q0)
    mean, std = chain_spread([(act, sigma_w2, sigma_b2, n) for n in w], q0)
    return Spread(w, mean, std)


def chain_spread(layers, q0: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ‖h^l‖²/n_l for layers given as (Activation, σ_w², σ_b², n_l).

    Second-order moment closure in relative terms: s = ‖φ(h)‖²/n has mean μ and relative
    variance ρ = Var s/μ²; q = σ_w² s + σ_b² then has r = Var q/E[q]² = ρ (σ_w² μ/E q)², and
    with t = q/E q (mean 1, variance r): E s' ≈ V(1) + ½V″(1) r, E s'² ≈ g(1) + ½g″(1) r,
    g = V² + (E φ⁴ − V²)/n (kernels in units of the output's scale V(E q)): no under- or
    overflow at any magnitude of the signal.
    """
    mean, std = np.empty(len(layers)), np.empty(len(layers))
    mu, rho = float(q0), 0.0  # the input is fixed: its mean square has no spread
    with torch.no_grad(), np.errstate(over="ignore"):
        for l, (act, sigma_w2, sigma_b2, n) in enumerate(layers):
            signal = sigma_w2 * mu  # E of the weight part of q; inf once the length diverged
            qm = signal + sigma_b2 if signal > 0 else float(sigma_b2)
            mean[l] = qm
            if qm == 0 or not math.isfinite(qm):  # no signal at all, or a diverged one
                std[l], mu, rho = (0.0, 0.0, 0.0) if qm == 0 else (math.nan, math.inf, 0.0)
                continue
            a = 1.0 / (1.0 + sigma_b2 / signal) if signal > 0 else 0.0  # σ_w² μ / E q
            r = rho * a * a
            std[l] = qm * math.sqrt(r + 2 * (1 + r) / n)  # p = q χ²_n/n given q
            c = float(V(act, qm))  # the output's scale
            if not c > 0:  # φ(h) = 0 for every h this layer sees: no signal after it
                mu, rho = 0.0, 0.0
                continue
            v, m4 = _scaled_kernels(act, qm, c)
            v0, v2 = _moments(v)
            g0, g2 = _moments(lambda t, v=v, m4=m4, n=n: v(t) ** 2 + (m4(t) - v(t) ** 2) / n)
            mu_t = v0 + 0.5 * v2 * r  # E s' / c, about 1
            mu = c * mu_t
            rho = max((g0 + 0.5 * g2 * r) / mu_t**2 - 1, 0.0) if mu_t > 0 else 0.0
    return mean, std
