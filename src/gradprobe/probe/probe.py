"""The probe: hooks on a model, and the run they fill (``watch()`` builds one).

Hooks reduce each tensor on its device (``reducers``); ``probe.step()`` copies the step's
numbers to the host once and stores them in the run (one transaction, ``_step``). What is
recorded and how each stat is defined: docs/PROBE.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
import weakref
from collections.abc import Callable

import torch
from torch import nn

from ..errors import InvalidInputError
from ..run import Run
from . import reducers as R
from ._distributed import Reducer, is_shard, local
from ._step import Finisher, FirstNonFinite
from .hooks import HookSet
from .modules import BwdRec, Slot, primary_tensor, rnn_time_dim, watched_modules
from .schedules import Schedule

INPUT = "(input)"
UPDATE_GAP = 10  # updates=True: the update ratio on logged steps at least this many steps apart


class Probe:
    """Hooks on a model, plus the :class:`~gradprobe.Run` they fill. Use as a context manager."""

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule,
        histograms: bool,
        run: Run,
        *,
        bins: int = 64,
        hist_range: float | None = None,
        updates: int = UPDATE_GAP,
        first_nonfinite: bool = True,
        optimizer: torch.optim.Optimizer | None = None,
        distributed: Reducer | None = None,
    ) -> None:
        self.model, self.run, self.histograms, self.bins = model, run, histograms, bins
        self._dist = distributed  # combines each logged step across ranks (_distributed.py)
        self.hist_range = None if hist_range is None else float(hist_range)
        self._schedule, self._updates, self._track = schedule, updates, first_nonfinite
        self.hooks = HookSet(on_error=self._hook_failed)
        self.warnings: list[str] = []
        self.guard = None  # set by watch(..., guard=True)
        self.skipped: list = []
        self._failed: set[tuple[str, str]] = set()
        self._closed = False
        self._step = 0
        self.slots = [Slot(0, INPUT, None)]
        self.slots += [Slot(i + 1, n, m) for i, (n, m) in enumerate(watched_modules(model))]
        self.params = [(n, p) for n, p in model.named_parameters()]
        owner = {}
        for s in self.slots[1:]:
            for pn, p in s.module.named_parameters(recurse=False):
                owner.setdefault(id(p), (s, pn))
        self._param_slot = {n: owner[id(p)][0] for n, p in self.params if id(p) in owner}
        self._register_layers()
        self.first = FirstNonFinite(run, track=first_nonfinite)
        if distributed is not None:
            distributed.bind(self)
            self.first.rank = distributed.rank
        self._finisher = Finisher(self)
        self._snap: list[torch.Tensor] | None = None
        self._snap_valid = False
        self._snap_norms: list[torch.Tensor] = []
        self._scratch = R.Scratch()  # reused CPU temporaries (reducers.Scratch)
        self._step_seconds = 0.0
        self._started = time.perf_counter()
        self._last_update: int | None = None  # the last step whose update ratio was measured
        self._on_grad_eager = self.hooks.wrap(self._on_grad, "gradient")
        try:
            self._install(optimizer)
        except BaseException:
            self.hooks.remove()
            raise
        self._begin_step()

    # -- setup ---------------------------------------------------------------------------
    def _register_layers(self) -> None:
        self.run.add_layer(INPUT, "input")
        for s in self.slots[1:]:
            act = s.act.label() if s.act else None
            self.run.add_layer(s.name, "module", type(s.module).__name__, act)
        for n, p in self.params:
            self.run.add_layer(n, "param", "Parameter", None, tuple(p.shape))

    def _install(self, optimizer: torch.optim.Optimizer | None) -> None:
        root = self.slots[0]
        self.hooks.forward_pre(self.model, self._input_hook(root), "(model) input", True)
        for s in self.slots[1:]:
            self.hooks.forward_pre(s.module, self._pre_hook(s), s.name)
            self.hooks.forward(s.module, self._fwd_hook(s), s.name)
        for i, (n, p) in enumerate(self.params):
            if p.requires_grad and n in self._param_slot:
                rec = BwdRec("param", self._param_slot[n], n)
                self.hooks.param(p, self._param_hook(rec, i), n)
        if optimizer is not None:
            self.hooks.optimizer_step(optimizer, lambda *_: self.step())

    # -- per-step state --------------------------------------------------------------------
    def _begin_step(self) -> None:
        self.logged = bool(self._schedule(self._step))
        self.packer = R.Packer(self._dist)
        self.fwd: list[tuple] = []  # logged: (slot, n, moments slice, sat, unitmax, hist)
        self.bwd: list[tuple] = []  # logged: (rec, n, moments slice, time norms, hist)
        self.fwd_ext: list[torch.Tensor] = []  # not logged: Σx per call
        self.fwd_seq: list[str] = []
        self.bwd_ext: list[torch.Tensor] = []
        self.bwd_seq: list[tuple] = []
        self.hist_r: dict[tuple, object] = {}  # half-range per (module, kind)
        self.called: dict[str, None] = {}  # execution order (forward hooks' order)
        self.rnn_in: list[tuple] = []  # (slot, time-norm slice) of ∂L/∂x_t
        self._outs: dict[int, tuple] = {}  # id(output) -> (weakref, BwdRec), for consumers
        self.weight_norms: dict[int, slice] = {}  # logged: param index -> ‖w‖ taken in backward
        gap, last = self._updates, self._last_update
        self._snap_valid = bool(gap and self.logged and (last is None or self._step - last >= gap))
        if self._snap_valid:
            self._last_update = self._step
            self._take_snapshot()

    def _take_snapshot(self) -> None:
        """Copy the parameters (the update ratio's ``w_{t-1}``) and take their norms while the
        copy is in cache; the buffers are allocated once and reused."""
        with torch.no_grad():
            if self._snap is None:
                self._snap = [p.detach().clone() for _, p in self.params]
            else:
                for buf, (_, p) in zip(self._snap, self.params, strict=True):
                    buf.copy_(p.detach())
            self._snap_norms = [R.norm(local(buf)) for buf in self._snap]

    @property
    def step_index(self) -> int:
        """The index of the step being recorded now (0 before the first ``step()``)."""
        return self._step

    def _want_fwd(self) -> bool:
        return self.logged or self.first.tracking_forward

    def _want_bwd(self) -> bool:
        return self.logged or self.first.tracking_backward

    # -- hooks -----------------------------------------------------------------------------
    def _hist(self, key: tuple, t: torch.Tensor, mom: tuple) -> slice | None:
        """Histogram of ``t``; a module's later calls in a step reuse its first call's range."""
        if not self.histograms:
            return None
        r = self.hist_r.get(key, self.hist_range)
        r, *rest = R.histogram(
            t, self.bins, r, ext=mom[2:4], pow2=self._dist is not None, scratch=self._scratch
        )
        self.hist_r.setdefault(key, r)
        return self.packer.add(r, *rest, op="hist" if key[1] == "a" else "hist_grad")

    def _record_fwd(self, slot: Slot, t: torch.Tensor) -> None:
        if self.logged:
            p = self.packer
            mom = R.moments(t)
            m = p.add(*mom, op="moments")
            sat = unitmax = None
            if slot.act is not None and slot.act.kind == "saturating":
                sat = p.add(R.saturated_count(t, slot.act.lo, slot.act.hi, scratch=self._scratch))
            elif slot.act is not None and t.dim() > 0 and t.shape[0] > 0:
                unitmax = R.unit_max(t)
            self.fwd.append((slot, t.numel(), m, sat, unitmax, self._hist((slot.id, "a"), t, mom)))
        else:
            self._check_unlogged("forward", t, slot.name)

    def _input_hook(self, slot: Slot) -> Callable:
        def hook(module, args, kwargs=None):
            if not self.hooks.active or not self._want_fwd():
                return
            t = primary_tensor((args, kwargs))
            if self.logged:
                self.called.setdefault(slot.name)
            if t is not None and t.numel():
                self._record_fwd(slot, t)

        return hook

    def _pre_hook(self, slot: Slot) -> Callable:
        def hook(module, args):
            if not self.hooks.active or not self._want_bwd():
                return None
            new_args = None
            for i, a in enumerate(args):
                if not isinstance(a, torch.Tensor):
                    continue
                entry = self._outs.get(id(a))
                if entry is not None and entry[0]() is a:
                    entry[1].consumers.append(slot.name)
                if i == 0 and slot.is_rnn and self.logged and a.is_floating_point():
                    # ∂L/∂x_t through the whole recurrence: hook the input sequence. Data
                    # that needs no gradient is replaced by a leaf view that does.
                    if not a.requires_grad and torch.is_grad_enabled():
                        a = a.detach().requires_grad_(True)
                        new_args = (a, *args[1:])
                    if a.requires_grad:
                        fn = self._rnn_input_hook(slot, rnn_time_dim(module, a))
                        a.register_hook(self.hooks.wrap(fn, f"{slot.name} input gradient"))
            return new_args

        return hook

    def _fwd_hook(self, slot: Slot) -> Callable:
        def hook(module, args, output):
            if not self.hooks.active:
                return
            # the forward search may have ended (a NaN found) while the backward goes on
            want_fwd, want_bwd = self._want_fwd(), self._want_bwd()
            if not (want_fwd or want_bwd):
                return
            if self.logged:
                self.called.setdefault(slot.name)
            t = primary_tensor(output)
            if t is None or t.numel() == 0:
                return
            if want_fwd:
                self._record_fwd(slot, t)
            if t.requires_grad and want_bwd:
                rec = BwdRec("out", slot, slot.name)
                self._outs[id(t)] = (weakref.ref(t), rec)
                tdim = rnn_time_dim(module, output[0]) if slot.is_rnn else None
                t.register_hook(functools.partial(self._on_grad_eager, rec, tdim, self._step))

        return hook

    def _on_grad(self, rec: BwdRec, time_dim: int | None, step: int, grad: torch.Tensor):
        if self.hooks.active and step == self._step:
            self._record_bwd(rec, grad, time_dim)

    def _param_hook(self, rec: BwdRec, index: int) -> Callable:
        def hook(param):
            if self.hooks.active and self._want_bwd() and param.grad is not None:
                self._record_bwd(rec, param.grad, None)
                if self.logged and index not in self.weight_norms:
                    # ‖w‖ of the weights this step used: the backward just read them, so
                    # they are in cache (at probe.step() they would be read from memory).
                    # Distributed: FSDP2 shards -> global norms; replicated (DDP) -> rank 0's
                    op = "norms_shard" if is_shard(param) else "rank0"
                    with torch.no_grad():
                        wn = R.norm(local(param.detach()))
                    self.weight_norms[index] = self.packer.add(wn, op=op)

        return hook

    def _rnn_input_hook(self, slot: Slot, time_dim: int | None) -> Callable:
        step = self._step

        def hook(grad):
            if self.hooks.active and step == self._step and time_dim is not None:
                tn = self.packer.add(R.time_norms(grad, time_dim), op="norms_grad")
                self.rnn_in.append((slot, tn))

        return hook

    def _record_bwd(self, rec: BwdRec, g: torch.Tensor, time_dim: int | None) -> None:
        op = "moments_grad"
        if self._dist is not None:
            op = "moments_shard" if is_shard(g) else op
            g = local(g)
            if self.logged:
                # parameter gradients are read once synced, at the end of the backward
                self._dist.after_backward()
                if rec.kind == "param":
                    return
        if self.logged:
            p = self.packer
            mom = R.moments(g)
            m = p.add(*mom, op=op)
            tn = None
            if time_dim is not None:
                tn = p.add(R.time_norms(g, time_dim), op="norms_grad")
            h = self._hist((rec.slot.id, "g"), g, mom) if rec.kind == "out" else None
            self.bwd.append((rec, g.numel(), m, tn, h))
        elif self.first.tracking_backward:
            self._check_unlogged("backward", g, rec.key())

    def _check_unlogged(self, phase: str, t: torch.Tensor, entry) -> None:
        """First-non-finite on a step that is not logged: ``Σx`` of the tensor. On the CPU (one
        process) it is read at once, which costs nothing; on an accelerator, or distributed
        (ranks agree on the first event), it stays on the device until the next logged step."""
        s = R.finite_sum(t)
        if self._dist is None and R.on_host(s.device):
            if not math.isfinite(s.item()) and R.nonfinite_fraction(t) > 0:
                # (a zero fraction: Σx overflowed float32, large values but no NaN/Inf yet)
                self.first.host_record(phase, self._step, entry, None)
        elif phase == "forward":
            self.fwd_ext.append(s)
            self.fwd_seq.append(entry)
        else:
            self.bwd_ext.append(s)
            self.bwd_seq.append(entry)

    # -- steps -----------------------------------------------------------------------------
    def step(self) -> None:
        """Mark the end of a training step (after ``optimizer.step()``).

        A failure while recording (a hook that failed earlier, a full disk) is recorded as
        a warning and the step's numbers are dropped; it never stops the training loop.
        """
        self._check_open()
        t0 = time.perf_counter()
        try:
            if self.logged:
                self._finisher.finish_logged(self._step, write=True)
            else:
                self.first.push_flags(self)
        except Exception as err:
            self._hook_failed(f"step {self._step}", err)
        self._step += 1
        self._begin_step()
        self._step_seconds += time.perf_counter() - t0

    @property
    def seconds(self) -> float:
        """Host time spent inside the probe so far: its hooks and ``step()`` (on an
        accelerator, kernels it queued may finish later). Compare with the wall time of the
        training loop to see what watching costs on your model; stored at close as
        ``run.meta["probe_seconds"]`` beside ``run.meta["watched_seconds"]``."""
        return self.hooks.seconds + self._step_seconds

    def _guard_skipped(self, skipped) -> None:
        """The guard skipped a step: the optimizer's post-hook will not end it, so end it here."""
        self.skipped.append(skipped)
        with contextlib.suppress(Exception):
            self.run.set_meta(
                "guard_skipped",
                [{"step": s.step, "reason": s.reason, "origin": s.origin} for s in self.skipped],
            )
        self.step()

    def _hook_failed(self, where: str, err: Exception) -> None:
        """Record a probe failure as a warning in the run (once per place and error type)."""
        key = (where.split(" ")[0], type(err).__name__)
        if key in self._failed:
            return
        self._failed.add(key)
        message = f"{where}: {type(err).__name__}: {err}"
        self.warnings.append(message)
        logging.getLogger("gradprobe").warning("gradprobe probe failed at %s", message)
        with contextlib.suppress(Exception):  # the store itself may be what failed
            self.run.set_meta("warnings", self.warnings)

    def close(self) -> None:
        """Remove every hook (idempotent) and record any pending first-non-finite event."""
        if self._closed:
            return
        self._closed = True
        if self.guard is not None:
            self.guard.close()
        try:
            self.hooks.remove()
        finally:
            self._snap = None
            self._scratch = R.Scratch()  # free the buffers
            try:  # a step cut short (an exception) still names its first non-finite
                self.packer.reduce_fn = None  # no collective here: other ranks may be gone
                if self.logged and (self.fwd or self.bwd):
                    self._finisher.finish_logged(self._step, write=False)
                elif not self.logged:
                    self.first.push_flags(self)
                self.first.flush(self._step)
            finally:
                try:
                    self.run.set_meta("closed_at_step", self._step)
                    self.run.set_meta("probe_seconds", round(self.seconds, 6))
                    watched = time.perf_counter() - self._started
                    self.run.set_meta("watched_seconds", round(watched, 6))
                finally:
                    self.run.finish_writing()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError(
                "this probe is closed; call probe.step() inside the `with gp.watch(...)` block"
            )

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
