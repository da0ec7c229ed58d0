"""The phase diagram over a (σ_w², σ_b²) grid: q after depth L, χ₁, ξ_c and the critical line.

Vectorised for large grids: V(q) = E[φ(√q z)²] and D(q) = E[φ′(√q z)²] do not
depend on (σ_w², σ_b²), so they are tabulated once on a log grid of q and the
length map is iterated by interpolation. In the chaotic phase c* comes from the
Mehler expansion E[φ(u₁)φ(u₂)] = Σ_k c^k E[φ(√q z) He_k(z)]² / k!, tabulated the
same way (exact kernels for ReLU, erf, linear).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidInputError
from ._activations import resolve
from ._checks import check_depth, check_q0
from ._gauss import standard_nodes
from .kernels import C, D, V

_LQ = np.linspace(math.log(1e-12), math.log(1e6), 4801)  # log q table
_LQ_HERMITE = np.linspace(math.log(1e-8), math.log(1e4), 1201)
_K = 48  # Hermite terms
#: Largest σ_w², σ_b², q0 on a grid: q stays inside the tables (q* ≈ σ_w² for a bounded φ).
PHASE_MAX = 1e5


@dataclass(frozen=True)
class PhaseDiagram:
    """Arrays of shape (len(sigma_b2), len(sigma_w2)); χ₁ and ξ_c at the fixed point q*,
    ``q`` = q^L and the gradient ratio after ``depth`` layers from q⁰."""

    activation: str
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    depth: int
    q_star: np.ndarray
    q: np.ndarray
    chi_1: np.ndarray
    xi_c: np.ndarray
    log_gradient_ratio: np.ndarray  # ln Π_{l<L} χ(q^l): ln E[δ¹²]/E[δ^L²]

    def critical_line(self) -> np.ndarray:
        """σ_w² where χ₁ crosses 1, per σ_b² (linear interpolation on the grid; nan if none)."""
        out = np.full(len(self.sigma_b2), math.nan)
        with np.errstate(divide="ignore"):  # χ₁ = 0 (σ_w² = 0, or φ′ = 0): ln = −∞, ordered
            logs = np.log(self.chi_1)
        for i, row in enumerate(logs):
            cross = np.nonzero((row[:-1] < 0) & (row[1:] >= 0))[0]
            if cross.size:
                j = cross[0]
                t = -row[j] / (row[j + 1] - row[j])
                out[i] = self.sigma_w2[j] + t * (self.sigma_w2[j + 1] - self.sigma_w2[j])
        return out


def _table(f, act, lq):
    with torch.no_grad():
        return f(act, np.exp(lq)).numpy()


def _hermite_table(act) -> np.ndarray:
    """b_k(q) = E[φ(√q z) He_k(z)]² / k! on the coarse q grid, shape (len(q), K)."""
    z, wz = standard_nodes()
    he = [torch.ones_like(z), z]
    for k in range(1, _K - 1):  # probabilists' Hermite: He_{k+1} = z He_k − k He_{k−1}
        he.append(z * he[k] - k * he[k - 1])
    basis = torch.stack(he) * wz  # (K, N)
    q = torch.as_tensor(np.exp(_LQ_HERMITE))
    with torch.no_grad():
        a = (act(torch.sqrt(q)[:, None] * z) @ basis.T).numpy()  # (len(q), K)
    return a**2 / np.array([math.factorial(k) for k in range(_K)], dtype=float)


def _q_star_grid(lv: np.ndarray, w: np.ndarray, b: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Vectorised q_star: the root of σ_w² V(q) + σ_b² − q reached from q1 (per point).

    A scan over every 24th table point brackets the root (first one above q0 when the
    map pushes q up, last one below q0 when it pulls q down); bisection refines it.
    """
    lq, lvc = _LQ[::24], lv[::24]
    qk, vk = np.exp(lq), np.exp(lvc)
    w, b, q0 = w.reshape(-1), b.reshape(-1), q1.reshape(-1)
    f = w[:, None] * vk + b[:, None] - qk  # (points, coarse table)
    lq0 = np.log(np.maximum(q0, 1e-300))
    f0 = w * np.exp(np.interp(np.maximum(lq0, _LQ[0]), _LQ, lv)) + b - q0
    up, down = (qk > q0[:, None]) & (f <= 0), (qk < q0[:, None]) & (f >= 0)
    j_up = np.where(up.any(1), up.argmax(1), -1)
    j_dn = np.where(down.any(1), len(qk) - 1 - down[:, ::-1].argmax(1), -1)
    j = np.where(f0 > 0, j_up, j_dn)
    k = np.where(f0 > 0, j - 1, j + 1).clip(0, len(qk) - 1)
    lo = np.minimum(lq[j], lq[k])
    hi = np.maximum(lq[j], lq[k])
    lo = np.where(f0 > 0, np.maximum(lo, lq0), lo)
    hi = np.where(f0 > 0, hi, np.minimum(hi, lq0))
    for _ in range(40):  # F > 0 below the stable root, < 0 above it
        mid = (lo + hi) / 2
        pos = w * np.exp(np.interp(mid, _LQ, lv)) + b - np.exp(mid) > 0
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
    root = np.exp((lo + hi) / 2)
    out = np.where(j < 0, np.where(f0 > 0, np.inf, 0.0), root)
    return np.where(f0 == 0, q0, out).reshape(-1)


