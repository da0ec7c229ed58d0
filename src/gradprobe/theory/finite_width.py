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

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidInputError
from ._activations import resolve
from ._checks import check_q0, check_variances
from .kernels import M4, V

_Q_MAX = 1e75  # the closure squares q twice (E φ⁴ ~ q²; its variance ~ q⁴)


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
    if np.isscalar(widths):
        if depth is None:
            raise InvalidInputError("give depth= when widths is a single number")
        widths = [widths] * int(depth)
    w = np.asarray(widths, dtype=float)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 1):
        raise InvalidInputError(
            f"widths must be a non-empty list of layer widths >= 1 (or one width and depth=),"
            f" got {widths!r}"
        )
    return w


def _second_diff(f, q: float) -> tuple[float, float]:
    """f(q) and f″(q) by a central difference (the quadrature is smooth in q)."""
    if q < 1e-100:  # f is linear in q here: f″ q² is far below rounding (and h² underflows)
        return float(f(np.array([q]))[0]), 0.0
    h = 1e-3 * q  # relative: q may be 1e-100 in a vanishing chain
    vals = f(np.array([q - h, q, q + h]))
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

    Past q = 1e75 (q⁴ would overflow) only the mean is followed, by the mean-field map;
    the std is nan from there on.
    """
    mean, std = np.empty(len(layers)), np.full(len(layers), np.nan)
    mu, var = np.float64(q0), np.float64(0.0)  # moments of s^{l-1}; the input is fixed
    tracked = True
    with torch.no_grad(), np.errstate(over="ignore", invalid="ignore"):
        for l, (act, sigma_w2, sigma_b2, n) in enumerate(layers):
            sigma_w2 = np.float64(sigma_w2)
            qm = sigma_w2 * mu + sigma_b2 if sigma_w2 > 0 else np.float64(sigma_b2)
            mean[l] = qm
            tracked = tracked and bool(qm <= _Q_MAX)
            if not tracked:
                mu = np.float64(V(act, qm)) if np.isfinite(qm) else np.float64(np.inf)
                continue
            qv = sigma_w2**2 * var
            std[l] = np.sqrt(qv + 2 * (qm**2 + qv) / n)  # p = q χ²_n / n given q

            def g(q, n=n, act=act):
                v = V(act, q).numpy()
                return v**2 + (M4(act, q).numpy() - v**2) / n

            v0, v2 = _second_diff(lambda q, act=act: V(act, q).numpy(), float(qm))
            g0, g2 = _second_diff(g, float(qm))
            mu = np.float64(v0 + 0.5 * v2 * qv)
            var = np.float64(max(g0 + 0.5 * g2 * qv - mu**2, 0.0))
    return mean, std
