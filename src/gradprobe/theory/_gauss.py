"""Gaussian expectations by composite Gauss–Legendre quadrature, vectorised over q.

Gauss–Hermite converges slowly when φ has a kink (ReLU at 0): the error of an
n-point rule decays only like n^-1.5. Splitting the real line at the kink and
using Gauss–Legendre panels on a truncated range [-L, L] (the Gaussian tail
beyond L = 10 weighs 1.5e-23) integrates piecewise-smooth φ to ~1e-12.
In the 2-D case the inner panels are split where the second argument crosses
0, so products like φ(u₁)φ(u₂) for ReLU stay exact to rounding.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

L = 10.0
_DT = torch.float64
_CHUNK = 1 << 21  # nodes x points evaluated at once (memory bound ~16 MB per tensor)


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


def panels(a: Tensor, b: Tensor, fine: bool | int = True) -> tuple[Tensor, Tensor]:
    """Nodes and weights on [a, b] (batched; b < a allowed), graded towards a.

    ``fine``: True for the 1-D rule; an int n_geo for the coarser 2-D rule with n_geo
    halvings (a feature of width 1/√q needs about log2(√q) of them).
    """
    x, w = _graded(16, 36, 12) if fine is True else _graded(6, int(fine), 8)
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


def expect(f, q, with_z: bool = False) -> Tensor:
    """E[f(√q z)] for z ~ N(0, 1), elementwise over the tensor/array ``q`` (q >= 0).

    With ``with_z`` f is called as f(u, z), for integrands such as φ(u)² (z² − 1).
    """
    q = torch.as_tensor(q, dtype=_DT)
    z, w = standard_nodes()
    # q = 0 is taken as the limit q → 0⁺ (ReLU: E[φ′²] = 1/2, not φ′(0)² = 0)
    q = q.clamp_min(1e-200)
    flat = q.reshape(-1)
    step = max(1, _CHUNK // z.numel())
    out = []
    for part in flat.split(step):
        u = torch.sqrt(part)[:, None] * z
        out.append((f(u, z.expand_as(u)) if with_z else f(u)) @ w)
    return (torch.cat(out) if out else flat).reshape(q.shape)


def expect2(f, g, q1, q2, c) -> Tensor:
    """E[f(u₁) g(u₂)] with (u₁, u₂) centred Gaussian, Var uᵢ = qᵢ, Corr = c; broadcast.

    u₁ = √q₁ z₁ and u₂ = √q₂ (c z₁ + √(1−c²) z₂). The inner integral over z₂ is
    split at the point where u₂ = 0, so a kink of g at 0 costs no accuracy.
    """
    q1, q2, c = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=_DT) for v in (q1, q2, c)))
    shape = q1.shape
    q1, q2, c = q1.reshape(-1), q2.reshape(-1), c.clamp(-1, 1).reshape(-1)
    # halvings of the panels near each split: resolve z-scales down to ~1/(60 √q_max)
    q_max = float(torch.maximum(q1.max(), q2.max())) if q1.numel() else 1.0
    n_geo = int(min(max(math.ceil(math.log2(60 * math.sqrt(q_max) + 1)), 6), 30))
    z1, w1 = standard_nodes(fine=n_geo)  # (N1,)
    s = torch.sqrt((1 - c**2).clamp_min(0))
    lim = torch.tensor(L, dtype=_DT)
    # split point of the inner integral, per (point, z1): c z1 + s z2 = 0
    k = torch.where(s[:, None] > 0, -c[:, None] * z1 / s[:, None].clamp_min(1e-300), lim)
    k = k.clamp(-L, L)
    zl, wl = panels(k, -lim.expand_as(k), fine=n_geo)
    zr, wr = panels(k, lim.expand_as(k), fine=n_geo)
    z2, w2 = torch.cat([zl, zr], -1), torch.cat([wl, wr], -1)  # (P, N1, N2)
    w2 = w2 * torch.exp(-(z2**2) / 2) / math.sqrt(2 * math.pi)
    u1 = torch.sqrt(q1)[:, None] * z1  # (P, N1)
    u2 = torch.sqrt(q2)[:, None, None] * (c[:, None, None] * z1[:, None] + s[:, None, None] * z2)
    inner = (g(u2) * w2).sum(-1)  # (P, N1)
    return ((f(u1) * inner) @ w1).reshape(shape)
