"""Mean-field signal propagation: length and correlation maps, fixed points, χ₁, depth scales.

Random network h^l = W^l φ(h^{l−1}) + b^l with W_ij ~ N(0, σ_w²/n), b_i ~ N(0, σ_b²).
At infinite width (Poole et al. 2016; Schoenholz et al. 2017):

    length map       q^l = σ_w² E[φ(√q^{l−1} z)²] + σ_b²                → fixed point q*
    correlation map  c^l = (σ_w² E[φ(u₁)φ(u₂)] + σ_b²) / q*              → fixed point c*
    χ₁ = σ_w² E[φ′(√q* z)²]   (ordered χ₁ < 1, critical χ₁ = 1, chaotic χ₁ > 1)
    ξ_q = −1 / ln(χ₁ + σ_w² E[φ φ″])     ξ_c = −1 / ln(σ_w² E[φ′(u₁)φ′(u₂)] at c*)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq  # type: ignore[import-untyped]

from ..errors import InvalidInputError
from ._activations import resolve
from ._checks import MAX_VARIANCE, check_array, check_q0, check_variances
from .kernels import C, Cd, D, D_at, V, dV

#: |ln χ₁| at most this is called critical: both depth scales exceed 100 layers.
CRITICAL_TOL = 0.01
_Q_GRID = np.concatenate([[0.0], np.logspace(-12, 10, 441)])
# beyond 1e10 (huge σ_w² with a bounded φ: q* ≈ σ_w² sup φ²), two points a decade
_Q_BIG = np.concatenate([_Q_GRID, np.logspace(10.5, 300, 580)])
_Q_INF = 1e8  # where kernels are evaluated when q* diverges (ReLU with σ_w² > 2)


def length_map(activation, q, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """q ↦ σ_w² E[φ(√q z)²] + σ_b² (Poole et al. 2016, eq. 3), vectorised over q."""
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    q = check_array(q, "q", 0.0, math.inf, "a variance (mean square of the pre-activation)")
    return (sigma_w2 * V(resolve(activation), q) + sigma_b2).numpy()


def q_star(activation, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """The fixed point of the length map reached from q0 (``inf`` when the length diverges).

    Found by bracketing on a log grid of q and Brent's method, not by iterating,
    so it is exact also at criticality where the iteration converges like 1/l.
    """
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    return _q_star(act, sigma_w2, sigma_b2, check_q0(q0))


@functools.lru_cache(maxsize=64)
def _v_on_grid(act, big: bool = False) -> np.ndarray:
    """V on the bracketing grid; independent of (σ_w², σ_b²), so computed once per φ."""
    if big:
        return np.concatenate([_v_on_grid(act), V(act, _Q_BIG[len(_Q_GRID) :]).numpy()])
    return V(act, _Q_GRID).numpy()


@functools.lru_cache(maxsize=512)
def _q_star(act, sigma_w2: float, sigma_b2: float, q0: float) -> float:

    def gap(q, v=None):  # F(q) = map(q) - q, with rounding noise treated as 0
        q = np.asarray(q, float)
        with np.errstate(over="ignore"):  # σ_w² V(q) past 1e308 is +inf: the map grows
            f = sigma_w2 * (V(act, q).numpy() if v is None else v) + sigma_b2 - q
        return np.where(np.abs(f) <= 1e-13 * q + 1e-150, 0.0, f)

    f0 = float(gap(q0))
    if f0 == 0.0:
        return float(q0)
    grid = _Q_GRID
    fg = gap(grid, _v_on_grid(act))
    if q0 >= grid[-1] or (f0 > 0 and fg[-1] > 0):  # the root may lie beyond 1e10
        grid = _Q_BIG
        fg = gap(grid, _v_on_grid(act, True))
    if f0 > 0:  # q grows towards the first root above q0
        above = np.nonzero((grid > q0) & (fg <= 0))[0]
        if above.size == 0:
            return math.inf  # grows past 1e300: it diverges
        hi = grid[above[0]]
        lo = max(q0, grid[above[0] - 1])
    else:  # q shrinks towards the last root below q0
        below = np.nonzero((grid < q0) & (fg >= 0))[0]
        lo = grid[below[-1]]
        if fg[below[-1]] == 0.0:
            return float(lo)
        hi = min(q0, grid[below[-1] + 1])
    return float(brentq(lambda x: float(gap(x)), lo, hi, xtol=1e-300, rtol=1e-13, maxiter=200))


def _eval_point(act, sigma_w2, sigma_b2, qs):
    """(q where kernels are evaluated, the normaliser of the correlation map)."""
    q = _Q_INF if math.isinf(qs) else qs
    return q, sigma_w2 * float(V(act, q)) + sigma_b2


def chi_1(activation, sigma_w2: float, sigma_b2: float, q: float | None = None) -> float:
    """χ₁ = σ_w² E[φ′(√q* z)²]: per-layer growth of gradients and of small perturbations.

    Schoenholz et al. 2017, eq. 5. With ``q`` given, evaluated there instead of at q*.
    """
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    if q is None:
        q = q_star(act, sigma_w2, sigma_b2)
    q = math.inf if q == math.inf else check_q0(q, "q", math.inf)
    return sigma_w2 * float(D_at(act, q)) if sigma_w2 > 0 else 0.0


def correlation_map(activation, c, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """c ↦ (σ_w² E[φ(u₁)φ(u₂)] + σ_b²) / q* at q₁ = q₂ = q* (Poole et al. 2016, eq. 5)."""
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    q, norm = _eval_point(act, sigma_w2, sigma_b2, q_star(act, sigma_w2, sigma_b2))
    c = check_array(c, "c", -1.0, 1.0, "a correlation")
    if norm <= 1e-150:  # q* = 0: the signal vanished, angles are kept (linear regime)
        return c.copy()
    return ((sigma_w2 * C(act, q, q, c) + sigma_b2) / norm).numpy()


def chi_c(activation, c, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """Slope of the correlation map, σ_w² E[φ′(u₁)φ′(u₂)]; χ_c(1) = χ₁ (Price's theorem)."""
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    q, norm = _eval_point(act, sigma_w2, sigma_b2, q_star(act, sigma_w2, sigma_b2))
    c = check_array(c, "c", -1.0, 1.0, "a correlation")
    if norm <= 1e-150:  # q* = 0: χ_c = χ₁ = σ_w² φ′(0)²
        return np.full_like(c, sigma_w2 * float(D(act, 0.0)))
    if np.all(c == 1.0):  # E[φ′(u)²]: the 1-D kernel, no 2-D quadrature needed
        return np.full_like(c, sigma_w2 * float(D(act, q)) * q / norm)
    return (sigma_w2 * Cd(act, q, q, c) * q / norm).numpy()


def c_star(activation, sigma_w2: float, sigma_b2: float) -> float:
    """Stable fixed point of the correlation map: 1 when χ₁ <= 1, else the root below 1."""
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    return _c_star(act, sigma_w2, sigma_b2)


@functools.lru_cache(maxsize=256)
def _c_star(act, sigma_w2: float, sigma_b2: float) -> float:
    if float(chi_c(act, 1.0, sigma_w2, sigma_b2)) <= 1.0 + 1e-12:
        return 1.0
    top = 1.0 - 1e-9

    def gap(c):
        return float(correlation_map(act, c, sigma_w2, sigma_b2)) - c

    # χ_c(1) > 1, so just below 1 the map is under the diagonal; scan down for the first
    # point where it is above again: the stable root lies in between (c = −1 can be an
    # unstable root too, for odd φ without bias). The scan starts at 1 − 1e-3, where the
    # gap (≈ 1e-3 (χ₁ − 1)) is far above the quadrature's error.
    grid = np.linspace(1 - 1e-3, -1.0, 21)
    gaps = correlation_map(act, grid, sigma_w2, sigma_b2) - grid
    if not np.isfinite(gaps).all():
        return math.nan  # the kernels overflow (φ = exp at a diverged q*): no c* to give
    if gaps[0] >= 0:  # root within 1e-3 of 1 (χ₁ barely above 1)
        return float(brentq(gap, grid[0], top, xtol=1e-12)) if gap(top) < 0 else 1.0
    cross = np.nonzero(gaps >= 0)[0]
    if cross.size == 0:
        return -1.0
    j = cross[0]
    if gaps[j] == 0.0:
        return float(grid[j])
    root = float(brentq(gap, grid[j], grid[j - 1], xtol=1e-11))
    if abs(root) < 1e-9 and abs(gap(0.0)) <= 1e-13:
        return 0.0  # odd φ without bias: exactly 0, not brentq's last digits around it
    return root


def _depth(slope: float) -> float:
    """−1/ln(slope); ∞ where the slope is 1 to rounding (|ln| <= 1e-12: over 1e12 layers)."""
    if not slope > 0:
        return 0.0
    log = math.log(slope)
    return -1.0 / log if log < -1e-12 else math.inf


def xi_q(activation, sigma_w2: float, sigma_b2: float) -> float:
    """ξ_q = −1 / ln(σ_w² dV/dq at q*): layers over which q^l forgets q⁰ (Schoenholz eq. 8)."""
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    qs = q_star(act, sigma_w2, sigma_b2)
    return math.inf if math.isinf(qs) else _depth(sigma_w2 * float(dV(act, qs)))


def xi_c(activation, sigma_w2: float, sigma_b2: float) -> float:
    """ξ_c = −1 / ln χ_c(c*): layers over which two inputs' correlation is remembered (eq. 9)."""
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    if math.isinf(q_star(act, sigma_w2, sigma_b2)):
        return math.inf  # the length diverges: no fixed point to relax to
    return _depth(float(chi_c(act, c_star(act, sigma_w2, sigma_b2), sigma_w2, sigma_b2)))


def critical_sigma_w2(activation, sigma_b2: float = 0.0) -> float:
    """σ_w² on the critical line χ₁(σ_w², σ_b²) = 1 (tanh: 1 at σ_b² = 0; ReLU: 2)."""
    act = resolve(activation)
    _, sigma_b2 = check_variances(1.0, sigma_b2)

    def log_chi(w):
        return math.log(max(chi_1(act, w, sigma_b2), 1e-300))

    lo, hi = 1e-4, 1.0
    while log_chi(hi) < 0:  # a large σ_b² pushes the line out: tanh's σ_w² ≈ 1.9 σ_b
        lo, hi = hi, hi * 4
        if hi > MAX_VARIANCE:
            raise InvalidInputError(
                f"activation {act.name!r} has no critical point for sigma_b2={sigma_b2}:"
                f" chi_1 < 1 for every sigma_w2 up to {MAX_VARIANCE:g} (is its derivative"
                " zero?)"
            )
    if log_chi(lo) > 0:
        return math.nan  # chaotic for every σ_w² (possible only for odd choices of φ)
    return float(brentq(log_chi, lo, hi, xtol=1e-13, rtol=1e-12))


@dataclass(frozen=True)
class MeanField:
    """The mean-field summary of one (activation, σ_w², σ_b²)."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    c_star: float
    chi_1: float
    xi_q: float
    xi_c: float

    @property
    def phase(self) -> str:
        """ "ordered" (χ₁ < 1), "chaotic" (χ₁ > 1) or "critical" (|ln χ₁| <= CRITICAL_TOL)."""
        log_chi = math.log(self.chi_1) if self.chi_1 > 0 else -math.inf
        if abs(log_chi) <= CRITICAL_TOL:
            return "critical"
        return "ordered" if log_chi < 0 else "chaotic"


def mean_field(activation, sigma_w2: float, sigma_b2: float) -> MeanField:
    """q*, c*, χ₁, ξ_q, ξ_c and the phase for one activation and (σ_w², σ_b²)."""
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    with torch.no_grad():
        return MeanField(
            act.name,
            sigma_w2,
            sigma_b2,
            q_star(act, sigma_w2, sigma_b2),
            c_star(act, sigma_w2, sigma_b2),
            chi_1(act, sigma_w2, sigma_b2),
            xi_q(act, sigma_w2, sigma_b2),
            xi_c(act, sigma_w2, sigma_b2),
        )
