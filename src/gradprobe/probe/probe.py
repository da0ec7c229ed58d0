"""The probe: hooks on a model, and the run they fill (``watch()`` builds one).

Hooks reduce each tensor on its device (``reducers``) and keep where its numbers will land
in typed records (``_stats``) of the step's private state (``_state.StepState``);
``probe.step()`` copies the step's numbers to the host once and stores them in the run (one
transaction, ``_step``). What is recorded and how each stat is defined: docs/PROBE.md.
"""

from __future__ import annotations

import functools
import math
import time
import weakref
from collections.abc import Callable

import torch
from torch import nn

from ..run import Run
from . import modules as M
from . import reducers as R
from ._attention import AttentionHooks
from ._dataflow import SiblingFlow
from ._distributed import Reducer, is_shard, local
from ._functional import FunctionalHooks
from ._grads import GradBatch, available
from ._kept import KeptGrads
from ._lifecycle import Lifecycle
from ._state import Output, RnnInput, Snapshot, StepState
from ._stats import Recorder
from ._step import Finisher, FirstNonFinite
from ._trail import INPUT_BAD, Trail, module_input
from ._training import MODEL, TrainingScalars, first_nonfinite_param, scale_of
from .hooks import HookSet
from .modules import BwdRec, Slot, primary_tensor, real_values, rnn_time_dim, watched_modules
from .schedules import Schedule

INPUT = "(input)"
UPDATE_GAP = 10  # updates=True: the update ratio on logged steps at least this many steps apart
EARLY_STEPS = 20  # the update ratio on every logged step before this one (a too-large first step)
#: the detail of an event located by _trail when earlier outputs were gone (diagnose reads it)
UNREAD = "it may have begun in a module before it whose output was freed or changed in place:"
OUTPUT_CHECK_MAX = 1 << 22  # values: the model's output read by the free check of unlogged steps


