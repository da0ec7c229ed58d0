"""On-device reductions, and their exact combination on the host.

Hooks call the reducers below; each returns 0-dim or 1-dim tensors that stay on the
model's device and are handed to a :class:`Packer`. Once per logged step the packer
concatenates everything into one float64 tensor and copies it to the host: one
transfer per logged step, never one per tensor.

A tensor ``x`` with ``n`` elements is summarised by ``moments(x)``: its mean ``m``,
population variance ``v`` (``torch.var_mean``, numerically stable), min, max, and the count
of finite values. Several calls combine exactly (Chan et al.):
``N = Σ n_i``, ``m = Σ n_i m_i / N``, ``M2 = Σ n_i v_i + Σ n_i (m_i - m)²``,
``std = sqrt(M2 / (N - 1))``, ``rms = sqrt(M2 / N + m²)``, ``norm = sqrt(N) rms``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..run import Histogram


class Packer:
    """Collects device tensors during a step; ``to_host()`` copies them all at once."""

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []
        self._size = 0

    def add(self, *tensors: torch.Tensor) -> slice:
        """Queue tensors (any dtype, 0-dim or 1-dim); returns where they land on the host."""
        start = self._size
        for t in tensors:
            t = t.reshape(-1)
            self._parts.append(t)
            self._size += t.numel()
        return slice(start, self._size)

    def to_host(self) -> np.ndarray:
        if not self._parts:
            return np.zeros(0)
        by_dtype: dict[tuple, list[torch.Tensor]] = {}
        order: list[tuple] = []
        for t in self._parts:
            key = (t.dtype, t.device)
            if key not in by_dtype:
                by_dtype[key] = []
                order.append(key)
            by_dtype[key].append(t)
        # Same-dtype groups are concatenated first so the number of kernels does not grow
        # with the number of tensors; then one float64 tensor crosses to the host.
        groups = [torch.cat(by_dtype[k]).to(torch.float64) for k in order]
        device = groups[0].device
        flat = torch.cat([g.to(device) for g in groups]).cpu().numpy()
        # Undo the grouping: map each part back to its original offset.
        out = np.empty(self._size)
        src = {k: 0 for k in order}
        base = {}
        acc = 0
        for k in order:
            base[k] = acc
            acc += sum(t.numel() for t in by_dtype[k])
        pos = 0
        for t in self._parts:
            k = (t.dtype, t.device)
            n = t.numel()
            out[pos : pos + n] = flat[base[k] + src[k] : base[k] + src[k] + n]
            src[k] += n
            pos += n
        return out

    def clear(self) -> None:
        self._parts = []
        self._size = 0


def moments(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(mean, population var, min, max, n_finite)`` of ``x`` in float32, on its device."""
    xf = x.detach().float()
    var, mean = torch.var_mean(xf, correction=0)
    lo, hi = torch.aminmax(xf)
    return mean, var, lo, hi, torch.isfinite(xf).sum()


