"""On-device reductions, and their exact combination on the host.

Hooks call the reducers below; they return 0-dim or 1-dim tensors that stay on the
model's device and are handed to a :class:`Packer`. Once per logged step the packer
concatenates everything (one kernel per dtype) and copies it to the host as one float64
array: one transfer per logged step, never one per tensor.

A tensor ``x`` with ``n`` elements is summarised by ``moments(x)``: ``Σx``, ``Σx²`` (a BLAS
dot product), min and max (one ``aminmax``: both are finite iff ``x`` holds no NaN/Inf) and
the count of non-finite values. Calls combine by adding: ``N = Σn``, ``S = Σ Σx``,
``Q = Σ Σx²``; ``mean = S/N``, ``rms = sqrt(Q/N)``, ``norm = sqrt(Q)``,
``std = sqrt((Q - S²/N) / (N - 1))`` (float32 sums: relative error about
``1e-7 (1 + mean²/std²)``, fine unless the mean dwarfs the spread).

On the CPU a 0-dim result is already in host memory, so reading it is not a
synchronisation: there the rare work (counting NaN/Inf, values outside a fixed histogram
range) is done only when min/max say it is needed. On other devices it is always done on
the device, without a sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..run import Histogram

Number = int | float


class Packer:
    """Collects device tensors (and plain numbers) during a step; ``to_host()`` copies once."""

    def __init__(self, reduce_fn=None) -> None:
        self._items: list = []  # 0-dim/1-dim tensors and numbers, in position order
        self._size = 0
        # distributed (probe/_distributed.py): how each item combines across ranks, applied to
        # the packed device buffer just before the copy; None: a single process, no cost
        self.reduce_fn = reduce_fn
        self.ops: list[tuple[int, int, object]] = []
        self.rank_at: dict[int, int] = {}
        self.after_copy = None  # set by reduce_fn: checks on the host, after the copy
        self._tail: list[float] = []

    def add(self, *items: torch.Tensor | Number, op: object = "sum") -> slice:
        """Queue 0-dim/1-dim tensors or numbers; returns where they land in ``to_host()``.
        ``op``: how they combine across ranks when distributed (see probe/_distributed.py)."""
        start = size = self._size
        for t in items:
            size += t.numel() if isinstance(t, torch.Tensor) and t.dim() else 1
        self._items.extend(items)
        self._size = size
        if self.reduce_fn is not None:
            self.ops.append((start, size, op))
        return slice(start, size)

    def _groups(self) -> tuple[list[torch.Tensor], list[int], list[tuple[int, Number]]]:
        """The queued items as one float64 tensor per (kind, dtype, device), the positions of
        their values, and the plain numbers with their positions."""
        groups: dict[tuple, tuple[list, list]] = {}
        numbers = []
        pos = 0
        for t in self._items:
            if isinstance(t, torch.Tensor):
                vec = t.dim() > 0
                where, ts = groups.setdefault((vec, t.dtype, t.device), ([], []))
                where.append(pos)
                ts.append(t)
                pos += t.numel() if vec else 1
            else:
                numbers.append((pos, t))
                pos += 1
        flats, index = [], []
        for (vec, _, _), (where, ts) in groups.items():
            if vec:  # one cat per dtype, not one op per tensor
                flats.append(torch.cat(ts).to(torch.float64))
                index += [p + i for p, t in zip(where, ts, strict=True) for i in range(t.numel())]
            else:
                flats.append(torch.stack(ts).to(torch.float64))
                index += where
        return flats, index, numbers

    def to_host(self) -> list[float]:
        """Everything queued, as one list of floats (one device-to-host copy)."""
        if self.reduce_fn is not None:
            return self._reduced_to_host()
        out = np.empty(self._size)
        flats, index, numbers = self._groups()
        for pos, v in numbers:
            out[pos] = v
        if flats:
            device = flats[0].device
            out[index] = torch.cat([f.to(device) for f in flats]).cpu().numpy()
        return out.tolist()

    def _reduced_to_host(self) -> list[float]:
        """Distributed: the buffer in position order on the device, combined across ranks by
        ``reduce_fn``, then copied once; what ``reduce_fn`` appends is kept for ``rank_of``."""
        flats, index, numbers = self._groups()
        device = flats[0].device if flats else torch.device("cpu")
        if numbers:
            flats.append(torch.tensor([float(v) for _, v in numbers], dtype=torch.float64))
            index += [p for p, _ in numbers]
        flat = torch.cat([f.to(device) for f in flats]) if flats else torch.zeros(0).double()
        ordered = torch.empty(self._size, dtype=torch.float64, device=device)
        ordered[torch.tensor(index, dtype=torch.long).to(device)] = flat
        out = self.reduce_fn(ordered, self).cpu().tolist()
        self._tail = out[self._size :]
        if self.after_copy is not None:
            self.after_copy(self._tail)
        return out[: self._size]

    def rank_of(self, pos: int) -> int | None:
        """Distributed: the rank a first-non-finite code or NaN/Inf count at ``pos`` came from."""
        i = self.rank_at.get(pos)
        if i is None or i - self._size >= len(self._tail):
            return None
        r = self._tail[i - self._size]
        return int(r) if r >= 0 else None


def _flat32(x: torch.Tensor) -> torch.Tensor:
    v = x.detach()
    if v.dtype != torch.float32:
        v = v.float()
    return v.reshape(-1)


def on_host(device: torch.device) -> bool:
    """Is a tensor on ``device`` readable without a synchronisation? (The CPU.) Tests patch
    this to run the device code paths on the CPU."""
    return device.type == "cpu"


def _host_finite(lo: torch.Tensor, hi: torch.Tensor) -> bool | None:
    """On CPU: are min and max finite? (None elsewhere: decide on the device.)"""
    if not on_host(lo.device):
        return None
    return math.isfinite(lo.item()) and math.isfinite(hi.item())


def moments(x: torch.Tensor) -> tuple:
    """``(Σx, Σx², min, max, n_nonfinite)`` of ``x`` in float32 (the count may be an int)."""
    v = _flat32(x)
    lo, hi = torch.aminmax(v)
    finite = _host_finite(lo, hi)
    bad = 0 if finite else v.numel() - torch.isfinite(v).sum()
    return v.sum(), torch.dot(v, v), lo, hi, bad


def finite_sum(x: torch.Tensor) -> torch.Tensor:
    """``Σx`` in float32, the cheap always-on check of unlogged steps: it is NaN/Inf iff ``x``
    holds a NaN or an Inf, or its sum overflows float32 (``|Σx| > 3.4e38``, values that have
    exploded anyway; :func:`nonfinite_fraction` tells the two apart). One pass, no write;
    ``aminmax`` would be exact but twice as slow."""
    v = x.detach()
    if v.dtype == torch.float32:
        return v.sum()
    if v.is_floating_point():
        return v.sum(dtype=torch.float32)
    return _flat32(v).sum()


def nonfinite_fraction(x: torch.Tensor) -> float:
    """The fraction of NaN/±Inf values in ``x`` (reads the device: for the rare case only)."""
    n = x.numel()
    return (n - torch.isfinite(x.detach()).sum().item()) / n if n else 0.0


class Scratch:
    """Reused CPU buffers for the temporaries of saturation counts and histograms.

    A fresh temporary of more than 128 KiB is a new ``mmap`` for glibc, and every page of it
    faults on first touch: measured on docs/BENCHMARKS.md's workload, histograms of 23
    tensors added ~5,000 page faults per step. One buffer per dtype, grown to the largest
    tensor seen (up to ``LIMIT`` values; larger tensors get a temporary per call), kept
    while the probe lives. CPU only: on an accelerator the caching allocator makes
    temporaries cheap, and a buffer shared across streams would need synchronisation.
    """

    LIMIT = 1 << 22  # values: at most 16 MiB per dtype

    def __init__(self) -> None:
        self._buffers: dict[torch.dtype, torch.Tensor] = {}

    def get(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised 1-dim tensor of ``n`` values (a view of the buffer when it can)."""
        if n > self.LIMIT or not on_host(device):
            return torch.empty(n, dtype=dtype, device=device)
        buf = self._buffers.get(dtype)
        if buf is None or buf.numel() < n:
            buf = self._buffers[dtype] = torch.empty(n, dtype=dtype)
        return buf[:n]