class Probe(AttentionHooks, FunctionalHooks, Lifecycle):
    """Hooks on a model, plus the :class:`~gradprobe.Run` they fill. Use as a context manager.

    Public: ``run``, ``model``, ``hooks`` (``hooks.active = False`` pauses recording),
    ``warnings`` (probe failures), ``guard`` and ``skipped`` (``watch(..., guard=True)``),
    ``step(loss=None)``, ``step_index``, ``seconds``, ``closed``, ``close()``,
    ``EARLY_STEPS``. Everything else is the probe's own state.
    """

    EARLY_STEPS = EARLY_STEPS

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
        first_nonfinite: bool | str = "auto",
        optimizer: torch.optim.Optimizer | None = None,
        distributed: Reducer | None = None,
        scaler=None,
    ) -> None:
        self.model, self.run = model, run
        self._scaler = scaler  # a GradScaler: the backward's gradients are scaled by its scale
        self._trained = False  # a forward with gradients seen: no_grad forwards are evaluation
        self._scaler_looks = 0  # optimizer steps looked at for a GradScaler calling them
        self._scale_at: tuple[int, object] | None = None  # (step, the scale of its backward)
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
        self._kept = KeptGrads(self._params, self.hooks, lambda: self._step)  # zero_grad()?
        owner: dict[int, Slot] = {}
        for s in self._slots[1:]:
            for p in s.module.parameters(recurse=False):
                owner.setdefault(id(p), s)
        # a parameter a container holds (torch.nn.utils.parametrizations keeps a weight's
        # ``original`` in a ParametrizationList): the nearest watched module above owns it
        slots = {s.name: s for s in self._slots[1:]}
        for n, p in self._params:
            prefix = n
            while id(p) not in owner and "." in prefix:
                prefix = prefix.rsplit(".", 1)[0]
                if prefix in slots:
                    owner[id(p)] = slots[prefix]
        self._param_slot = {n: owner[id(p)] for n, p in self._params if id(p) in owner}
        self._hooked: set[int] = set()  # parameters (by index) with a gradient hook
        self._register_layers()
        self._first = FirstNonFinite(run, track=first_nonfinite)
        if distributed is not None:
            distributed.bind(lambda: self._state, self._pack_param_grads)
            self._first.rank = distributed.rank
        self._snapshot = Snapshot()
        # one process on the CPU: a logged step's parameters read in one call (_grads)
        self._grads = None
        if distributed is None and available():
            wrap = functools.partial(self.hooks.wrap, name="parameter gradients")
            self._grads = GradBatch(self._snapshot, wrap)
        self._training = TrainingScalars(distributed)
        self._finisher = Finisher(
            run, self._params, self._snapshot, self._recorder, self._first, self._training
        )
        self._optimizer = optimizer  # its learning rates are recorded every step
        # who ended the last step, while no forward has run since: "optimizer" (then a
        # step(loss=) gives that step its loss) or "user" (then optimizer.step() ends nothing)
        self._ended: str | None = None
        self._on_host = distributed is None and all(R.on_host(p.device) for _, p in self._params)
        self._first.on_forward_event = self._weights_after_update
        # the module outputs of an unlogged step, read when its output is NaN/Inf (_trail)
        self._trail = Trail()
        self._trailing = self._first.sentinel.on and self._on_host
        self._root_slot = next((s for s in self._slots[1:] if s.module is model), None)
        self._finisher.weights_finite = first_nonfinite_param(self._params) is None
        self._finisher.device_flags = not self._on_host
        self._step_seconds = 0.0
        self._started = time.perf_counter()
        self._last_update: int | None = None  # the last step whose update ratio was measured
        self._last_logged = False  # the step that ended last was logged
        self._on_grad_eager = self.hooks.wrap(self._on_grad, "gradient")
        self._state = StepState(0, False, R.Packer(distributed))
        try:
            self._install(optimizer)
            self._begin_step()
        except BaseException:
            self.hooks.remove()
            self._remove_attention()  # the SDPA wrapper too: no observer of a dead probe
            self._remove_functional()
            raise

    # -- setup ---------------------------------------------------------------------------
    def _register_layers(self) -> None:
        self.run.add_layer(INPUT, "input")
        for s in self._slots[1:]:
            act = s.act.label() if s.act else None
            self.run.add_layer(s.name, "module", type(s.module).__name__, act)
        for n, p in self._params:
            self.run.add_layer(n, "param", "Parameter", None, tuple(p.shape))
        if all(s.name != MODEL for s in self._slots):  # a container root: for the loss rows
            self.run.add_layer(MODEL, "model", type(self.model).__name__, None)
        tied = M.tied_parameters(self.model)  # {alias: the name named_parameters() lists}
        if tied:  # diagnose/blocks.py: a tied head is its embedding's parameter
            self.run.set_meta("tied_params", tied)

    def _install(self, optimizer: torch.optim.Optimizer | None) -> None:
        root = self._slots[0]
        self.hooks.forward_pre(self.model, self._input_hook(root), "(model) input", True)
        self.hooks.forward(self.model, self._output_hook(), "(model) output")
        for s in self._slots[1:]:
            # off on steps that record nothing (HookSet.pause)
            self.hooks.forward_pre(s.module, self._pre_hook(s), s.name, pausable=True)
            self.hooks.forward(s.module, self._fwd_hook(s), s.name, pausable=True)
            if self._trailing:  # on only while the others are off: unlogged steps
                self.hooks.forward(s.module, self._trail_hook(s), s.name, while_paused=True)
        self._hook_params()
        self._install_attention()
        self._install_functional()
        # which module lists are chains and which parallel branches (once: _dataflow)
        self._flow = SiblingFlow(self.model, self.hooks, lambda: self._state.logged)
        if optimizer is not None:
            self.hooks.optimizer_step(optimizer, lambda *_: self._auto_step())

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
        # a NaN/Inf seen by the free check of an unlogged step: this step locates it
        logged = self._first.sentinel.take_arm()
        try:  # the user's schedule: never stops the loop
            logged = bool(self._schedule(self._step)) or logged
        except Exception as err:
            self._hook_failed(f"schedule at step {self._step}", err)
        self._state = st = StepState(self._step, logged, R.Packer(self._dist))
        self._trail.clear()
        if logged and self._on_host and self._first.track:  # for the module a NaN is found in
            st.inputs = Trail()
        if not logged and not self._first.search:
            # nothing per module: no statistics and no search; the outputs noted (_trail)
            self.hooks.pause(self._trailing and self._first.sentinel.active)
        else:
            self.hooks.resume()
        if not logged:
            return
        gap, last = self._updates, self._last_update
        regular = bool(gap and (last is None or self._step - last >= gap))
        st.update = regular or bool(gap and self._step < EARLY_STEPS)
        if regular:
            self._last_update = self._step
        if st.update:
            self._snapshot.start()  # each parameter is copied in its gradient hook

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
    def _record_fwd(self, slot: Slot, t: torch.Tensor, args=None) -> None:
        """``args``: the module's forward arguments (``first_nonfinite=True``, unlogged steps
        on the host: read only for a NaN/Inf output, made before the module when its input
        held one already)."""
        st = self._state
        if t.dtype.is_complex or t.layout != torch.strided:
            t = real_values(t)
        if st.logged:
            st.forward.append(self._recorder.forward(st.packer, st.hist_ranges, slot, t))
        else:
            self._first.check_unlogged(st, "forward", t, slot.name, self._dist is None, inp=args)

    def _evaluating(self) -> bool:
        """A forward under ``torch.no_grad()``/``inference_mode`` in a run that trains (a
        forward with gradients was seen): an evaluation between training steps, not part of
        one — not recorded, and it starts no step. A probe that only ever sees forwards
        without gradients (activations at inference) records them."""
        return self._trained and not torch.is_grad_enabled()

    def _input_hook(self, slot: Slot) -> Callable:
        def hook(module, args, kwargs=None):
            if self._evaluating():
                return
            self._trained = self._trained or torch.is_grad_enabled()
            self._forwards += 1  # mid-step until the step ends (_lifecycle._note_beside)
            self._ended = None  # a new forward: the next step() or optimizer.step() ends a step
            if self.hooks.trail and self.hooks.active and not self._state.logged:
                t = primary_tensor((args, kwargs))
                if t is not None and t.numel():
                    self._trail.note(slot.name, t)
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

    def _output_hook(self) -> Callable:
        """The model's output on an unlogged step, read by the free check of
        ``first_nonfinite="auto"`` (one sum, CPU, one process): a NaN/Inf made in the
        forward is then told from one the loss made (episode ``seen_in`` "output")."""

        def hook(module, args, output):
            st, sentinel = self._state, self._first.sentinel
            if st.logged or not (self._on_host and sentinel.active) or self._evaluating():
                return
            t = primary_tensor(output, skip_scalars=True)
            if t is None or not 0 < t.numel() <= OUTPUT_CHECK_MAX or not R.on_host(t.device):
                self._trail.clear()
                return  # (a larger output: the loss alone says a NaN/Inf was there)
            if t.dtype.is_complex or t.layout != torch.strided:
                t = real_values(t)
            if not math.isfinite(R.finite_sum(t).item()) and R.nonfinite_fraction(t) > 0:
                sentinel.fire(st.index, "output")
                root = self._root_slot  # a watched root: its hook runs after this one
                if root is not None and self._trailing and self.hooks.trail:
                    mine = primary_tensor(output)
                    if mine is not None and mine.numel():
                        self._trail.note(root.name, mine)
                self._locate_in_trail(st.index)
            self._trail.clear()

        return hook

    def _trail_hook(self, slot: Slot) -> Callable:
        """Unlogged steps (``first_nonfinite="auto"``, CPU): note the module's output, read
        only if the model's output turns out NaN/Inf (_trail)."""

        def hook(module, args, output):
            if self._state.logged or self._evaluating() or not self.hooks.active:
                return
            t = primary_tensor(output)
            if t is not None and t.numel():
                a = module_input(args, t)
                if a is not None:
                    self._trail.note_input(slot.name, a)  # made by the parent's own code?
                self._trail.note(slot.name, t)

        return hook

    def _locate_in_trail(self, step: int) -> None:
        """The model's output of unlogged ``step`` held NaN/Inf: the first module output
        noted in its forward that does is the forward's event, as the exact search would
        have named it; then, were the weights that forward used made NaN/Inf by the
        optimizer step before it?"""
        found = self._trail.first_nonfinite()
        if found is None:
            return  # none of the outputs that could be read: the step after it is logged
        name, frac, unread, is_input = found
        note = "; read at the end of this unlogged step's forward"
        if is_input:
            note += f"; {INPUT_BAD}"
        if unread:
            names = ", ".join(unread[:4]) + (", …" if len(unread) > 4 else "")
            note += f"; {UNREAD} {names}"
        # the weights this forward used (the episode's "weights_finite", as at a logged step)
        self._first.sentinel.weights_finite = first_nonfinite_param(self._params) is None
        self._first.host_record("forward", step, name, frac, note=note)
        self._weights_after_update(step)

    def _pre_hook(self, slot: Slot) -> Callable:
        def hook(module, args):
            if self._evaluating():
                return None  # not recorded (nor pushed on st.running)
            st = self._state
            if st.logged and self.hooks.active:
                st.running.append(slot)  # SDPA calls are the innermost running module's
                if st.inputs is not None and self._want_fwd():
                    a = module_input(args)
                    if a is not None:
                        out = st.outputs.get(id(a))
                        if out is None or out.ref() is not a:  # not a watched module's output
                            st.inputs.note_input(slot.name, a)
            if not self.hooks.active or not self._want_bwd():
                return None
            new_args = None
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
            if not self.hooks.active or self._evaluating():
                return
            st = self._state
            if st.running and st.running[-1] is slot:
                st.running.pop()
            # the forward search may have ended (a NaN found) while the backward goes on
            want_fwd, want_bwd = self._want_fwd(), self._want_bwd()
            if not (want_fwd or want_bwd):
                return
            if st.logged:
                st.called.setdefault(slot.name)
            t = primary_tensor(output)
            if t is None or t.numel() == 0:
                return
            if want_fwd:
                self._record_fwd(slot, t, None if st.logged else args)
            if t.requires_grad and want_bwd:
                rec = BwdRec("out", slot, slot.name)
                st.outputs[id(t)] = Output(weakref.ref(t), rec)
                tdim = rnn_time_dim(module, t) if slot.is_rnn else None
                t.register_hook(functools.partial(self._on_grad_eager, rec, tdim, self._step))

        return hook

    def _on_grad(self, rec: BwdRec, time_dim: int | None, step: int, grad: torch.Tensor):
        if self.hooks.active and step == self._step:
            if self._scaler is not None:
                self._note_scale()
            self._record_bwd(rec, grad, time_dim)

    def _note_scale(self) -> None:
        """The GradScaler's scale of this step's backward, once a step, in the backward
        (``scaler.update()`` may change it before ``probe.step()``): a number on the CPU, a
        copy of the scale tensor elsewhere (no host sync)."""
        if self._scale_at is not None and self._scale_at[0] == self._step:
            return
        self._scale_at = (self._step, scale_of(self._scaler))

    def _param_hook(self, rec: BwdRec, index: int) -> Callable:
        def hook(param):
            if not self.hooks.active or param.grad is None:
                return
            if self._scaler is not None:
                self._note_scale()
            st = self._state
            if not st.logged:  # every step: ‖g‖² for the global norm, and the NaN/Inf search
                self._unlogged_grad(rec, index, param.grad)
            elif self._grads is not None and self._grads.take(st, rec, index, param):
                return  # read with the others at the end of the backward (_grads)
            else:
                self._record_bwd(rec, param.grad, None)
                if st.logged and index not in st.weight_norms:
                    # ‖w‖ of the weights this step used: the backward just read them, so
                    # they are in cache (at probe.step() they would be read from memory).
                    # Distributed: FSDP2 shards -> global norms; replicated (DDP) -> rank 0's
                    op = "norms_shard" if is_shard(param) else "rank0"
                    with torch.no_grad():
                        wn = R.norm_of(local(param.detach()), self._recorder.scratch)
                        if st.update:  # w_{t-1} for the update ratio, while in cache too
                            self._snapshot.keep(index, param.detach())
                    st.weight_norms[index] = st.packer.add(wn, op=op)

        return hook

    def _mark_grads(self) -> None:
        """At an optimizer step: has this step's interval added to the last step's ``.grad``
        and never zeroed it (``_kept``)? Then ``meta["grads_not_zeroed"]``."""
        found = self._kept.step()
        if found is not None:
            self.run.set_meta("grads_not_zeroed", found)

    def _unlogged_grad(self, rec: BwdRec, index: int, g: torch.Tensor) -> None:
        if g.numel() == 0:
            return
        if g.dtype.is_complex or g.layout != torch.strided:
            g = real_values(g)
        first = self._first
        if self._dist is not None:  # read after the gradient sync (_pack_param_grads)
            self._dist.after_backward()
            if first.tracking_backward:
                first.check_unlogged(self._state, "backward", local(g), rec.key(), False)
            return
        sq = self._training.param_grad(index, g)
        if first.tracking_backward:
            first.check_unlogged(self._state, "backward", g, rec.key(), True, value=sq)
        elif first.sentinel.active:
            value = self._training.grad_sq[index]  # a float when read on the host (free)
            if isinstance(value, float) and not math.isfinite(value):
                self._sentinel_fired(
                    self._params[index][0], functools.partial(self._backward_bracket, index)
                )

    def _backward_bracket(self, index: int) -> dict:
        """Where in this (unlogged) backward parameter ``index``'s gradient, the first to be
        NaN/Inf, appeared: ``{"at": its module, "after": the module whose parameter gradient
        was the last one finite before it}`` (None: the first of the backward). The ‖g‖² of
        this step are kept in the order the backward produced them (``grad_sq``), so this
        costs nothing until a NaN/Inf is seen."""
        after = None
        for i, v in self._training.grad_sq.items():
            if i != index and isinstance(v, float) and math.isfinite(v):
                slot = self._param_slot.get(self._params[i][0])
                after = slot.name if slot is not None else after
        slot = self._param_slot.get(self._params[index][0])
        return {"at": slot.name if slot is not None else None, "after": after}

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
        if not self.hooks.active:
            return
        if self._state.logged:
            self._recorder.param_grads(self._state, self._params, self._param_slot)
        else:
            self._training.dist_grads(self._params, self._dist.rank if self._dist else 0)
