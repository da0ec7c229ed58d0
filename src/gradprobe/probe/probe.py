"""The probe: hooks on a model, and the run they fill (``watch()`` builds one).

Hooks reduce each tensor on its device (``reducers``) and keep where its numbers will land
in typed records (``_stats``) of the step's private state (``_state.StepState``);
``probe.step()`` copies the step's numbers to the host once and stores them in the run (one
transaction, ``_step``). What is recorded and how each stat is defined: docs/PROBE.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import warnings
import weakref
from collections.abc import Callable

import torch
from torch import nn

from ..errors import GradprobeWarning, InvalidInputError, RunStoreError
from ..run import Run
from . import reducers as R
from ._distributed import Reducer, is_shard, local
from ._state import Output, RnnInput, Snapshot, StepState
from ._stats import Recorder
from ._step import Finisher, FirstNonFinite
from .hooks import HookSet
from .modules import BwdRec, Slot, primary_tensor, real_values, rnn_time_dim, watched_modules
from .schedules import Schedule

INPUT = "(input)"
UPDATE_GAP = 10  # updates=True: the update ratio on logged steps at least this many steps apart


class Probe:
    """Hooks on a model, plus the :class:`~gradprobe.Run` they fill. Use as a context manager.

    Public: ``run``, ``model``, ``hooks`` (``hooks.active = False`` pauses recording),
    ``warnings`` (probe failures), ``guard`` and ``skipped`` (``watch(..., guard=True)``),
    ``step()``, ``step_index``, ``seconds``, ``closed``, ``close()``. Everything else is the
    probe's own state.
    """

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
        self.model, self.run = model, run
        self.hooks = HookSet(on_error=self._hook_failed)
        self.warnings: list[str] = []
        self.guard = None  # a Guard, with watch(..., guard=True)
        self.skipped: list = []  # the guard's SkippedStep records
        self._dist = distributed  # combines each logged step across ranks (_distributed.py)
        self._schedule, self._updates = schedule, updates
        hist_range = None if hist_range is None else float(hist_range)
        self._recorder = Recorder(histograms, bins, hist_range, pow2=distributed is not None)
        self._failed: set[tuple[str, str]] = set()
        self._closed = False
        self._step = 0
        self._recorded = 0  # logged steps written to the run
        self._slots = [Slot(0, INPUT, None)]
        self._slots += [Slot(i + 1, n, m) for i, (n, m) in enumerate(watched_modules(model))]
        self._params = [(n, p) for n, p in model.named_parameters()]
        owner: dict[int, Slot] = {}
        for s in self._slots[1:]:
            for p in s.module.parameters(recurse=False):
                owner.setdefault(id(p), s)
        self._param_slot = {n: owner[id(p)] for n, p in self._params if id(p) in owner}
        self._hooked: set[int] = set()  # parameters (by index) with a gradient hook
        self._register_layers()
        self._first = FirstNonFinite(run, track=first_nonfinite)
        if distributed is not None:
            distributed.bind(lambda: self._state, self._pack_param_grads)
            self._first.rank = distributed.rank
        self._snapshot = Snapshot()
        self._finisher = Finisher(run, self._params, self._snapshot, self._recorder, self._first)
        self._step_seconds = 0.0
        self._started = time.perf_counter()
        self._last_update: int | None = None  # the last step whose update ratio was measured
        self._on_grad_eager = self.hooks.wrap(self._on_grad, "gradient")
        self._state = StepState(0, False, R.Packer(distributed))
        try:
            self._install(optimizer)
            self._begin_step()
        except BaseException:
            self.hooks.remove()
            raise

    # -- setup ---------------------------------------------------------------------------
    def _register_layers(self) -> None:
        self.run.add_layer(INPUT, "input")
        for s in self._slots[1:]:
            act = s.act.label() if s.act else None
            self.run.add_layer(s.name, "module", type(s.module).__name__, act)
        for n, p in self._params:
            self.run.add_layer(n, "param", "Parameter", None, tuple(p.shape))

    def _install(self, optimizer: torch.optim.Optimizer | None) -> None:
        root = self._slots[0]
        self.hooks.forward_pre(self.model, self._input_hook(root), "(model) input", True)
        for s in self._slots[1:]:
            self.hooks.forward_pre(s.module, self._pre_hook(s), s.name)
            self.hooks.forward(s.module, self._fwd_hook(s), s.name)
        self._hook_params()
        if optimizer is not None:
            self.hooks.optimizer_step(optimizer, lambda *_: self.step())

    def _hook_params(self) -> None:
        """A gradient hook on every trainable parameter; one unfrozen later gets its hook at
        the first forward of the next logged step (frozen tensors cannot be hooked)."""
        for i, (n, p) in enumerate(self._params):
            if p.requires_grad and i not in self._hooked and n in self._param_slot:
                rec = BwdRec("param", self._param_slot[n], n)
                self.hooks.param(p, self._param_hook(rec, i), n)
                self._hooked.add(i)

    # -- per-step state --------------------------------------------------------------------
    def _begin_step(self) -> None:
        logged = False
        try:  # the user's schedule: never stops the loop
            logged = bool(self._schedule(self._step))
        except Exception as err:
            self._hook_failed(f"schedule at step {self._step}", err)
        self._state = st = StepState(self._step, logged, R.Packer(self._dist))
        if not logged:
            return
        gap, last = self._updates, self._last_update
        st.update = bool(gap and (last is None or self._step - last >= gap))
        if st.update:
            self._last_update = self._step
            self._snapshot.take(self._params, self._recorder.scratch)

    @property
    def step_index(self) -> int:
        """The index of the step being recorded now (0 before the first ``step()``)."""
        return self._step

    @property
    def closed(self) -> bool:
        return self._closed

    def _want_fwd(self) -> bool:
        return self._state.logged or self._first.tracking_forward

    def _want_bwd(self) -> bool:
        return self._state.logged or self._first.tracking_backward

    # -- hooks -----------------------------------------------------------------------------
    def _record_fwd(self, slot: Slot, t: torch.Tensor) -> None:
        st = self._state
        if t.dtype.is_complex or t.layout != torch.strided:
            t = real_values(t)
        if st.logged:
            st.forward.append(self._recorder.forward(st.packer, st.hist_ranges, slot, t))
        else:
            self._first.check_unlogged(st, "forward", t, slot.name, self._dist is None)

    def _input_hook(self, slot: Slot) -> Callable:
        def hook(module, args, kwargs=None):
            if not self.hooks.active or not self._want_fwd():
                return
            t, st = primary_tensor((args, kwargs)), self._state
            if st.logged:
                if not st.called:  # the step's first forward: parameters unfrozen since
                    self._hook_params()
                st.called.setdefault(slot.name)
            if t is not None and t.numel():
                self._record_fwd(slot, t)

        return hook

    def _pre_hook(self, slot: Slot) -> Callable:
        def hook(module, args):
            if not self.hooks.active or not self._want_bwd():
                return None
            st, new_args = self._state, None
            for i, a in enumerate(args):
                if not isinstance(a, torch.Tensor):
                    continue
                out = st.outputs.get(id(a))
                if out is not None and out.ref() is a:
                    out.rec.consumers.append(slot.name)
                if i == 0 and slot.is_rnn and st.logged and a.is_floating_point():
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
            st = self._state
            if st.logged:
                st.called.setdefault(slot.name)
            t = primary_tensor(output)
            if t is None or t.numel() == 0:
                return
            if want_fwd:
                self._record_fwd(slot, t)
            if t.requires_grad and want_bwd:
                rec = BwdRec("out", slot, slot.name)
                st.outputs[id(t)] = Output(weakref.ref(t), rec)
                tdim = rnn_time_dim(module, t) if slot.is_rnn else None
                t.register_hook(functools.partial(self._on_grad_eager, rec, tdim, self._step))

        return hook

    def _on_grad(self, rec: BwdRec, time_dim: int | None, step: int, grad: torch.Tensor):
        if self.hooks.active and step == self._step:
            self._record_bwd(rec, grad, time_dim)

    def _param_hook(self, rec: BwdRec, index: int) -> Callable:
        def hook(param):
            if self.hooks.active and self._want_bwd() and param.grad is not None:
                st = self._state
                self._record_bwd(rec, param.grad, None)
                if st.logged and index not in st.weight_norms:
                    # ‖w‖ of the weights this step used: the backward just read them, so
                    # they are in cache (at probe.step() they would be read from memory).
                    # Distributed: FSDP2 shards -> global norms; replicated (DDP) -> rank 0's
                    op = "norms_shard" if is_shard(param) else "rank0"
                    with torch.no_grad():
                        wn = R.norm(local(param.detach()), self._recorder.scratch)
                    st.weight_norms[index] = st.packer.add(wn, op=op)

        return hook

    def _rnn_input_hook(self, slot: Slot, time_dim: int | None) -> Callable:
        step = self._step

        def hook(grad):
            st = self._state
            if self.hooks.active and step == self._step and time_dim is not None and grad.numel():
                tn = st.packer.add(R.time_norms(real_values(grad), time_dim), op="norms_grad")
                st.rnn_inputs.append(RnnInput(slot, tn))

        return hook

    def _record_bwd(self, rec: BwdRec, g: torch.Tensor, time_dim: int | None) -> None:
        if g.numel() == 0:
            return
        st, op = self._state, "moments_grad"
        if g.dtype.is_complex or g.layout != torch.strided:
            g = real_values(g)
        if self._dist is not None:
            op = "moments_shard" if is_shard(g) else op
            g = local(g)
            if st.logged:
                # parameter gradients are read once synced, at the end of the backward
                self._dist.after_backward()
                if rec.kind == "param":
                    return
        if st.logged:
            st.backward.append(
                self._recorder.backward(st.packer, st.hist_ranges, rec, g, time_dim, op)
            )
        elif self._first.tracking_backward:
            self._first.check_unlogged(st, "backward", g, rec.key(), self._dist is None)

    def _pack_param_grads(self) -> None:
        if self._state.logged and self.hooks.active:
            self._recorder.param_grads(self._state, self._params, self._param_slot)

    # -- steps -----------------------------------------------------------------------------
    def step(self) -> None:
        """Mark the end of a training step (after ``optimizer.step()``).

        A failure while recording (a hook that failed earlier, a full disk) is recorded as
        a warning and the step's numbers are dropped; it never stops the training loop.
        """
        self._check_open()
        t0 = time.perf_counter()
        st = self._state
        try:
            if st.logged:
                self._recorded += self._finisher.finish_logged(st, write=True)
            else:
                self._first.push_flags(st)
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
        """The guard skipped this step's optimizer step (the step still ends, when the guard's
        post-hook calls ``step()``): listed in the run; no update ratio for it."""
        self.skipped.append(skipped)
        self._state.skipped = True
        with contextlib.suppress(Exception):
            self.run.set_meta(
                "guard_skipped",
                [{"step": s.step, "reason": s.reason, "origin": s.origin} for s in self.skipped],
            )

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
        """Remove every hook (idempotent) and record any pending first-non-finite event.

        Closing a probe whose ``step()`` was never called warns (``GradprobeWarning``): it
        recorded nothing, and ``run.meta["steps_recorded"]`` says 0."""
        self._close(warn_empty=True)

    def _close(self, warn_empty: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if self.guard is not None:
            self.guard.close()
        try:
            self.hooks.remove()
        finally:
            self._snapshot.clear()
            self._recorder.scratch = R.Scratch()  # free the buffers
            st = self._state
            try:  # a step cut short (an exception) still names its first non-finite
                st.packer.reduce_fn = None  # no collective here: other ranks may be gone
                if st.logged and (st.forward or st.backward):
                    self._finisher.finish_logged(st, write=False)
                elif not st.logged:
                    self._first.push_flags(st)
                self._first.flush(self._step)
            except RunStoreError:
                pass  # a full disk: run.close() below warns once, saying what was kept
            finally:
                watched = time.perf_counter() - self._started
                self.run.close(  # the closing meta, then the lock and the WAL are let go
                    meta={
                        "closed_at_step": self._step,
                        "steps_recorded": self._recorded,
                        "probe_seconds": round(self.seconds, 6),
                        "watched_seconds": round(watched, 6),
                    }
                )
        if warn_empty and self._step == 0:
            warnings.warn(
                "gradprobe recorded no step: probe.step() was never called, so the run is "
                "empty (run.meta['steps_recorded'] == 0); call probe.step() after each "
                "optimizer.step(), or pass optimizer=opt to gp.watch() to have it called",
                GradprobeWarning,
                stacklevel=3,
            )

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError(
                "this probe is closed; call probe.step() inside the `with gp.watch(...)` block"
            )

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self._close(warn_empty=exc_type is None)  # no warning over the loop's own error
