"""What is recorded for each tensor a hook sees, in one place: the typed records, how they
are queued on the device (``Recorder.forward`` / ``backward`` / ``dead`` / ``weights``) and
how they become rows on the host (``Recorder.*_rows``).

A record holds *where* its numbers will land in the step's one host copy (a ``slice`` into
the :class:`~gradprobe.probe.reducers.Packer`), never the numbers: nothing is read on the
device before the end of the step. Adding a statistic: a field in a record, one line that
queues it, one line that turns it into a row (docs/ARCHITECTURE.md, "How to add a
statistic"). Stat names and definitions: docs/PROBE.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ..run import Histogram
from . import _attention as A
from . import reducers as R
from ._attention import AttentionCall
from ._distributed import is_shard, local
from .modules import BwdRec, Slot, real_values

Row = tuple[str, str, str, float]  # (layer, quantity, stat, value)
LOW = (torch.float16, torch.bfloat16)  # dtypes whose range is recorded (range_used)


class Forward(NamedTuple):
    """One forward call of a watched module (or the model input) on a logged step."""

    slot: Slot
    n: int  # values in the output (summed over ranks once combined)
    moments: slice  # reducers.MomentSums
    saturated: slice | None  # saturating activations: values within 1% of a bound
    unit_max: torch.Tensor | None  # ReLU family: per-unit max over the batch (device)
    samples: int  # the examples those maxima were taken over (dim 0)
    hist: slice | None  # histograms=True
    dtype: torch.dtype  # of the recorded tensor (range_used for float16/bfloat16)
    kept: float = 1.0  # fraction of the values the sums and saturation read (a sample: < 1)


class Backward(NamedTuple):
    """One gradient on a logged step: ∂L/∂output of a module (``rec.kind == "out"``) or a
    parameter's ``.grad`` (``"param"``)."""

    rec: BwdRec
    n: int
    moments: slice  # reducers.MomentSums
    time_norms: slice | None  # RNN outputs: ‖∂L/∂h_t‖ per time step
    hist: slice | None  # histograms=True, outputs only
    dtype: torch.dtype
    kept: float = 1.0  # as Forward.kept; parameter gradients are never sampled


class Dead(NamedTuple):
    """Dead units of one module on a step: a unit is dead when its max over the batch is
    ``<= 0``; ``samples`` is how many examples that was judged on."""

    count: slice
    units: int
    samples: slice


class Weight(NamedTuple):
    """``‖w‖`` of a parameter; on an update step also ``‖w - w_prev‖`` and ``‖w_prev‖``."""

    name: str
    norm: slice
    delta: slice | None
    prev: slice | None
    used: bool = True  # taken in the backward: the weights the step used


@dataclass
class Rows:
    """What one logged step stores (``RunWriter.write_step``)."""

    rows: list[Row] = field(default_factory=list)
    series: list[tuple[str, str, list[float]]] = field(default_factory=list)
    hists: list[tuple[str, str, Histogram]] = field(default_factory=list)


