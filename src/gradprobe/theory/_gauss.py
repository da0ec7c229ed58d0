"""Gaussian expectations by composite Gauss–Legendre quadrature, vectorised over q.

Gauss–Hermite converges slowly when φ has a kink (ReLU at 0): the error of an
n-point rule decays only like n^-1.5. Splitting the real line at the kink and
using Gauss–Legendre panels on a truncated range [-L, L] (the Gaussian tail
beyond L = 10 weighs 1.5e-23) integrates piecewise-smooth φ to ~1e-12.
In the 2-D case the inner panels are split where the second argument crosses
0, so products like φ(u₁)φ(u₂) for ReLU stay exact to rounding.

Large q: φ(√q z) has features of width 1/√q in z (tanh is a step there), so the number
of halvings grows with log2 √q: 1-D expectations stay resolved over the whole float64
range, 2-D ones up to q = MAX_Q2 (beyond it they are refused, not guessed).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidInputError

L = 10.0
_DT = torch.float64
_CHUNK = 1 << 21  # nodes x points evaluated at once (memory bound ~16 MB per tensor)
_FINE = 36  # halvings of the 1-D rule: resolves q up to ~1e16 (the common case)
_MAX_GEO_2D = 140  # halvings of the 2-D rule at most: q up to MAX_Q2
#: Largest variance a 2-D expectation (correlation map, c*, ξ_c) resolves.
MAX_Q2 = 1e80


@functools.cache
def _legendre(m: int) -> tuple[Tensor, Tensor]:
    x, w = np.polynomial.legendre.leggauss(m)
    return torch.tensor(x, dtype=_DT), torch.tensor(w, dtype=_DT)


@functools.cache
def _graded(n_uniform: int, n_geo: int, m: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights on [0, 1], panels graded geometrically towards 0.

    Near 0 the panels halve n_geo times so that φ(√q z) with very large q (a
    feature of width 1/√q around z = 0) is still resolved.
    """
    first = 1.0 / n_uniform
    edges = np.concatenate(
        [[0.0], first * 2.0 ** -np.arange(n_geo, 0, -1), np.linspace(first, 1, n_uniform)]
    )
    x, w = _legendre(m)
    left, width = torch.tensor(edges[:-1], dtype=_DT), torch.tensor(np.diff(edges), dtype=_DT)
    nodes = (left[:, None] + width[:, None] * (x + 1) / 2).reshape(-1)
    return nodes, (width[:, None] * w / 2).reshape(-1)


def halvings(q_max: float) -> int:
    """Halvings the 1-D rule needs so its innermost panel spans <= 1e-3 in u = √q z."""
    if not q_max > 1e16:
        return _FINE
    return max(_FINE, 8 * math.ceil(math.log2(625 * math.sqrt(min(q_max, 1.8e308))) / 8))


def panels(a: Tensor, b: Tensor, fine: bool | int = True) -> tuple[Tensor, Tensor]:
    """Nodes and weights on [a, b] (batched; b < a allowed), graded towards a.

    ``fine``: True (or ``-n``) for the 1-D rule with 36 (or n) halvings; an int n_geo > 0
    for the coarser 2-D rule with n_geo halvings (a feature of width 1/√q needs about
    log2(√q) of them).
    """
    if fine is True:
        x, w = _graded(16, _FINE, 12)
    elif fine < 0:
        x, w = _graded(16, -int(fine), 12)
    else:
        x, w = _graded(6, int(fine), 8)
    span = (b - a)[..., None]
    return a[..., None] + span * x, span.abs() * w


@functools.cache
def standard_nodes(fine: bool | int = True) -> tuple[Tensor, Tensor]:
    """Nodes z and weights w with Σ w f(z) ≈ E[f(z)], z ~ N(0, 1); split at z = 0."""
    zero, lim = torch.zeros((), dtype=_DT), torch.tensor(L, dtype=_DT)
    zl, wl = panels(zero, -lim, fine)
    zr, wr = panels(zero, lim, fine)
    z, w = torch.cat([zl, zr]), torch.cat([wl, wr])
    return z, w * torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)


def _density(z: Tensor) -> Tensor:
    return torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)


def split_nodes(breaks: Tensor, fine: bool | int) -> tuple[Tensor, Tensor]:
    """Nodes and weights (no density) on [−L, L] cut at sorted ``breaks`` (..., m+1).

    The outer pieces are graded towards their inner end, interior pieces towards both
    ends: wherever φ has a kink, the panels are refined on both sides of it.
    """
    m = breaks.shape[-1] - 1
    zs, ws = [], []
    for i in range(m):
        a, b = breaks[..., i], breaks[..., i + 1]
        if i == 0:
            parts = [panels(b, a, fine)]
        elif i == m - 1:
            parts = [panels(a, b, fine)]
        else:
            mid = (a + b) / 2
            parts = [panels(a, mid, fine), panels(b, mid, fine)]
        zs += [z for z, _ in parts]
        ws += [w for _, w in parts]
    return torch.cat(zs, -1), torch.cat(ws, -1)


def _breaks(scaled_kinks: Tensor) -> Tensor:
    """Sorted breakpoints −L, the kinks (clipped), L along the last axis."""
    lim = torch.full((*scaled_kinks.shape[:-1], 1), L, dtype=_DT)
    return torch.sort(torch.cat([-lim, scaled_kinks.clamp(-L, L), lim], -1), -1).values


