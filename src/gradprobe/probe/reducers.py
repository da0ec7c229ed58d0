"""On-device reductions, and their exact combination on the host.

Hooks call the reducers below; they return 0-dim or 1-dim tensors that stay on the
model's device and are handed to a :class:`Packer`. Once per logged step the packer
concatenates everything (one kernel per dtype) and copies it to the host as one float64
array: one transfer per logged step, never one per tensor.

A tensor ``x`` with ``n`` elements is summarised by ``moments(x)``, a :class:`MomentSums`:
``Σx``, ``Σx²``, min and max (one ``aminmax``: both are finite iff ``x`` holds no NaN/Inf)
and the count of non-finite values. Calls combine by adding: ``N = Σn``, ``S = Σ Σx``,
``Q = Σ Σx²``; ``mean = S/N``, ``rms = sqrt(Q/N)``, ``norm = sqrt(Q)``,
``std = sqrt((Q - S²/N) / (N - 1))``.

Exact across the whole float range: float32 sums (a BLAS dot product for ``Σx²``, relative
error about ``1e-7 (1 + mean²/std²)``) are used only when ``max|x|`` says they can neither
overflow (``n·max² < 2¹²⁵``) nor lose values to underflow (``max² >= n·2⁻⁸⁶``, so values
whose squares fall below float32's smallest normal ``2⁻¹²⁶`` weigh less than ``2⁻⁴⁰``);
otherwise ``Σx`` and ``Σx²`` are accumulated in float64 (inputs ×1e30, gradients of 1e-30).
On the CPU ``max|x|`` is known for free (below), so the fast path costs nothing; on other
devices it is not known without a sync, so the sums are always float64 there (one
conversion kernel per tensor, in chunks of ``CHUNK`` values to bound its memory). Float64
tensors keep float64 sums: exact for ``|x|`` between about 1e-150 and 1e150.

On the CPU a 0-dim result is already in host memory, so reading it is not a
synchronisation: there the rare work (counting NaN/Inf, values outside a fixed histogram
range, float64 sums) is done only when min/max say it is needed. On other devices it is
always done on the device, without a sync.

On the CPU, float32 (and float16/bfloat16, converted) tensors are summarised in one pass by
``_fused.c`` (``FUSED``): Σx, Σx², min, max in one read, the sums in float64 (exact over the
whole float32 range, no fast-path checks). torch has no kernel that does this; aminmax, sum
and dot are three reads (measured: 2-3x slower from 2^12 to 2^22 values). Without the
compiled module (no C compiler at install) the torch ops below are used.

An activation or output gradient of more than ``CAP`` values is read in full once (min, max,
NaN/Inf: exact); its saturation and histogram come from a sample (``_sample``), and so do its
sums when over ``MOMENT_CAP`` values, except where ``FUSED`` reads every value anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import torch

from ..run import Histogram
from ._packer import Packer
from ._sample import CAP, MOMENT_CAP, sample_spec, sample_view, unit_max

try:  # the optional compiled one-pass reduction (setup.py; plain torch ops without it)
    from . import _fused as FUSED
except ImportError:  # pragma: no cover - built wherever a C compiler was found
    FUSED = None

__all__ = [
    "AT",
    "CAP",
    "MOMENT_CAP",
    "MomentSums",
    "Moments",
    "Packer",
    "moments",
    "moments_from",
    "unit_max",
]

T = TypeVar("T")
CHUNK = 1 << 22  # values per float64 conversion (32 MiB of temporaries at most)
# float32 sums are exact enough while n·max² < 2**FAST_HI and max² >= n·2**FAST_LO
FAST_HI, FAST_LO = 125, -86
_HI, _LO = 2.0**FAST_HI, 2.0**FAST_LO


class MomentSums(NamedTuple, Generic[T]):
    """What :func:`moments` queues, in packing order: device tensors before the copy, floats
    after it (``MomentSums._make(host[slice])``). ``AT`` gives each field's offset."""

    s: T  # Σx
    q: T  # Σx²
    lo: T  # min
    hi: T  # max
    nonfinite: T  # count of NaN/±Inf


AT = MomentSums(*range(len(MomentSums._fields)))  # offsets: AT.q == 1