class Recorder:
    """Queues a tensor's statistics in a packer; turns the host copy into rows."""

    def __init__(self, histograms: bool, bins: int, hist_range: float | None, pow2: bool) -> None:
        self.histograms, self.bins, self.hist_range, self.pow2 = histograms, bins, hist_range, pow2
        self.scratch = R.Scratch()  # reused CPU temporaries (reducers.Scratch)

    # -- device side: queue ------------------------------------------------------------------
    def forward(self, pk: R.Packer, ranges: dict, slot: Slot, t: torch.Tensor) -> Forward:
        n, act = t.numel(), slot.act
        saturating = act is not None and act.kind == "saturating"
        unit, samples = None, 0
        if act is not None and not saturating and act.can_die and t.dim() > 0 and t.shape[0] > 0:
            unit, samples = R.unit_max(t)
        if self._fast(t, ranges, (slot.id, "a")):  # one C call: every value read, exact
            sm = self._summarise(
                t, ranges, (slot.id, "a"), act.count_bounds() if saturating else None
            )
            sat = None if sm.saturated is None else pk.add(sm.saturated)
            hist = self._hist_of(pk, ranges, (slot.id, "a"), t, sm)
            m = pk.add(*sm.moments, op="moments")
            return Forward(slot, n, m, sat, unit, samples, hist, t.dtype)
        big = n > R.MOMENT_CAP and t.dim() > 1  # its scalar stats, too, from the sample
        w = R.sample_flat(t, self.scratch) if big or self.histograms else t
        mom, big = R.moments_from(t, self.scratch, w if big else None)  # big: sums sampled
        m = pk.add(*mom, op="moments")
        sat = None
        if saturating:
            w_sat = w if big else t
            c = R.saturated_count(w_sat, *act.count_bounds(), scratch=self.scratch)
            sat = pk.add(c if w_sat.numel() == n else c * (n / w_sat.numel()))
        hist = self._hist(pk, ranges, (slot.id, "a"), w, mom)
        return Forward(slot, n, m, sat, unit, samples, hist, t.dtype, w.numel() / n if big else 1)

    def backward(
        self, pk: R.Packer, ranges: dict, rec: BwdRec, g: torch.Tensor, time_dim, op: str
    ) -> Backward:
        n, out = g.numel(), rec.kind == "out"  # parameter gradients: never sampled
        tn = None if time_dim is None else pk.add(R.time_norms(g, time_dim), op="norms_grad")
        key = (rec.slot.id, "g")
        if self._fast(g, ranges, key if out else None):  # one C call: every value read, exact
            sm = self._summarise(g, ranges, key if out else None, None)
            h = self._hist_of(pk, ranges, key, g, sm) if out else None
            return Backward(rec, n, pk.add(*sm.moments, op=op), tn, h, g.dtype)
        big = out and n > R.MOMENT_CAP and g.dim() > 1
        w = R.sample_flat(g, self.scratch) if big or (out and self.histograms) else g
        mom, big = R.moments_from(g, self.scratch, w if big else None)  # big: sums sampled
        m = pk.add(*mom, op=op)
        h = self._hist(pk, ranges, key, w, mom) if out else None
        return Backward(rec, n, m, tn, h, g.dtype, w.numel() / n if big else 1)

    def param_grads(self, state, params: list, owner: dict) -> None:
        """Distributed: every parameter's ``.grad`` once the backward and the gradient sync
        are done (``_distributed.Reducer`` calls this at the end of a logged backward)."""
        with torch.no_grad():
            for name, p in params:
                g = p.grad
                if g is None or name not in owner or g.numel() == 0:
                    continue
                op = "moments_shard" if is_shard(g) else "rank0"
                rec, g = BwdRec("param", owner[name], name), real_values(local(g))
                state.backward.append(
                    self.backward(state.packer, state.hist_ranges, rec, g, None, op)
                )

    def _fast(self, t: torch.Tensor, ranges: dict, key: tuple | None) -> bool:
        """Does ``reducers.summarise`` serve ``t``? (With a histogram range of this step that
        is a host number, or none yet.)"""
        if not R.fusable(t):
            return False
        return not (
            self.histograms and key is not None and isinstance(ranges.get(key), torch.Tensor)
        )

    def _summarise(self, t, ranges: dict, key: tuple | None, sat) -> R.Summary:
        bins = self.bins if self.histograms and key is not None else 0
        r = ranges.get(key, self.hist_range) if bins else None
        return R.summarise(t, self.scratch, sat, bins, r, self.pow2)

    def _hist_of(self, pk: R.Packer, ranges: dict, key: tuple, t, sm: R.Summary):
        """The histogram ``summarise`` took, or (NaN/Inf in ``t``) the one :func:`_hist`
        takes of its sample."""
        if not self.histograms:
            return None
        if sm.hist is None:
            return self._hist(pk, ranges, key, R.sample_flat(t, self.scratch), sm.moments)
        ranges.setdefault(key, sm.hist[0])
        return pk.add(*sm.hist, op="hist" if key[1] == "a" else "hist_grad")

    def _hist(self, pk: R.Packer, ranges: dict, key: tuple, t, mom: R.MomentSums):
        """Histogram of ``t``; a module's later calls in a step reuse its first call's range."""
        if not self.histograms:
            return None
        r = ranges.get(key, self.hist_range)
        r, *rest = R.histogram(
            t, self.bins, r, ext=(mom.lo, mom.hi), pow2=self.pow2, scratch=self.scratch
        )
        ranges.setdefault(key, r)
        return pk.add(r, *rest, op="hist" if key[1] == "a" else "hist_grad")

    @staticmethod
    def dead(pk: R.Packer, calls: list[Forward]) -> dict[int, Dead]:
        """Per module: units whose max over the step's batch (all calls) is ``<= 0``."""
        by_slot: dict[int, list[Forward]] = defaultdict(list)
        for c in calls:
            if c.unit_max is not None:
                by_slot[c.slot.id].append(c)
        out = {}
        for sid, cs in by_slot.items():
            ms = [c.unit_max for c in cs]
            if len({u.shape for u in ms}) == 1:  # the same units, more examples
                m, samples = torch.stack(ms).amax(0), sum(c.samples for c in cs)
            else:  # different units per call: each judged on its own call's batch
                m, samples = torch.cat(ms), min(c.samples for c in cs)
            count = pk.add((m <= 0).sum(), op=("dead", m))
            out[sid] = Dead(count, m.numel(), pk.add(samples, op="sum"))
        return out

    # -- host side: rows ---------------------------------------------------------------------
    def forward_rows(
        self, calls: list[Forward], dead: dict[int, Dead], host: list[float], out: Rows
    ) -> None:
        by_slot: dict[int, list[Forward]] = defaultdict(list)
        for c in calls:
            by_slot[c.slot.id].append(c)
        for cs in by_slot.values():
            slot, q = cs[0].slot, "activation"
            name = slot.name
            mo = _combine(cs, host)
            out.rows += _moment_rows(name, q, mo, cs)
            out.rows.append((name, q, "mean", mo.mean))
            _range_used(name, q, cs, host, out)
            if cs[0].saturated is not None:
                sat = sum(host[c.saturated][0] for c in cs if c.saturated is not None)
                out.rows.append((name, q, "saturated", sat / mo.n))
            d = dead.get(slot.id)
            if d is not None:
                out.rows.append((name, q, "dead", host[d.count][0] / d.units))
                out.rows.append((name, q, "dead_samples", host[d.samples][0]))
            if len(cs) > 1:
                per_call = [_combine([c], host).rms for c in cs]
                out.series.append((name, "activation_rms_per_call", per_call))
            self._hist_rows(name, q, [c.hist for c in cs], host, out)

    def backward_rows(
        self, calls: list[Backward], host: list[float], out: Rows, f: float = 1.0
    ) -> float | None:
        """Rows of the step's gradients, times ``f`` (1 / a GradScaler's scale: the gradients
        of the loss itself; ``range_used`` stays that of the values the backward held);
        returns the global gradient norm ``sqrt(Σ ‖g‖²)`` over the parameters (None: no
        parameter gradient), also stored as a row."""
        by_slot: dict[int, list[Backward]] = defaultdict(list)
        params: dict[str, Backward] = {}
        for c in calls:
            if c.rec.kind == "param":
                params[c.rec.name] = c  # .grad after the step's last backward
            else:
                by_slot[c.rec.slot.id].append(c)
        for cs in by_slot.values():
            name, q = cs[0].rec.slot.name, "grad_output"
            mo = _scaled(_combine(cs, host), f)
            out.rows += _moment_rows(name, q, mo, cs)
            out.rows.append((name, q, "norm", mo.norm))
            _range_used(name, q, cs, host, out)
            if len(cs) > 1:
                norms = [_combine([c], host).norm * f for c in cs]
                out.series.append((name, "grad_output_norm_per_call", norms))
            for i, c in enumerate(cs):
                if c.time_norms is not None:
                    key = "rnn_grad_output_t" + ("" if i == 0 else f"#{i}")
                    out.series.append((name, key, [v * f for v in host[c.time_norms]]))
            self._hist_rows(name, q, [c.hist for c in cs], host, out, f)
        total = 0.0
        for pname, c in params.items():
            mo = _scaled(_combine([c], host), f)
            out.rows += _moment_rows(pname, "param_grad", mo, None)
            out.rows.append((pname, "param_grad", "norm", mo.norm))
            _range_used(pname, "param_grad", [c], host, out)
            total += mo.q
        if not params:
            return None
        norm = math.sqrt(total) if total >= 0 else math.nan
        out.rows.append(("(model)", "grad_norm", "global", norm))
        return norm

    @staticmethod
    def weight_rows(weights: list[Weight], host: list[float], out: Rows) -> None:
        for w in weights:
            out.rows.append((w.name, "weight", "norm", float(host[w.norm][0])))
            if w.delta is not None and w.prev is not None:
                delta, prev = float(host[w.delta][0]), float(host[w.prev][0])
                out.rows.append((w.name, "update", "norm", delta))
                if prev > 0 or math.isnan(prev):  # undefined for weights that were all 0
                    ratio = delta / prev if prev > 0 else prev
                    out.rows.append((w.name, "update", "ratio", ratio))

    @staticmethod
    def attention_rows(calls: list[AttentionCall], host: list[float], out: Rows) -> None:
        """Per attention module: its calls' samples combined (``_attention.combine``)."""
        by_name: dict[str, list[list[float]]] = defaultdict(list)
        for c in calls:
            by_name[c.name].append(host[c.values])
        for name, values in by_name.items():
            stats = A.combine(values)
            for stat, v in (stats or {}).items():
                out.rows.append((name, "attention", stat, v))

    def _hist_rows(self, name, quantity, slices, host, out: Rows, f: float = 1.0) -> None:
        slices = [s for s in slices if s is not None]
        if not slices:
            return
        hs = [R.finish_histogram(host[s], self.bins) for s in slices]
        h = hs[0]
        for o in hs[1:]:
            h = Histogram(
                h.lo, h.hi, h.counts + o.counts, h.below + o.below, h.above + o.above,
                h.zero + o.zero, h.nan + o.nan, h.posinf + o.posinf, h.neginf + o.neginf,
            )  # fmt: skip
        if f != 1.0:  # the same counts on the range of the unscaled values
            h = dataclasses.replace(h, lo=h.lo * f, hi=h.hi * f)
        out.hists.append((name, quantity, h))