def _c_star(act, q, w, b, iters: int = 46):
    """Vectorised bisection for the root c* < 1 of the correlation map, and χ_c there."""
    if act.closed is not None:
        cmap = lambda c: (w * C(act, q, q, c).numpy() + b) / q  # noqa: E731
    else:
        table = _hermite_table(act)
        coef = np.stack([np.interp(np.log(q), _LQ_HERMITE, table[:, k]) for k in range(_K)])

        def cmap(c):  # Horner: Σ_k coef_k c^k, coef rows contiguous per k
            acc = coef[-1].copy()
            for k in range(_K - 2, -1, -1):
                acc *= c
                acc += coef[k]
            return (w * acc + b) / q

    lo, hi = -np.ones_like(q), np.full_like(q, 1 - 1e-9)
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = cmap(mid) - mid >= 0
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    c = (lo + hi) / 2
    h = 1e-6
    slope = (cmap(np.minimum(c + h, 1.0)) - cmap(c - h)) / (np.minimum(c + h, 1.0) - (c - h))
    return c, slope


def _grid(values, name: str) -> np.ndarray:
    try:
        return np.asarray(values, float)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{name} must be a 1-D array of numbers, got {values!r}") from err


def phase_diagram(
    activation,
    sigma_w2=None,
    sigma_b2=None,
    depth: int = 1000,
    q0: float = 1.0,
) -> PhaseDiagram:
    """χ₁, ξ_c, q^L and the gradient ratio across ``depth`` over a (σ_w², σ_b²) grid.

    ``q0`` is the input's mean square (as in :func:`propagate`); q* is the fixed point
    reached from the first layer's q¹ = σ_w² q0 + σ_b². Defaults: 200 × 200 points,
    σ_w² in [0.5, 4], σ_b² in [0, 0.5]. The critical line is exact to about one grid step.
    """
    act = resolve(activation)
    depth, q0 = check_depth(depth), check_q0(q0, limit=PHASE_MAX)
    sw = np.linspace(0.5, 4.0, 200) if sigma_w2 is None else _grid(sigma_w2, "sigma_w2")
    sb = np.linspace(0.0, 0.5, 200) if sigma_b2 is None else _grid(sigma_b2, "sigma_b2")
    if sw.ndim != 1 or sb.ndim != 1 or not (sw.size and sb.size):
        raise InvalidInputError("sigma_w2 and sigma_b2 must be non-empty 1-D arrays of variances")
    for name, a in (("sigma_w2", sw), ("sigma_b2", sb)):
        if not (np.isfinite(a).all() and (a >= 0).all() and (a <= PHASE_MAX).all()):
            raise InvalidInputError(
                f"{name} must hold finite variances in [0, {PHASE_MAX:g}] (the range of the"
                f" diagram's q tables), got {a.min()} .. {a.max()}; for a single point beyond"
                " it use gp.theory.mean_field and propagate"
            )
    w, b = np.meshgrid(sw, sb)
    lv = np.log(np.maximum(_table(V, act, _LQ), 1e-300))
    dv = _table(D, act, _LQ)
    qmax = math.exp(_LQ[-1])

    def interp(table, q):
        return np.interp(np.log(np.clip(q, 1e-12, qmax)), _LQ, table)

    step = _LQ[1] - _LQ[0]
    ldv = np.log(np.maximum(dv, 1e-300))
    dlv, dldv = np.diff(lv), np.diff(ldv)
    q = w * q0 + b
    log_grad = np.zeros_like(q)  # Σ ln E[φ′²](q^l); + (L−1) ln σ_w² at the end
    for _ in range(depth - 1):  # uniform log grid: index directly instead of searching
        x = (np.log(np.clip(q, 1e-12, qmax)) - _LQ[0]) / step
        i = np.minimum(x.astype(np.intp), len(_LQ) - 2)
        t = x - i
        log_grad += ldv[i] + t * dldv[i]
        v = np.exp(lv[i] + t * dlv[i])
        small = q < 1e-12  # below the table V(q) ≈ φ′(0)² q: the signal is dying
        q = np.where(small, q * dv[0], v) * w + b
        np.minimum(q, 10 * qmax, out=q)  # diverging lengths are capped, not overflowed
    with np.errstate(divide="ignore"):
        log_grad += (depth - 1) * np.log(w)
    qs = _q_star_grid(lv, w, b, w * q0 + b).reshape(w.shape)  # from the first layer's q
    finite = np.isfinite(qs)
    chi = w * interp(dv, np.where(finite, qs, qmax))
    xi = np.where(chi < 1, -1 / np.log(np.maximum(chi, 1e-300)), np.inf)
    chaotic = (chi > 1) & (qs > 1e-12) & finite
    if chaotic.any():
        _, slope = _c_star(act, qs[chaotic], w[chaotic], b[chaotic])
        xi[chaotic] = np.where(slope < 1, -1 / np.log(np.clip(slope, 1e-300, 1 - 1e-15)), np.inf)
    q = np.where(q >= qmax, np.inf, q)
    return PhaseDiagram(act.name, sw, sb, depth, qs, q, chi, xi, log_grad)


def __getattr__(name: str):
    if name == "plot_phase_diagram":  # moved: theory draws nothing
        raise AttributeError(
            "plot_phase_diagram moved to gradprobe.report.figures.phase (theory computes,"
            " report draws): from gradprobe.report.figures.phase import plot_phase_diagram"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