def _temp(scratch: Scratch | None, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if scratch is None:
        return torch.empty(v.numel(), dtype=dtype, device=v.device)
    return scratch.get(v.numel(), dtype, v.device)


def saturated_count(
    x: torch.Tensor, lo: float, hi: float, tol: float = 0.01, scratch: Scratch | None = None
) -> torch.Tensor:
    """How many values lie within ``tol (hi - lo)`` of a bound: ``|x - c| >= h (1 - 2 tol)``
    with ``c``, ``h`` the centre and half-width of ``[lo, hi]`` (a float32 sum of 0/1,
    exact below 2²⁴ values)."""
    c, h = (lo + hi) / 2, (hi - lo) / 2
    v = _flat32(x)
    dev = _temp(scratch, v, torch.float32)
    if c == 0:
        torch.abs(v, out=dev)
    else:
        torch.sub(v, c, out=dev).abs_()
    return dev.ge_(h * (1 - 2 * tol)).sum()


def unit_max(x: torch.Tensor) -> torch.Tensor:
    """Per-unit max over the batch (dim 0): a unit is dead when its max is ``<= 0``."""
    xf = x.detach()
    return xf.reshape(xf.shape[0], -1).amax(0) if xf.dim() > 1 else xf.amax().reshape(1)


def norm(t: torch.Tensor) -> torch.Tensor:
    """‖t‖₂ in float32; a BLAS dot product when ``t`` is contiguous float32 (3× faster)."""
    if t.dtype == torch.float32 and t.is_contiguous():
        v = t.reshape(-1)
        return torch.dot(v, v).sqrt()
    return torch.linalg.vector_norm(t, dtype=torch.float32)


def time_norms(g: torch.Tensor, time_dim: int) -> torch.Tensor:
    """``‖g[t]‖₂`` for every index ``t`` along ``time_dim`` (float32)."""
    dims = [d for d in range(g.dim()) if d != time_dim]
    return torch.linalg.vector_norm(g.detach(), dim=dims, dtype=torch.float32)


WIDEN = 1 + 2**-10  # automatic range: r = max finite |x| · WIDEN, so max |x| is inside


def histogram(
    x: torch.Tensor,
    bins: int,
    r=None,
    ext=None,
    pow2: bool = False,
    scratch: Scratch | None = None,
) -> tuple:
    """Counts of ``x`` in ``bins`` equal bins on ``[-r, r]``, ready for the packer.

    ``r``: a fixed half-range (float, or a device tensor from an earlier call); default
    ``max finite |x| · (1 + 2⁻¹⁰)``. ``ext``: ``(min, max)`` of ``x`` if already known.
    Bin ``i`` (1..bins) holds ``(e_{i-1}, e_i]``, ``e_i = r (2i/bins - 1)``, so
    ``i = ceil(x bins / 2r) + bins/2``; 0 and bins+1 count values below and above the range.
    NaN and ±Inf are binned as 0 and taken out again by :func:`finish_histogram`.
    Returns ``(r, counts[bins + 2], zeros incl. non-finite, n_nan, n_posinf, n_neginf)``.
    ``pow2``: round the automatic range up to a power of two (distributed: the ranks' bins
    then nest exactly in the widest rank's bins).
    """
    v = _flat32(x)
    lo, hi = ext if ext is not None else torch.aminmax(v)
    finite = _host_finite(lo, hi)
    if finite:
        clean, nan, posinf, neginf = v, 0, 0, 0
    else:
        clean = torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
        nan, posinf, neginf = v.isnan().sum(), v.isposinf().sum(), v.isneginf().sum()
    auto = r is None
    if r is None and finite is not None:  # CPU: the range is known on the host
        if not finite:
            lo, hi = torch.aminmax(clean)
        m = max(-lo.item(), hi.item())
        r = (m if m > 0 else 1.0) * WIDEN
    elif r is None:
        m = clean.abs().amax()
        r = torch.where(m > 0, m, torch.ones_like(m)) * WIDEN
        if pow2:
            r = torch.exp2(torch.ceil(torch.log2(r)))
    if pow2 and isinstance(r, float) and auto:
        r = 2.0 ** math.ceil(math.log2(r))
    half = bins // 2
    z = torch.mul(clean, half / r, out=_temp(scratch, v, torch.float32))
    z.ceil_().clamp_(-half, half + 1).add_(half)
    if on_host(v.device):
        # bincount of uint8 is 1.5x faster than of int32 (bins + 2 <= 256 indices)
        small = torch.uint8 if bins + 2 <= 256 else torch.int32
        index = _temp(scratch, v, small).copy_(z)
        counts = torch.bincount(index, minlength=bins + 2)
    else:  # bincount would synchronise to size its output
        counts = torch.zeros(bins + 2, dtype=torch.long, device=v.device)
        counts.index_put_((z.long(),), torch.ones((), dtype=torch.long, device=v.device), True)
    zeros = v.numel() - torch.count_nonzero(clean)
    return r, counts, zeros, nan, posinf, neginf


def finish_histogram(values: np.ndarray, bins: int) -> Histogram:
    """Host side of :func:`histogram`: ``values`` is its packed output."""
    r = float(values[0])
    counts = np.array(values[1 : bins + 3], dtype=np.int64)
    clean_zero, nan, posinf, neginf = (int(v) for v in values[bins + 3 : bins + 7])
    regular = counts[1:-1].copy()
    regular[bins // 2 - 1] -= clean_zero  # exact zeros (and NaN/Inf binned as 0) leave bin
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


@dataclass
class Moments:
    """Host-side summary of one or more calls' :func:`moments` (float64)."""

    n: int
    s: float  # Σx
    q: float  # Σx²
    max_abs: float
    nonfinite: int

    @property
    def mean(self) -> float:
        return self.s / self.n

    @property
    def std(self) -> float:
        if self.n < 2:
            return math.nan
        return math.sqrt(max(self.q - self.s * self.s / self.n, 0.0) / (self.n - 1))

    @property
    def rms(self) -> float:
        return math.sqrt(self.q / self.n) if self.q >= 0 else math.nan

    @property
    def norm(self) -> float:
        return math.sqrt(self.q) if self.q >= 0 else math.nan


def combine(parts: list[tuple[int, list[float]]]) -> Moments:
    """Add up ``(n, [Σx, Σx², min, max, n_nonfinite])`` of several calls (NaN propagates)."""
    n, s, q, mx, bad = 0, 0.0, 0.0, 0.0, 0
    for ni, (a, b, lo, hi, nb) in parts:
        n, s, q, bad = n + ni, s + a, q + b, bad + int(nb)
        m = math.nan if math.isnan(lo) or math.isnan(hi) else max(-lo, hi)
        mx = m if (m > mx or math.isnan(m)) and not math.isnan(mx) else mx
    return Moments(n, s, q, mx, bad)