def _range_used(name: str, q: str, calls, host: list[float], out: Rows) -> None:
    """float16/bfloat16 tensors: ``max|x| / finfo(dtype).max``, the largest over the calls
    (how close the values came to the dtype's overflow, 65504 for float16)."""
    used = [_combine([c], host).max_abs / torch.finfo(c.dtype).max for c in calls if c.dtype in LOW]
    if used:
        worst = math.nan if any(math.isnan(u) for u in used) else max(used)
        out.rows.append((name, q, "range_used", worst))


def first_bad(calls: list[Forward] | list[Backward], host: list[float]):
    """The first call whose values held NaN/Inf, with that count's packer position."""
    for c in calls:
        at = c.moments.start + R.AT.nonfinite
        if host[at] > 0:
            return c, at
    return None, None


def _scaled(mo: R.Moments, f: float) -> R.Moments:
    """The moments of ``f`` times the values (``f > 0``)."""
    if f == 1.0:
        return mo
    return R.Moments(mo.n, mo.s * f, mo.q * f * f, mo.max_abs * f, mo.nonfinite)


def _combine(calls: list[Forward] | list[Backward], host: list[float]) -> R.Moments:
    """The calls' moments added up; ``host[c.moments]`` holds a ``MomentSums`` in order."""
    return R.combine([(c.n, host[c.moments]) for c in calls])


def _moment_rows(name: str, q: str, mo: R.Moments, calls: list | None) -> list[Row]:
    """std needs two values: a one-value tensor has none (no row, rather than a NaN that
    would read as a NaN in the data). ``calls=None``: no "calls" row (parameters). A
    sampled tensor gets ``sampled``: the fraction of its values the sums were taken on."""
    rows = [(name, q, "std", mo.std)] if mo.n > 1 else []
    rows += [
        (name, q, "rms", mo.rms),
        (name, q, "max_abs", mo.max_abs),
        (name, q, "nonfinite", mo.nonfinite / mo.n),
    ]
    if calls is not None:
        rows.append((name, q, "calls", float(len(calls))))
        kept = sum(c.kept * c.n for c in calls) / mo.n
        if kept < 1:
            rows.append((name, q, "sampled", kept))
    return rows