def _flat32(x: torch.Tensor) -> torch.Tensor:
    v = x.detach()
    if v.dtype != torch.float32:
        v = v.float()
    return v.reshape(-1)


def on_host(device: torch.device) -> bool:
    """Is a tensor on ``device`` readable without a synchronisation? (The CPU.) Tests patch
    this to run the device code paths on the CPU."""
    return device.type == "cpu"


def _host_finite(lo: torch.Tensor | float, hi: torch.Tensor | float) -> bool | None:
    """On CPU: are min and max finite? (None elsewhere: decide on the device.) Floats (from
    ``FUSED``) are host values."""
    if isinstance(lo, torch.Tensor):
        if not on_host(lo.device):
            return None
        lo, hi = lo.item(), hi.item()
    return math.isfinite(lo) and math.isfinite(hi)  # type: ignore[arg-type]


def sample_flat(x: torch.Tensor, scratch: Scratch | None = None, cap: int = CAP) -> torch.Tensor:
    """:func:`sample_view` of ``x``, flat, contiguous (float64 stays float64)."""
    v = sample_view(x.detach(), cap)
    if v.is_contiguous() and v.dtype in (torch.float32, torch.float64):
        return v.reshape(-1)
    dt = torch.float64 if v.dtype == torch.float64 else torch.float32
    out = _temp_n(scratch, v.numel(), dt, v.device, tag="sample")
    out.view(v.shape).copy_(v)
    return out


def moments(
    x: torch.Tensor, scratch: Scratch | None = None, sample: torch.Tensor | None = None
) -> MomentSums:
    """``(Σx, Σx², min, max, n_nonfinite)`` of ``x`` (the count may be an int), exact over the
    whole float range (module docstring). With ``sample`` (:func:`sample_flat` of ``x``, ``m``
    values) the sums are ``n/m`` times the sample's; min, max and the count stay exact.
    Where ``FUSED`` serves ``x`` (CPU, float32/16-bit) every value is read and ``sample`` is
    not used.
    ``x`` must hold at least one value."""
    return moments_from(x, scratch, sample)[0]


def moments_from(
    x: torch.Tensor, scratch: Scratch | None = None, sample: torch.Tensor | None = None
) -> tuple[MomentSums, bool]:
    """:func:`moments`, and whether its sums came from ``sample``: not when the sample missed
    every nonzero value (then ``x`` is read whole), so no ``sampled`` row is written for
    exact sums. (A tensor holding NaN/Inf has NaN/Inf sums either way.)"""
    n = x.numel()
    if FUSED is not None and x.dtype in _FUSED_DTYPES and on_host(x.device):
        return _fused(x, scratch), False  # every value in one pass: exact sums, cheaper
    sampled = sample is not None and sample.numel() < n
    if not on_host(x.device):  # decide nothing on the host: float64 sums, always
        v = x.detach().reshape(-1)
        lo, hi = torch.aminmax(v)
        bad = n - torch.isfinite(v).sum()
        if not sampled:
            return MomentSums(*_sums64(v, scratch), lo, hi, bad), False
        s, q = _sums64(sample, scratch)
        f, poison = n / sample.numel(), (lo + hi) * 0  # NaN: x held NaN/Inf the sample missed
        return MomentSums(s * f + poison, q * f + poison, lo, hi, bad), True
    v = x.detach() if sampled else x.detach().reshape(-1)
    if v.dtype not in (torch.float32, torch.float64) and not sampled:
        v = v.float()
    # one pass for both (measured, AMD EPYC, torch 2.13: 1.1-2x faster than amin + amax from
    # 2^14 to 2^20 values, hot or cold, except within 10 % at 2^19-2^20 hot on one thread)
    lo, hi = torch.aminmax(v)
    a, b = lo.item(), hi.item()
    if not math.isfinite(a + b):  # NaN/Inf: the sums are NaN/Inf anyway, counted exactly
        v = v.reshape(-1).float()
        # (``sampled`` as given: the device path cannot tell without a sync, and its sums of
        # the sample are made NaN instead, so both write the same rows)
        sums = MomentSums(v.sum(), torch.dot(v, v), lo, hi, n - torch.isfinite(v).sum())
        return sums, sampled
    w = sample if sampled else v
    m2, m = (b if b > -a else a) ** 2, w.numel()
    if (m * m2 < _HI and m2 >= m * _LO) or m2 == 0 or w.dtype == torch.float64:
        s, q = w.sum(), torch.dot(w, w)
    else:
        s, q = _sums64(w, scratch)
    if m < n and q.item() == 0 < m2:  # the sample missed every nonzero value: all of them
        return moments(x, scratch), False
    if m < n:
        s, q = s * (n / m), q * (n / m)
    return MomentSums(s, q, lo, hi, 0), m < n