def _nonzero(kinks) -> Tensor:
    return torch.tensor(sorted({float(k) for k in kinks} - {0.0}), dtype=_DT)


def expect(f, q, with_z: bool = False, kinks=()) -> Tensor:
    """E[f(√q z)] for z ~ N(0, 1), elementwise over the tensor/array ``q`` (q >= 0).

    With ``with_z`` f is called as f(u, z), for integrands such as φ(u)² (z² − 1).
    ``kinks``: points u where f is not smooth besides 0 (always split there).
    """
    q = torch.as_tensor(q, dtype=_DT)
    # q = 0 is taken as the limit q → 0⁺ (ReLU: E[φ′²] = 1/2, not φ′(0)² = 0); any q > 0,
    # even 1e-300, is used as it is (√q z is then still a normal float)
    q = torch.where(q > 0, q, torch.full_like(q, 1e-300))
    flat = q.reshape(-1)
    if flat.numel() and float(flat.max()) > 1e16:  # group by the halvings each q needs
        need = torch.tensor([halvings(v) for v in flat.tolist()])
        out = torch.empty_like(flat)
        for n in need.unique().tolist():
            idx = need == n
            out[idx] = _expect(f, flat[idx], with_z, kinks, -n if n != _FINE else True)
        return out.reshape(q.shape)
    return _expect(f, flat, with_z, kinks, True).reshape(q.shape)


def _expect(f, flat: Tensor, with_z: bool, kinks, fine) -> Tensor:
    ks = _nonzero(kinks)
    z, w = standard_nodes(fine)
    step = max(1, _CHUNK // (z.numel() * (len(ks) + 1)))
    out = []
    for part in flat.split(step):
        root = torch.sqrt(part)[:, None]
        if len(ks):  # per-q nodes: split at 0 and at each kink κ/√q
            zero = torch.zeros_like(root)
            z, w = split_nodes(_breaks(torch.cat([zero, ks / root], -1)), fine)
            w = w * _density(z)
        u = root * z
        vals = f(u, z.expand_as(u)) if with_z else f(u)
        out.append((vals * w).sum(-1))
    return torch.cat(out) if out else flat


def expect2(f, g, q1, q2, c, kinks=()) -> Tensor:
    """E[f(u₁) g(u₂)] with (u₁, u₂) centred Gaussian, Var uᵢ = qᵢ, Corr = c; broadcast.

    u₁ = √q₁ z₁ and u₂ = √q₂ (c z₁ + √(1−c²) z₂). Both integrals are split where
    their argument crosses 0 or one of the ``kinks``, so kinks cost no accuracy.
    """
    q1, q2, c = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=_DT) for v in (q1, q2, c)))
    shape = q1.shape
    q1, q2, c = q1.reshape(-1), q2.reshape(-1), c.clamp(-1, 1).reshape(-1)
    ks = torch.cat([torch.zeros(1, dtype=_DT), _nonzero(kinks)])  # 0 first
    # halvings of the panels near each split: resolve z-scales down to ~1/(60 √q_max)
    q_max = float(torch.maximum(q1.max(), q2.max())) if q1.numel() else 1.0
    if not q_max <= MAX_Q2:
        raise InvalidInputError(
            f"a variance q = {q_max:.3g} is beyond the range where the two-input Gaussian"
            f" expectation (correlation map, c*, ξ_c) is resolved (q <= {MAX_Q2:g}); use"
            " smaller sigma_w2 / sigma_b2 / q0 or an activation with a smaller range"
        )
    n_geo = int(min(max(math.ceil(math.log2(60 * math.sqrt(q_max) + 1)), 6), _MAX_GEO_2D))
    per_point = (standard_nodes(n_geo)[0].numel() * len(ks)) ** 2
    step = max(1, _CHUNK // per_point)
    out = []
    for a, b, r in zip(q1.split(step), q2.split(step), c.split(step), strict=True):
        out.append(_expect2(f, g, a, b, r, ks, n_geo))
    return (torch.cat(out) if out else q1).reshape(shape)


def _expect2(f, g, q1, q2, c, ks, n_geo) -> Tensor:
    r1 = torch.sqrt(q1.clamp_min(1e-200))[:, None]
    r2 = torch.sqrt(q2.clamp_min(1e-200))[:, None, None]
    if len(ks) == 1:
        z1, w1 = standard_nodes(n_geo)
        z1, w1 = z1.expand(len(q1), -1), w1.expand(len(q1), -1)
    else:
        z1, w1 = split_nodes(_breaks(torch.cat([torch.zeros_like(r1), ks[1:] / r1], -1)), n_geo)
        w1 = w1 * _density(z1)  # (P, N1)
    s = torch.sqrt((1 - c**2).clamp_min(0))[:, None, None]
    cc = c[:, None, None]
    # inner split points per (point, z1): c z1 + s z2 = κ/√q₂
    target = torch.cat([torch.zeros_like(r2), ks[1:] / r2], -1)  # (P, 1, K)
    k = (target - cc * z1[..., None]) / s.clamp_min(1e-300)
    k = torch.where(s > 0, k, torch.full_like(k, L))
    z2, w2 = split_nodes(_breaks(k), n_geo)  # (P, N1, N2)
    w2 = w2 * _density(z2)
    u2 = r2 * (cc * z1[..., None] + s * z2)
    inner = (g(u2) * w2).sum(-1)  # (P, N1)
    return (f(r1 * z1) * inner * w1).sum(-1)
