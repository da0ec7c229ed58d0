"""Gaussian kernels of an activation: the expectations mean-field theory is made of.

For u ~ N(0, q) and (u₁, u₂) centred Gaussian with variances q₁, q₂ and
correlation c:

    V(q)  = E[φ(u)²]            D(q)  = E[φ′(u)²]
    C(q₁, q₂, c) = E[φ(u₁)φ(u₂)]   C′(q₁, q₂, c) = E[φ′(u₁)φ′(u₂)]

Closed forms: ReLU (arc-cosine kernel, Cho & Saul 2009), erf (Williams 1997),
linear. Everything else by quadrature (:mod:`._gauss`). All functions take and
return float64 tensors and broadcast over their arguments.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._activations import Activation
from ._gauss import expect, expect2

_DT = torch.float64


def _t(x) -> Tensor:
    return torch.as_tensor(x, dtype=_DT)


def V(act: Activation, q) -> Tensor:
    """E[φ(√q z)²], the length map before scaling (Poole et al. 2016, eq. 3)."""
    q = _t(q)
    if act.closed == "relu":
        return q / 2
    if act.closed == "linear":
        return q.clone()
    if act.closed == "erf":
        return 2 / math.pi * torch.asin(2 * q / (1 + 2 * q))
    return _at_zero(act, q, 2, expect(lambda u: act(u) ** 2, q, kinks=act.kinks))


def _at_zero(act: Activation, q: Tensor, power: int, out: Tensor) -> Tensor:
    """E[φ(√q z)^k] at q = 0 is φ(0)^k exactly (φ is continuous; only φ′ has kinks)."""
    zero = q == 0
    if not zero.any():
        return out
    return torch.where(zero, act(torch.zeros((), dtype=_DT)) ** power, out)


def D(act: Activation, q) -> Tensor:
    """E[φ′(√q z)²]; χ₁ = σ_w² D(q*) (Schoenholz et al. 2017, eq. 5)."""
    q = _t(q)
    if act.closed == "relu":
        return torch.full_like(q, 0.5)
    if act.closed == "linear":
        return torch.ones_like(q)
    if act.closed == "erf":
        return 4 / math.pi / torch.sqrt(1 + 4 * q)
    return expect(lambda u: act.d(u) ** 2, q, kinks=act.kinks)


def D_at(act: Activation, q) -> Tensor:
    """D(q), with q = ∞ (a diverged length) taken as the limit q → ∞.

    The limit is D(1e300) when D has settled there (D(1e150) equal to 1e-6: ReLU-like φ
    with φ′ → constants), ∞ when D still grows (φ = x², exp) and 0 when it still shrinks.
    """
    q = _t(q)
    inf = torch.isinf(q)
    if not inf.any():
        return D(act, q)
    out = D(act, torch.where(inf, torch.ones_like(q), q))
    return torch.where(inf, torch.full_like(q, _d_limit(act)), out)


def _d_limit(act: Activation) -> float:
    far, farther = (float(v) for v in D(act, torch.tensor([1e150, 1e300], dtype=_DT)))
    if not math.isfinite(farther) or farther > far * (1 + 1e-6):
        return math.inf
    return 0.0 if farther < far * (1 - 1e-6) else farther


def M4(act: Activation, q) -> Tensor:
    """E[φ(√q z)⁴], for the conditional variance of a layer's mean square at finite width."""
    q = _t(q)
    if act.closed == "relu":
        return 1.5 * q**2
    if act.closed == "linear":
        return 3 * q**2
    return _at_zero(act, q, 4, expect(lambda u: act(u) ** 4, q, kinks=act.kinks))


def D2(act: Activation, q) -> Tensor:
    """E[φ′(√q z)⁴], the second moment of the diagonal Jacobian factor."""
    q = _t(q)
    if act.closed in ("relu", "linear"):
        return D(act, q)  # φ′ ∈ {0, 1}
    return expect(lambda u: act.d(u) ** 4, q, kinks=act.kinks)


def dV(act: Activation, q) -> Tensor:
    """dV/dq = E[φ(u) φ′(u) z] / √q, u = √q z (differentiate under E; no φ″ needed).

    σ_w² dV/dq(q*) = χ₁ + σ_w² E[φ φ″] is the slope of the length map whose log
    gives ξ_q (Schoenholz et al. 2017, eq. 8). At q = 0 it is φ′(0)² (φ(0) = 0). The
    equal form E[φ² (z² − 1)]/(2q) cancels to rounding noise for a saturated φ at large q.
    """
    q = _t(q)
    if act.closed in ("relu", "linear"):
        return V(act, torch.ones_like(q))
    if act.closed == "erf":
        return 4 / math.pi / ((1 + 2 * q) * torch.sqrt(1 + 4 * q))
    small = q < 1e-12
    safe = torch.where(small, torch.ones_like(q), q)
    out = expect(lambda u, z: act(u) * act.d(u) * z, safe, True, act.kinks) / torch.sqrt(safe)
    if small.any():
        at0 = act.d(torch.zeros((), dtype=_DT)) ** 2
        out = torch.where(small, at0.expand_as(out), out)
    return out


def C(act: Activation, q1, q2, c) -> Tensor:
    """E[φ(u₁)φ(u₂)], the correlation map's numerator (Poole et al. 2016, eq. 5)."""
    q1, q2, c = _t(q1), _t(q2), _t(c).clamp(-1, 1)
    if act.closed == "relu":
        theta = torch.acos(c)
        return torch.sqrt(q1 * q2) / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * c)
    if act.closed == "linear":
        return c * torch.sqrt(q1 * q2)
    if act.closed == "erf":
        arg = 2 * c * torch.sqrt(q1 * q2) / torch.sqrt((1 + 2 * q1) * (1 + 2 * q2))
        return 2 / math.pi * torch.asin(arg)
    return expect2(act.fn, act.fn, q1, q2, c, act.kinks)


def Cd(act: Activation, q1, q2, c) -> Tensor:
    """E[φ′(u₁)φ′(u₂)]: σ_w² times it is the slope χ_c of the correlation map."""
    q1, q2, c = _t(q1), _t(q2), _t(c).clamp(-1, 1)
    if act.closed == "relu":
        return (math.pi - torch.acos(c)) / (2 * math.pi) + 0 * (q1 + q2)
    if act.closed == "linear":
        return torch.ones_like(c + q1 + q2)
    if act.closed == "erf":
        det = (1 + 2 * q1) * (1 + 2 * q2) - 4 * c**2 * q1 * q2
        return 4 / math.pi / torch.sqrt(det)
    return expect2(act.d, act.d, q1, q2, c, act.kinks)
