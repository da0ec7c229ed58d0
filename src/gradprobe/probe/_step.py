"""End of a step: one host copy, host-side combination into rows, one store transaction;
and the always-on search for the first non-finite value (forward and backward).

Stat names and definitions are documented in docs/PROBE.md.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from ..run import Event
from . import reducers as R
from ._distributed import is_shard, local

BIG = 2**62
STRIDE = 2**20  # positions per step in a first-non-finite code: step * STRIDE + position


class FirstNonFinite:
    """Where NaN/Inf first appeared, forward and backward, without a host sync per step.

    On steps that are not logged each hook keeps ``Σx`` of its tensor on the device;
    ``push_flags`` folds a step into one int64 code per phase, ``min(step * STRIDE + pos)``,
    still on the device. The code is read with the next logged step's copy (or at close).
    """

    def __init__(self, run, track: bool) -> None:
        self.run = run
        self.track = track
        self.found: dict[str, Event] = {}
        self.pending: list[Event] = []
        self._codes: dict[str, torch.Tensor] = {}
        self._seqs: dict[str, dict[int, tuple]] = {"forward": {}, "backward": {}}
        self._intern: dict[tuple, tuple] = {}
        self.rank: int | None = None  # distributed: this process's rank, named in events
        self._aranges: dict[tuple, torch.Tensor] = {}

    @property
    def tracking_forward(self) -> bool:
        return self.track and "forward" not in self.found

    @property
    def tracking_backward(self) -> bool:
        return self.track and "backward" not in self.found

    def push_flags(self, probe) -> None:
        step = probe.step_index
        for phase, ext, seq in (
            ("forward", probe.fwd_ext, probe.fwd_seq),
            ("backward", probe.bwd_ext, probe.bwd_seq),
        ):
            if not ext or phase in self.found:
                continue
            n = len(seq)
            v = torch.stack(ext)
            key = (n, v.device)
            if key not in self._aranges:
                self._aranges[key] = torch.arange(n, device=v.device)
            bad = ~torch.isfinite(v)
            pos = torch.where(bad, self._aranges[key], BIG).amin()
            code = torch.where(pos < BIG, pos + step * STRIDE, BIG)
            old = self._codes.get(phase)
            self._codes[phase] = code if old is None else torch.minimum(old, code)
            t = tuple(seq)
            self._seqs[phase][step] = self._intern.setdefault(t, t)

    def device_codes(self) -> list[tuple[str, torch.Tensor]]:
        return [(ph, c) for ph, c in self._codes.items() if ph not in self.found]

    def resolve_code(self, phase: str, code: int, rank: int | None = None) -> None:
        """Turn a code read from the device into an event (if one was found); either way the
        steps it covered are settled, so their call sequences are dropped."""
        if code < BIG and phase not in self.found:
            step, pos = divmod(int(code), STRIDE)
            self._add(phase, step, self._seqs[phase][step][pos], "", rank)
        self._codes.pop(phase, None)
        self._seqs[phase].clear()
        if not any(self._seqs.values()):
            self._intern.clear()

    def host_record(self, phase: str, step: int, entry, frac: float | None, rank=None) -> None:
        """An event read on the host; ``frac``: the fraction of NaN/Inf values (logged steps;
        None on unlogged ones, whose device path has no count either)."""
        if self.track and phase not in self.found:
            amount = "" if frac is None else f" ({frac:.3g} of its values)"
            self._add(phase, step, entry, amount, rank)

    def _add(self, phase: str, step: int, entry, amount: str, rank=None) -> None:
        rank = self.rank if rank is None else rank
        if rank is not None:  # distributed: where it happened
            amount += f" on rank {rank}"
        if phase == "forward":
            layer = entry
            where = "the model input" if entry == "(input)" else f"the output of {entry}"
            detail = f"{where} contained NaN/Inf{amount}"
        else:
            kind, name, slot, consumers = entry
            if kind == "param":
                layer, detail = slot, f"the gradient of parameter {name} was NaN/Inf{amount}"
            elif consumers:
                layer = consumers[-1]
                detail = (
                    f"the gradient w.r.t. the output of {slot} became NaN/Inf{amount} "
                    f"in the backward of {layer}"
                )
            else:
                layer = slot
                detail = (
                    f"the gradient w.r.t. the output of {slot} was already NaN/Inf{amount} "
                    "when it arrived (from the loss or an operation outside any module)"
                )
        event = Event(step, phase, layer, detail)
        self.found[phase] = event
        self.pending.append(event)
        self._codes.pop(phase, None)

    def flush(self, step: int) -> None:
        """At close: read what is left on the device (one copy) and store the events."""
        for phase, code in self.device_codes():
            self.resolve_code(phase, int(code.item()))
        if self.pending:
            self.run.write_step(step, [], events=self.pending, mark_step=False)
            self.pending = []


class Finisher:
    """Turns a logged step's packed numbers into rows of the long table."""

    def __init__(self, probe) -> None:
        self.probe = probe
        self.positions_known: set[str] = set()

    def finish_logged(self, step: int, write: bool) -> None:
        pr = self.probe
        pk = pr.packer
        weights = self._queue_weights(pk) if write else []
        dead = self._queue_dead(pk)
        codes = [(ph, pk.add(c, op="code")) for ph, c in pr.first.device_codes()]
        host = pk.to_host()
        first = pr.first
        for phase, sl in codes:  # earlier, unlogged steps come first
            first.resolve_code(phase, int(host[sl][0]), pk.rank_of(sl.start))
        for slot, n, m, *_ in pr.fwd:
            bad = host[m][4]
            if bad > 0:
                first.host_record("forward", step, slot.name, bad / n, pk.rank_of(m.start + 4))
                break
        for rec, n, m, *_ in pr.bwd:
            bad = host[m][4]
            if bad > 0:
                first.host_record("backward", step, rec.key(), bad / n, pk.rank_of(m.start + 4))
                break
        if not write:
            return
        rows: list[tuple] = []
        series: list[tuple] = []
        hists: list[tuple] = []
        positions = self._positions()
        self._forward_rows(host, dead, rows, series, hists)
        self._backward_rows(host, rows, series, hists)
        for name, w_sl, d_sl, prev_sl in weights:
            rows.append((name, "weight", "norm", float(host[w_sl][0])))
            if d_sl is not None:
                delta, prev = float(host[d_sl][0]), float(host[prev_sl][0])
                rows.append((name, "update", "norm", delta))
                if prev > 0 or math.isnan(prev):  # undefined for weights that were all 0
                    rows.append((name, "update", "ratio", delta / prev if prev > 0 else prev))
        pr.run.write_step(step, rows, positions, series, hists, first.pending)
        first.pending = []

    # -- queued on the device before the copy ---------------------------------------------
    def _queue_weights(self, pk: R.Packer) -> list[tuple]:
        """``‖w‖`` of the weights the step used (taken in the backward, see
        ``Probe._param_hook``; here, for a parameter the backward did not reach), and on a step
        with a snapshot ``‖w - w_prev‖`` and ``‖w_prev‖`` (taken with the snapshot)."""
        pr = self.probe
        out = []
        taken = pr.weight_norms
        with torch.no_grad():
            for i, (name, p) in enumerate(pr.params):
                # distributed: FSDP2 shards -> global norms; replicated (DDP) -> rank 0's
                op = "norms_shard" if is_shard(p) else "rank0"
                w = local(p.detach())
                w_sl = taken[i] if i in taken else pk.add(R.norm(w), op=op)
                if not pr._snap_valid:
                    out.append((name, w_sl, None, None))
                    continue
                delta = R.norm(local(pr._snap[i]).sub_(w))  # refilled at the next snapshot
                out.append((name, w_sl, pk.add(delta, op=op), pk.add(pr._snap_norms[i], op=op)))
        return out

    def _queue_dead(self, pk: R.Packer) -> dict[int, tuple[slice, int]]:
        by_slot: dict[int, list[torch.Tensor]] = defaultdict(list)
        for slot, _n, _m, _sat, unitmax, _h in self.probe.fwd:
            if unitmax is not None:
                by_slot[slot.id].append(unitmax)
        out = {}
        for sid, ms in by_slot.items():
            m = torch.stack(ms).amax(0) if len({u.shape for u in ms}) == 1 else torch.cat(ms)
            out[sid] = (pk.add((m <= 0).sum(), op=("dead", m)), m.numel())
        return out

    # -- host side ------------------------------------------------------------------------
    def _positions(self) -> dict[str, int]:
        new = {}
        for i, name in enumerate(self.probe.called):
            if name not in self.positions_known:
                new[name] = i
                self.positions_known.add(name)
        return new

    def _forward_rows(self, host, dead, rows, series, hists) -> None:
        calls: dict[int, list] = defaultdict(list)
        for entry in self.probe.fwd:
            calls[entry[0].id].append(entry)
        for entries in calls.values():
            slot = entries[0][0]
            mo = R.combine([(n, host[m]) for _, n, m, *_ in entries])
            name, q = slot.name, "activation"
            rows += _moment_rows(name, q, mo, len(entries))
            rows.append((name, q, "mean", mo.mean))
            if entries[0][3] is not None:
                sat = sum(host[e[3]][0] for e in entries)
                rows.append((name, q, "saturated", sat / mo.n))
            if slot.id in dead:
                sl, units = dead[slot.id]
                rows.append((name, q, "dead", host[sl][0] / units))
            if len(entries) > 1:
                series.append(
                    (
                        name,
                        "activation_rms_per_call",
                        [R.combine([(n, host[m])]).rms for _, n, m, *_ in entries],
                    )
                )
            self._hist_rows(name, "activation", [e[5] for e in entries], host, hists)

    def _backward_rows(self, host, rows, series, hists) -> None:
        outs: dict[int, list] = defaultdict(list)
        params: dict[str, tuple] = {}
        for entry in self.probe.bwd:
            rec = entry[0]
            if rec.kind == "param":
                params[rec.name] = entry  # .grad after the step's last backward
            else:
                outs[rec.slot.id].append(entry)
        for entries in outs.values():
            name = entries[0][0].slot.name
            mo = R.combine([(n, host[m]) for _, n, m, *_ in entries])
            rows += _moment_rows(name, "grad_output", mo, len(entries))
            rows.append((name, "grad_output", "norm", mo.norm))
            if len(entries) > 1:
                norms = [R.combine([(n, host[m])]).norm for _, n, m, *_ in entries]
                series.append((name, "grad_output_norm_per_call", norms))
            for i, (_, _, _, tn, _) in enumerate(entries):
                if tn is not None:
                    series.append(
                        (name, "rnn_grad_output_t" + ("" if i == 0 else f"#{i}"), list(host[tn]))
                    )
            self._hist_rows(name, "grad_output", [e[4] for e in entries], host, hists)
        for pname, (_, n, m, _, _) in params.items():
            mo = R.combine([(n, host[m])])
            rows += _moment_rows(pname, "param_grad", mo, 1)[:-1]
            rows.append((pname, "param_grad", "norm", mo.norm))
        seen: dict[str, int] = defaultdict(int)
        for slot, sl in self.probe.rnn_in:
            k = seen[slot.name]
            seen[slot.name] += 1
            series.append(
                (slot.name, "rnn_grad_input_t" + ("" if k == 0 else f"#{k}"), list(host[sl]))
            )

    def _hist_rows(self, name, quantity, slices, host, hists) -> None:
        slices = [s for s in slices if s is not None]
        if not slices:
            return
        bins = self.probe.bins
        hs = [R.finish_histogram(host[s], bins) for s in slices]
        h = hs[0]
        for other in hs[1:]:
            h = R.Histogram(
                h.lo, h.hi, h.counts + other.counts, h.below + other.below,
                h.above + other.above, h.zero + other.zero, h.nan + other.nan,
                h.posinf + other.posinf, h.neginf + other.neginf,
            )  # fmt: skip
        hists.append((name, quantity, h))


def _moment_rows(name: str, q: str, mo: R.Moments, calls: int) -> list[tuple]:
    """std needs two values: a one-value tensor has none (no row, rather than a NaN that
    would read as a NaN in the data)."""
    std = [(name, q, "std", mo.std)] if mo.n > 1 else []
    return [
        *std,
        (name, q, "rms", mo.rms),
        (name, q, "max_abs", mo.max_abs),
        (name, q, "nonfinite", mo.nonfinite / mo.n),
        (name, q, "calls", float(calls)),
    ]
