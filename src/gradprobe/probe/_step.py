"""End of a step: one host copy, host-side combination into rows, one store transaction;
and the always-on search for the first non-finite value (forward and backward).

What each statistic is, and how it is queued and stored: ``_stats``; the step's state:
``_state``. Stat names and definitions are documented in docs/PROBE.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch

from ..run import Event
from . import _training as T
from . import reducers as R
from ._distributed import is_shard, local
from ._sentinel import Sentinel
from ._state import Snapshot, StepState
from ._stats import Recorder, Rows, Weight, first_bad
from ._trail import INPUT_BAD, module_input, nonfinite_share
from ._training import TrainingScalars

BIG = 2**62
STRIDE = 2**20  # positions per step in a first-non-finite code: step * STRIDE + position


class FirstNonFinite:
    """Where NaN/Inf first appeared, forward and backward, without a host sync per step.

    ``track``: True searches every step: on steps that are not logged each hook keeps
    ``Σx`` of its tensor on the device; ``push_flags`` folds a step into one int64 code per
    phase, ``min(step * STRIDE + pos)``, still on the device. The code is read with the next
    logged step's copy (or at close). ``"auto"``: logged steps only, and the free check of
    ``_sentinel`` on the others. False: off.
    """

    def __init__(self, run, track: bool | str) -> None:
        self.run = run
        self.track = track is not False  # logged steps (and update events)
        self.search = track is True  # unlogged steps too
        self.sentinel = Sentinel(run, on=track == "auto")
        self.found: dict[str, Event] = {}
        self.pending: list[Event] = []
        self._codes: dict[str, torch.Tensor] = {}
        self._seqs: dict[str, dict[int, tuple]] = {"forward": {}, "backward": {}}
        self._intern: dict[tuple, tuple] = {}
        self.rank: int | None = None  # distributed: this process's rank, named in events
        self._aranges: dict[tuple, torch.Tensor] = {}
        self.on_forward_event: Callable[[int], None] | None = None  # forward event on the host

    @property
    def tracking_forward(self) -> bool:
        """Search the tensors of unlogged steps (forward)."""
        return self.search and "forward" not in self.found

    @property
    def tracking_backward(self) -> bool:
        return self.search and "backward" not in self.found

    def check_unlogged(
        self, state: StepState, phase: str, t, where, one_process: bool, value=None, inp=None
    ) -> None:
        """A tensor of a step that is not logged (``reducers.finite_sum``). On the CPU in one
        process it is read at once, which costs nothing; on an accelerator, or distributed
        (ranks agree on the first event), it stays on the device until the next logged step
        (``push_flags``). ``value``: a sum of ``t`` computed already (``‖g‖²`` of a parameter
        gradient), used instead on the host. ``inp``: a module's forward ``args``, read only
        when its output ``t`` holds NaN/Inf (made before the module when its input held one
        too)."""
        host = one_process and R.on_host(t.device)
        s = value if host and value is not None else R.finite_sum(t, host)
        if host:
            if not math.isfinite(s.item()) and R.nonfinite_fraction(t) > 0:
                # (a zero fraction: Σx overflowed float32, large values but no NaN/Inf yet)
                a = None if inp is None else module_input(inp, t)
                note = f"; {INPUT_BAD}" if a is not None and nonfinite_share(a) > 0 else ""
                self.host_record(phase, state.index, where, None, note=note)
                if phase == "forward" and self.on_forward_event is not None:
                    self.on_forward_event(state.index)
        else:
            state.unlogged(phase).add(s, where)

    def push_flags(self, state: StepState) -> None:
        for phase in ("forward", "backward"):
            un = state.unlogged(phase)
            if not un.sums or phase in self.found:
                continue
            n = len(un.where)
            v = torch.stack(un.sums)
            key = (n, v.device)
            if key not in self._aranges:
                self._aranges[key] = torch.arange(n, device=v.device)
            bad = ~torch.isfinite(v)
            if bad.dim() > 1:  # [min, max] per tensor (reducers.finite_sum off the CPU)
                bad = bad.any(1)
            pos = torch.where(bad, self._aranges[key], BIG).amin()
            code = torch.where(pos < BIG, pos + state.index * STRIDE, BIG)
            old = self._codes.get(phase)
            self._codes[phase] = code if old is None else torch.minimum(old, code)
            t = tuple(un.where)
            self._seqs[phase][state.index] = self._intern.setdefault(t, t)

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

    def host_record(
        self, phase: str, step: int, entry, frac: float | None, rank=None, note: str = ""
    ) -> None:
        """An event read on the host; ``frac``: the fraction of NaN/Inf values (logged steps;
        None on unlogged ones, whose device path has no count either); ``note``: how it was
        read, in its detail."""
        if self.track and phase not in self.found:
            amount = "" if frac is None else f" ({frac:.3g} of its values)"
            self._add(phase, step, entry, amount + note, rank)

    def record_update(self, step: int, param: str, grad_norm: float) -> None:
        """The weights of ``param`` became NaN/Inf in the optimizer's step of ``step``, whose
        gradients were finite (an event of phase ``"update"``)."""
        if self.track and "update" not in self.found:
            detail = (
                f"the weights of parameter {param} became NaN/Inf in the optimizer step (the "
                f"step's gradients were finite: global gradient norm {grad_norm:.3g})"
            )
            event = Event(step, "update", param, detail)
            self.found["update"] = event
            self.pending.append(event)

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
        detail = self.sentinel.note_event(step, detail)
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
    """Ends a logged step: queues what is read at the end (weights, dead units, codes of
    earlier steps, the per-step scalars of ``_training``), makes the one host copy, names the
    first NaN/Inf and stores the rows."""

    def __init__(
        self, run, params: list, snapshot: Snapshot, recorder: Recorder, first: FirstNonFinite,
        training: TrainingScalars,
    ) -> None:  # fmt: skip
        self.run, self.params, self.snapshot = run, params, snapshot
        self.recorder, self.first, self.training = recorder, first, training
        self.positions_known: set[str] = set()
        self._frozen: list[str] | None = None  # as last stored in run.meta["frozen_params"]
        self._dtypes: dict[str, str] = {}  # as last stored in run.meta["layer_dtypes"]
        self._param_dtypes: list[torch.dtype] | None = None  # as in meta["param_dtypes"]
        self.weights_finite = True  # until the weights are first seen holding NaN/Inf
        self.device_flags = False  # accelerators: weights_flag() at every step's end
        self._first_bad: torch.Tensor | None = None  # per parameter, at the first bad step

    # -- weights that became NaN/Inf in the optimizer's step ("update" events) ------------
    def _watching_weights(self) -> bool:
        return self.weights_finite and self.first.track and "update" not in self.first.found

    def weights_flag(self):
        """Accelerators: 1.0 on the device when the weights hold NaN/Inf after this step."""
        if not (self.device_flags and self._watching_weights()):
            return None
        bad = T.weights_flags(self.params)
        if bad is None:
            return None
        # the parameters of the first step that had any (no sync: where, on the device)
        old = self._first_bad
        self._first_bad = bad if old is None else torch.where(old.amax() > 0, old, bad)
        return bad.amax()

    def _first_bad_param(self) -> str | None:
        names = [n for n, p in self.params if p.requires_grad and p.numel()]
        if self._first_bad is not None:
            for name, v in zip(names, self._first_bad.tolist(), strict=False):
                if v > 0:
                    return name
        return T.first_nonfinite_param(self.params)

    def check_update(self, step: int, find_param) -> None:
        """The weights were seen holding NaN/Inf after ``step``'s update: an event when that
        step's gradients were finite (``find_param()`` names the first bad parameter)."""
        if not self._watching_weights():
            return
        name = find_param()
        if name is None:  # the weights are finite: the NaN/Inf came from somewhere else
            return
        self.weights_finite = False  # from now on they are not: one event at most
        gn = self.training.last_grad_norm
        if gn is not None and gn[0] == step and math.isfinite(gn[1]):
            self.first.record_update(step, name, gn[1])

    def _updates_of(self, state: StepState, weights, host, bad_steps, rows) -> None:
        """On the host path: a weight norm the backward took (the weights after the previous
        update) that is NaN/Inf; on the device path: the steps flagged by ``weights_flag``."""
        if not self._watching_weights():
            return
        if bad_steps:
            t = bad_steps[0]
            gn = [r[3] for r in rows.get(t, ()) if r[1] == "grad_norm"]
            if gn:
                self.training.last_grad_norm = (t, gn[0])
            self.check_update(t, self._first_bad_param)
            return
        if self.device_flags:
            return
        for w in weights:
            if w.used and not math.isfinite(float(host[w.norm][0])):
                self.check_update(state.index - 1, lambda w=w: w.name)
                return

    def flush_training(self, step: int) -> None:
        """At close: the per-step scalars not stored yet, each at its own step."""
        if self.training.pending:
            rows, bad = self.training.flush()
            if self.device_flags:  # seen, never located (the run ends)
                self.first.sentinel.scan(rows, bad, step + 1, arm=False)
            for s, rs in sorted(rows.items()):
                self.run.write_step(s, rs, mark_step=False)

    def finish_logged(self, state: StepState, write: bool, scale=None) -> int:
        """Returns the number of steps written (0 or 1). ``scale``: a GradScaler's scale of
        the step's backward (its gradients are divided by it)."""
        pk, first, rec = state.packer, self.first, self.recorder
        weights = self._queue_weights(state) if write else []
        dead = rec.dead(pk, state.forward)
        codes = [(ph, pk.add(c, op="code")) for ph, c in first.device_codes()]
        queued = self.training.queue(pk) if write else []
        host = pk.to_host()
        steps, bad_steps = self.training.take(queued, host) if write else ({}, [])
        if write and self.device_flags:  # unlogged steps' loss, gradient norm, weights
            first.sentinel.scan(steps, bad_steps, state.index, arm=True)
        if first.sentinel.open is not None:  # does the step locating it use NaN/Inf weights?
            used = [float(host[w.norm][0]) for w in weights if w.used]
            first.sentinel.weights_finite = all(math.isfinite(v) for v in used) if used else None
        for phase, sl in codes:  # earlier, unlogged steps come first
            first.resolve_code(phase, int(host[sl][0]), pk.rank_of(sl.start))
        f, at = first_bad(state.forward, host)
        if f is not None:
            inp = state.inputs.find_input(f.slot.name) if state.inputs is not None else None
            note = f"; {INPUT_BAD}" if inp else ""  # made by the parent's own code
            first.host_record(
                "forward", state.index, f.slot.name, host[at] / f.n, pk.rank_of(at), note=note
            )
        state.inputs = None  # the inputs kept for it: released
        b, at = first_bad(state.backward, host)
        if b is not None:
            first.host_record("backward", state.index, b.rec.key(), host[at] / b.n, pk.rank_of(at))
        if f is None and b is None and write:
            first.sentinel.finite(state.index)
        if not write:
            return 0
        out = Rows(steps.pop(state.index, []))
        for s, rs in sorted(steps.items()):  # earlier unlogged steps: loss, lr, grad norm
            self.run.write_step(s, rs, mark_step=False)
        positions = self._positions(state)
        rec.forward_rows(state.forward, dead, host, out)
        unscale = 1.0 if scale is None else 1.0 / float(scale)  # a logged step reads anyway
        grad_norm = rec.backward_rows(state.backward, host, out, unscale)
        if grad_norm is not None:
            steps.setdefault(state.index, []).append(out.rows[-1])
        self._updates_of(state, weights, host, bad_steps, steps)
        if grad_norm is not None:
            self.training.last_grad_norm = (state.index, grad_norm)
        rec.weight_rows(weights, host, out)
        rec.attention_rows(state.attention, host, out)
        seen: dict[str, int] = defaultdict(int)
        for r in state.rnn_inputs:  # ∂L/∂x_t per RNN call ("#k": the k-th later call)
            k = seen[r.slot.name]
            seen[r.slot.name] += 1
            key = "rnn_grad_input_t" + ("" if k == 0 else f"#{k}")
            out.series.append((r.slot.name, key, list(host[r.norms])))
        self.run.write_step(state.index, out.rows, positions, out.series, out.hists, first.pending)
        first.pending = []
        self._note_frozen()
        self._note_dtypes(state)
        self._note_param_dtypes()
        return 1

    def _note_dtypes(self, state: StepState) -> None:
        """``run.meta["layer_dtypes"]``: the dtype of each module's recorded output (float16
        under autocast, ...), as of the last logged step; stored when it changes."""
        dtypes = {**self._dtypes}
        for c in state.forward:
            dtypes[c.slot.name] = str(c.dtype).removeprefix("torch.")
        if dtypes != self._dtypes:
            self._dtypes = dtypes
            self.run.set_meta("layer_dtypes", dtypes)

    def _note_param_dtypes(self) -> None:
        """``run.meta["param_dtypes"]``: ``{param: dtype}`` of the parameters stored in a
        dtype other than float32 (a model cast to bfloat16 keeps no float32 copy: a step
        under half its spacing rounds away); absent while all are float32. Stored when it
        changes."""
        dtypes = [p.dtype for _, p in self.params]
        if dtypes == self._param_dtypes:
            return
        first = self._param_dtypes is None
        self._param_dtypes = dtypes
        other = {
            n: str(d).removeprefix("torch.")
            for (n, _), d in zip(self.params, dtypes, strict=True)
            if d != torch.float32
        }
        if other or not first:
            self.run.set_meta("param_dtypes", other)

    def _note_frozen(self) -> None:
        """``run.meta["frozen_params"]``: the parameters with ``requires_grad=False`` at the
        last logged step (no gradient stats, no update ratio); stored when the set changes."""
        frozen = [n for n, p in self.params if not p.requires_grad]
        if frozen != (self._frozen or []) or (frozen and self._frozen is None):
            self._frozen = frozen
            self.run.set_meta("frozen_params", frozen)

    def _queue_weights(self, state: StepState) -> list[Weight]:
        """``‖w‖`` of the weights the step used (taken in the backward, see
        ``Probe._param_hook``; here, for a parameter the backward did not reach), and on an
        update step ``‖w - w_prev‖`` and ``‖w_prev‖`` (= ``‖w‖`` the backward took) of every
        parameter that received a gradient in this step: a frozen parameter, or one the
        step did not reach, has no update to measure (its "update" would read 0)."""
        pk, taken, snap = state.packer, state.weight_norms, self.snapshot
        scratch = self.recorder.scratch
        update = state.update and not state.skipped
        out: list[Weight | None] = []
        batch = []  # one process: the updates read in place, in one call (norms_diff)
        with torch.no_grad():
            for i, (name, p) in enumerate(self.params):
                # distributed: FSDP2 shards -> global norms; replicated (DDP) -> rank 0's
                op = "norms_shard" if is_shard(p) else "rank0"
                w = local(p.detach())
                w_sl = taken[i] if i in taken else pk.add(R.norm_of(w, scratch), op=op)
                if not (update and i in taken and snap.has(i)):
                    out.append(Weight(name, w_sl, None, None, i in taken))
                    continue
                # ‖w_prev‖: the weights the step used, copied when their norm was taken
                buf = snap.take(i)
                if pk.reduce_fn is None and R.plain_pair(buf, w):
                    batch.append((len(out), name, w_sl, buf, w))
                    out.append(None)
                    continue
                delta = R.norm_diff(buf, w, scratch)
                out.append(Weight(name, w_sl, pk.add(delta, op=op), w_sl))
            if batch:
                at = pk.add(R.norms_diff([(b[3], b[4]) for b in batch])).start
                for j, (pos, name, w_sl, _, _) in enumerate(batch):
                    out[pos] = Weight(name, w_sl, slice(at + j, at + j + 1), w_sl)
        return out  # type: ignore[return-value]  (every None filled)

    def _positions(self, state: StepState) -> dict[str, int]:
        new = {}
        for i, name in enumerate(state.called):
            if name not in self.positions_known:
                new[name] = i
                self.positions_known.add(name)
        return new