_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _dense32(x: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """``x`` as contiguous float32 for ``FUSED`` (which reads ``data_ptr()``): itself, or a
    copy in a scratch buffer when it is strided or of another dtype."""
    v = x.detach()
    if v.dtype != torch.float32 or not v.is_contiguous():
        v = _temp_n(scratch, v.numel(), torch.float32, v.device).view(v.shape).copy_(v)
    return v


def _fused(x: torch.Tensor, scratch: Scratch | None = None) -> MomentSums:
    """:func:`moments` of a CPU tensor by ``FUSED`` (one read, on one thread)."""
    v = _dense32(x, scratch)
    return MomentSums(*FUSED.moments_f32(v.data_ptr(), v.numel()))


def fusable(x: torch.Tensor) -> bool:
    """Can :func:`summarise` serve ``x``? (``FUSED`` built, a CPU tensor of float32, float16
    or bfloat16, at least one value.)"""
    return FUSED is not None and x.dtype in _FUSED_DTYPES and on_host(x.device) and x.numel() > 0


class Summary(NamedTuple):
    """What :func:`summarise` gives, ready for the packer: host numbers only."""

    moments: MomentSums  # of every value
    saturated: float | None  # values within ``tol`` of a bound (``sat`` given)
    hist: tuple | None  # as :func:`histogram` returns it, the counts a numpy array; None: not
    # asked, or NaN/Inf in x


def summarise(
    x: torch.Tensor,
    scratch: Scratch | None = None,
    sat: tuple[float, float] | None = None,
    bins: int = 0,
    r: float | None = None,
    pow2: bool = False,
    tol: float = 0.01,
) -> Summary:
    """Everything a hook records of a :func:`fusable` tensor, in one ``FUSED`` call:
    :func:`moments` of every value, :func:`saturated_count` on ``sat = (lo, hi)`` of every
    value, and with ``bins`` the :func:`histogram` of its :func:`sample_view` on ``[-r, r]``
    (``r`` None: the automatic range of :func:`histogram`, from the min and max of every
    value) — the same numbers as those functions, without a torch op per statistic. A tensor
    holding NaN/Inf gets ``hist=None``: bin it with :func:`histogram` (the rare case)."""
    v = _dense32(x, scratch)
    c, thr = -1.0, -1.0  # no saturation count
    if sat is not None:
        c, h = (sat[0] + sat[1]) / 2, (sat[1] - sat[0]) / 2
        thr = h * (1 - 2 * tol)
    counts = sizes = strides = None
    if bins:
        counts = np.zeros(bins + 2, dtype=np.int64)  # host values: no torch op
        spec = sample_spec(tuple(v.shape))
        sizes, strides = spec if spec is not None else (None, None)
    s, q, lo, hi, bad, n_sat, r_used, zeros = FUSED.summary_f32(
        v.data_ptr(), v.numel(), c, thr, bins, 0.0 if r is None else float(r), pow2,
        sizes, strides, 0 if counts is None else counts.ctypes.data,
    )  # fmt: skip
    hist = (r_used, counts, zeros, 0, 0, 0) if bins and r_used > 0 else None
    return Summary(MomentSums(s, q, lo, hi, bad), None if sat is None else n_sat, hist)


def _sums64(v: torch.Tensor, scratch: Scratch | None = None) -> tuple:
    """``Σx`` and ``Σx²`` of a flat tensor, accumulated in float64 (chunks of ``CHUNK``)."""
    if v.dtype == torch.float64:
        return v.sum(), torch.dot(v, v)
    s = q = None
    for i in range(0, v.numel(), CHUNK):
        part = v[i : i + CHUNK]
        d = _temp_n(scratch, part.numel(), torch.float64, v.device).copy_(part)
        ds, dq = d.sum(), torch.dot(d, d)
        s, q = (ds, dq) if s is None else (s + ds, q + dq)
    return s, q


def finite_sum(x: torch.Tensor, host: bool = True) -> torch.Tensor:
    """The cheap always-on check of unlogged steps: non-finite iff ``x`` holds a NaN or an Inf.

    ``host`` (the caller reads it at once, on the CPU): ``Σx`` in float32 (one pass, no
    write; ``aminmax`` is exact but about 1.5x slower there), also non-finite when the sum of
    finite values overflows float32 (``|Σx| > 3.4e38``), which :func:`nonfinite_fraction`
    then tells apart. Otherwise nothing can be told apart later, so it is ``[min, max]`` (one
    ``aminmax``: exact, and memory-bound like a sum on an accelerator)."""
    v = x.detach()
    if not host:
        return torch.stack(torch.aminmax(v.reshape(-1) if v.is_floating_point() else _flat32(v)))
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
        self._buffers: dict[tuple, torch.Tensor] = {}

    def get(self, n: int, dtype: torch.dtype, device: torch.device, tag: str = "") -> torch.Tensor:
        """An uninitialised 1-dim tensor of ``n`` values (a view of the buffer when it can);
        ``tag``: a buffer of its own (the sample, read while other temporaries are written)."""
        if n > self.LIMIT or not on_host(device):
            return torch.empty(n, dtype=dtype, device=device)
        buf = self._buffers.get((dtype, tag))
        if buf is None or buf.numel() < n:
            buf = self._buffers[(dtype, tag)] = torch.empty(n, dtype=dtype)
        return buf[:n]


def _temp(scratch: Scratch | None, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return _temp_n(scratch, v.numel(), dtype, v.device)


def _temp_n(scratch: Scratch | None, n: int, dtype: torch.dtype, device, tag="") -> torch.Tensor:
    if scratch is None:
        return torch.empty(n, dtype=dtype, device=device)
    return scratch.get(n, dtype, device, tag)


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


def norm(t: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """‖t‖₂: a float32 BLAS dot product (3× faster than ``vector_norm``). On the CPU its
    value says for free when float32 may have overflowed or lost values to underflow (tiny
    updates ``‖w - w_prev‖``): then float64 sums. Float64 tensors stay float64."""
    if t.dtype == torch.float64:
        return torch.linalg.vector_norm(t)
    if not on_host(t.device):
        v = (t if t.dtype == torch.float32 else t.float()).reshape(-1)
        return torch.dot(v, v).sqrt()
    return sq_norm(t, scratch).sqrt()


def _plain32(t: torch.Tensor) -> bool:
    """:func:`fusable`, and readable in place: contiguous float32 (no copy first)."""
    return fusable(t) and t.dtype == torch.float32 and t.is_contiguous()


NORM_FUSED_MAX = 1 << 18  # values: above, torch's float32 dot (BLAS, threads) is faster


def norm_of(t: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor | float:
    """:func:`norm`, as a host float from one ``FUSED`` pass (float64 sums: exact over the
    whole float32 range) where ``t`` is a contiguous float32 CPU tensor of at most
    ``NORM_FUSED_MAX`` values (measured, AMD EPYC: 9 vs 13 µs at 2¹⁶ values hot, 125 vs
    98 µs at 2²⁰, where the dot's few Python checks no longer matter); else :func:`norm`."""
    if t.numel() <= NORM_FUSED_MAX and _plain32(t):
        return math.sqrt(FUSED.sumsq_f32(t.data_ptr(), t.numel()))
    return norm(t, scratch)


def norm_diff(buf: torch.Tensor, w: torch.Tensor, scratch: Scratch | None = None):
    """``‖buf - w‖`` (the update ``w_prev - w``): one ``FUSED`` pass that writes nothing where
    both are contiguous float32 CPU tensors of one shape (a host float); otherwise ``buf`` is
    overwritten with the difference and :func:`norm` taken of it."""
    if _plain32(buf) and _plain32(w) and buf.shape == w.shape:
        return math.sqrt(FUSED.sumsq_f32(buf.data_ptr(), buf.numel(), w.data_ptr()))
    return norm(buf.sub_(w), scratch)


def plain_pair(buf: torch.Tensor, w: torch.Tensor) -> bool:
    """Can :func:`norms_diff` read ``buf`` and ``w`` in place? (Contiguous float32 CPU
    tensors of one shape, and the batched kernel built.)"""
    return _plain32(buf) and _plain32(w) and buf.shape == w.shape and hasattr(FUSED, "sqdiffs_f32")


def norms_diff(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
    """``‖buf - w‖`` of every :func:`plain_pair` in ``pairs``, as :func:`norm_diff` takes
    them (the same kernel), in one ``FUSED`` call: a float64 array."""
    k = len(pairs)
    spec = np.empty((k, 3), dtype=np.int64)
    for j, (buf, w) in enumerate(pairs):
        spec[j] = buf.data_ptr(), buf.numel(), w.data_ptr()
    out = np.empty(k, dtype=np.float64)
    if k:
        FUSED.sqdiffs_f32(spec.ctypes.data, k, out.ctypes.data)
    return np.sqrt(out)


def sq_norm(t: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """‖t‖₂² (0-dim), exact as :func:`norm`: float32 dot where float32 is exact enough (known
    for free on the CPU), float64 sums otherwise; on other devices always float64 (one
    ``vector_norm(dtype=float64)``). NaN/Inf in ``t`` give NaN/Inf."""
    if t.dtype == torch.float64:
        v = t.reshape(-1)
        return torch.dot(v, v)
    if not on_host(t.device):
        return torch.linalg.vector_norm(t, dtype=torch.float64).square()
    v = (t if t.dtype == torch.float32 else t.float()).reshape(-1)
    q = torch.dot(v, v)
    qv = q.item()
    if v.numel() * _LO <= qv < _HI:  # float32 was exact enough (module docstring)
        return q
    if qv == 0:  # all zero (cheap to tell), or everything underflowed
        lo, hi = torch.aminmax(v) if v.numel() else (q, q)
        if lo.item() == 0 == hi.item():
            return q
    elif not math.isfinite(qv) and not v.isfinite().all():  # NaN/Inf, not an overflow
        return q
    return _sums64(v, scratch)[1]


def time_norms(g: torch.Tensor, time_dim: int) -> torch.Tensor:
    """``‖g[t]‖₂`` for every index ``t`` along ``time_dim``: float32, or float64 when float32
    may over- or underflow (decided for free on the CPU; always float64 elsewhere): the
    gradient through early time steps is what vanishes."""
    dims = [d for d in range(g.dim()) if d != time_dim]
    g = g.detach()
    if on_host(g.device):
        out = torch.linalg.vector_norm(g, dim=dims, dtype=torch.float32)
        per = max(g.numel() // max(g.shape[time_dim], 1), 1)
        if out.numel() == 0:
            return out
        lo, hi = torch.aminmax(out)
        a, b = lo.item(), hi.item()
        if not math.isfinite(b) and not torch.isfinite(g).all():
            return out  # NaN/Inf in the data: stays NaN/Inf
        if a * a >= per * _LO and b * b < _HI:
            return out
    return torch.linalg.vector_norm(g, dim=dims, dtype=torch.float64)


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
        m = max(-float(lo), float(hi))
        r = (m if m > 0 else 1.0) * WIDEN
    elif r is None:
        m = clean.abs().amax()
        r = torch.where(m > 0, m, torch.ones_like(m)) * WIDEN
        if pow2:
            r = torch.exp2(torch.ceil(torch.log2(r)))
    if pow2 and isinstance(r, float) and auto:
        r = 2.0 ** math.ceil(math.log2(r))
    half = bins // 2
    if FUSED is not None and finite and isinstance(r, float) and bins % 2 == 0 and v.numel():
        v = _dense32(v, scratch)
        counts = torch.zeros(bins + 2, dtype=torch.long)
        zeros, *_ = FUSED.histogram_f32(v.data_ptr(), v.numel(), bins, r, counts.data_ptr())
        return r, counts, zeros, 0, 0, 0  # one pass, the same bins as below
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