def extremes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(min, max)`` of ``x``, one kernel: both are finite iff ``x`` has no NaN and no Inf
    (min and max propagate NaN). Used for the always-on first-non-finite check."""
    return torch.aminmax(x.detach())


def saturated_count(x: torch.Tensor, lo: float, hi: float, tol: float = 0.01) -> torch.Tensor:
    """How many values lie within ``tol (hi - lo)`` of a bound: ``|x - c| >= h - tol·2h``."""
    c, h = (lo + hi) / 2, (hi - lo) / 2
    xf = x.detach()
    dev = (xf - c).abs() if c != 0 else xf.abs()
    return (dev >= h - tol * 2 * h).sum()


def unit_max(x: torch.Tensor) -> torch.Tensor:
    """Per-unit max over the batch (dim 0): a unit is dead when its max is ``<= 0``."""
    xf = x.detach()
    return xf.reshape(xf.shape[0], -1).amax(0) if xf.dim() > 1 else xf.amax().reshape(1)


def time_norms(g: torch.Tensor, time_dim: int) -> torch.Tensor:
    """``‖g[t]‖₂`` for every index ``t`` along ``time_dim`` (float32)."""
    dims = [d for d in range(g.dim()) if d != time_dim]
    return torch.linalg.vector_norm(g.detach(), dim=dims, dtype=torch.float32)


def histogram(x: torch.Tensor, bins: int, r: torch.Tensor | None = None):
    """Counts on the symmetric range ``[-r, r]`` (default: just above max finite ``|x|``).

    Returns device tensors ``(r, counts[bins + 2], n_clean_zero, n_nan, n_posinf,
    n_neginf)``; ``counts[0]``/``counts[-1]`` are values below/above the range. NaN and
    ±Inf are mapped to 0 for binning and removed again on the host by :func:`finish_histogram`.
    """
    xf = x.detach().float().reshape(-1)
    clean = torch.nan_to_num(xf, nan=0.0, posinf=0.0, neginf=0.0)
    if r is None:
        m = clean.abs().amax()
        r = torch.nextafter(torch.where(m > 0, m, torch.ones_like(m)), m.new_tensor(math.inf))
    # bin i in 1..bins holds (e_{i-1}, e_i], e_i = r (2i/bins - 1): i = ceil(x bins / 2r) + bins/2;
    # 0 and bins+1 hold values below and above the range.
    half = bins // 2
    z = torch.ceil(clean * (half / r)).clamp_(-half, half + 1)
    idx = z.add_(half).long()
    if xf.device.type == "cpu":
        counts = torch.bincount(idx, minlength=bins + 2)
    else:  # bincount would synchronise to size its output
        counts = torch.zeros(bins + 2, dtype=torch.long, device=xf.device)
        counts.index_put_((idx,), torch.ones((), dtype=torch.long, device=xf.device), True)
    return (
        r.float(),
        counts,
        (clean == 0).sum(),
        xf.isnan().sum(),
        xf.isposinf().sum(),
        xf.isneginf().sum(),
    )


def finish_histogram(values: np.ndarray, bins: int) -> Histogram:
    """Host side of :func:`histogram`: ``values`` is its packed output."""
    r = float(values[0])
    counts = values[1 : bins + 3].astype(np.int64)
    clean_zero, nan, posinf, neginf = (int(v) for v in values[bins + 3 : bins + 7])
    regular = counts[1:-1].copy()
    regular[bins // 2 - 1] -= clean_zero  # exact zeros (and NaN/Inf mapped to 0) left bin
    return Histogram(
        lo=-r,
        hi=r,
        counts=regular,
        below=int(counts[0]),
        above=int(counts[-1]),
        zero=clean_zero - nan - posinf - neginf,
        nan=nan,
        posinf=posinf,
        neginf=neginf,
    )


HIST_LEN = 7  # scalars besides the bins in a packed histogram: r, below, above, 4 counts


@dataclass
class Moments:
    """Host-side summary of one or more calls' :func:`moments`."""

    n: int
    mean: float
    m2: float
    max_abs: float
    nonfinite: int

    @property
    def std(self) -> float:
        return math.sqrt(max(self.m2, 0.0) / (self.n - 1)) if self.n > 1 else math.nan

    @property
    def rms(self) -> float:
        return math.sqrt(max(self.m2, 0.0) / self.n + self.mean**2) if self.n else math.nan

    @property
    def norm(self) -> float:
        return math.sqrt(self.n) * self.rms


def combine(parts: list[tuple[int, np.ndarray]]) -> Moments:
    """Combine ``(n, [mean, var, min, max, n_finite])`` of several calls exactly."""
    ns = np.array([n for n, _ in parts], dtype=np.float64)
    v = np.array([p for _, p in parts], dtype=np.float64).reshape(len(parts), 5)
    total = ns.sum()
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float((ns * v[:, 0]).sum() / total)
        m2 = float((ns * v[:, 1]).sum() + (ns * (v[:, 0] - mean) ** 2).sum())
        max_abs = float(np.max(np.maximum(np.abs(v[:, 2]), np.abs(v[:, 3]))))
    return Moments(int(total), mean, m2, max_abs, int(total - v[:, 4].sum()))
