"""Part of :class:`~gradprobe.probe.probe.Probe`: the end of each step (``probe.step()``,
or the optimizer's step; the free non-finite check of unlogged steps on the CPU), the end of
the probe (closing: the last numbers, the run's closing meta, every hook removed), its
failures (kept as warnings, never raised into the training loop) and the guard's skipped
steps."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from ..errors import GradprobeWarning, InvalidInputError, RunStoreError
from . import reducers as R
from ._training import (
    check_loss,
    first_nonfinite_param,
    is_grad_scaler,
    learning_rates,
    scale_of,
)

_P = TypeVar("_P", bound="Lifecycle")
SCALER_LOOKS = 3  # optimizer steps whose caller is looked at for a GradScaler
#: the probes open in this process, held weakly: how one learns that another model trains
#: interleaved with its own (a GAN's generator and discriminator, each watched)
_OPEN: weakref.WeakSet = weakref.WeakSet()
#: the share of its steps at whose end the other model was mid-step, on both sides
INTERLEAVED = 0.5


class Lifecycle:
    """Mixin of ``Probe``; uses its state (``hooks``, ``run``, ``_state``, ``_finisher``...)."""

    # the Probe's attributes used here (annotations only: set by Probe.__init__)
    hooks: Any
    run: Any
    guard: Any
    skipped: list
    warnings: list[str]
    _state: Any
    _finisher: Any
    _first: Any
    _snapshot: Any
    _recorder: Any
    _failed: set
    _closed: bool
    _step: int
    _recorded: int
    _started: float
    _step_seconds: float
    _flow: Any
    _remove_attention: Any
    _remove_functional: Any
    _training: Any
    _optimizer: Any
    _params: list
    _ended: str | None
    _last_logged: bool
    _grads: Any
    _on_host: bool
    _begin_step: Any
    model: Any
    # forwards with gradients of the model (counted by the root's input hook), and that
    # count at the last step's end: more means the model is in the middle of a step
    _forwards: int = 0
    _forwards_ended: int = 0
    _beside: dict | None = None  # id(other probe) -> (weakref, steps it was mid-step)

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
            self._remove_attention()
            self._remove_functional()
            self._snapshot.clear()
            self._recorder.scratch = R.Scratch()  # free the buffers
            st = self._state
            try:  # a step cut short (an exception) still names its first non-finite
                st.packer.reduce_fn = None  # no collective here: other ranks may be gone
                if st.logged and (st.forward or st.backward):
                    self._finisher.finish_logged(st, write=False)
                elif not st.logged:
                    self._first.push_flags(st)
                self._finisher.flush_training(self._step)
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
                        **self._trained_with(),
                    }
                )
                _OPEN.discard(self)
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

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self._close(warn_empty=exc_type is None)  # no warning over the loop's own error

    # -- steps -----------------------------------------------------------------------------
    def step(self, loss=None, *, lr=None) -> None:
        """Mark the end of a training step (after ``optimizer.step()``); ``loss`` (a tensor
        or a number) is recorded for the step, on every step, without a host sync.

        ``lr``: the learning rate used (a number, or one per param group) when the probe has
        no ``optimizer=`` to read it from. With ``optimizer=``, the optimizer's step ends
        the step: a ``step(loss=...)`` right after it (before the next forward) gives that
        step its loss and starts no other; called before ``optimizer.step()`` it ends the
        step itself, and that optimizer step ends none. A failure while recording (a
        hook that failed earlier, a full disk) is recorded as a warning and the step's
        numbers are dropped; it never stops the training loop.
        """
        self._check_open()
        loss = check_loss(loss)
        if self._ended == "optimizer":
            self._ended = None
            try:
                self._training.late(self._step - 1, loss, lr)
                if not self._last_logged:
                    self._host_loss(self._step - 1, loss)
                    if self._first.sentinel.armed and not self._state.logged:
                        self._begin_step()  # no forward since: this step can still be logged
            except Exception as err:
                self._hook_failed(f"step {self._step - 1}", err)
            return
        self._end_step(loss, lr)
        self._ended = "user" if self._optimizer is not None else None

    def _auto_step(self) -> None:
        """``optimizer.step()`` (or the guard) ends the step, unless ``probe.step()`` has
        just ended it (called before ``optimizer.step()``, with no forward since)."""
        if self._scaler is None and self._scaler_looks < SCALER_LOOKS:
            self._find_scaler()
        self._mark_grads()
        if self._ended == "user":
            self._ended = None
            return
        self._end_step(None, None)
        self._ended = "optimizer"

    def _find_scaler(self) -> None:
        """Called in ``optimizer.step()``'s post-hook: is it ``GradScaler.step`` that called
        it? (Then the backward's gradients were its scale times the loss's: the scaler is
        taken as ``watch(scaler=)`` would.) Its frame is a few above this one; looked for on
        the first :data:`SCALER_LOOKS` optimizer steps only."""
        self._scaler_looks += 1
        frame = sys._getframe(1)
        for _ in range(12):
            frame = frame.f_back
            if frame is None:
                return
            caller = frame.f_locals.get("self")
            if is_grad_scaler(caller):
                self._scaler = caller
                self.run.set_meta("grad_scaler", f"{type(caller).__name__} (found)")
                return

    def _note_beside(self) -> None:
        """Count every other open probe whose model is in the middle of its own step (a
        forward since that probe's last step) as this one ends a step. A GAN's D ends its
        step after G made the next fakes, and G ends its step after D judged them; two
        models trained one after the other (or from one backward, each by its optimizer)
        are not mid-step at each other's ends, or only at one side's."""
        _OPEN.add(self)
        for other in list(_OPEN):
            if other is self or other._closed or other._forwards <= other._forwards_ended:
                continue
            beside = self._beside if self._beside is not None else {}
            ref, n = beside.get(id(other), (weakref.ref(other), 0))
            beside[id(other)] = (ref, n + 1)
            self._beside = beside
        self._forwards_ended = self._forwards

    def _interleaved(self, other: Any) -> bool:
        n = (self._beside or {}).get(id(other), (None, 0))[1]
        return n >= max(10.0, INTERLEAVED * self._step)

    def _trained_with(self) -> dict:
        """``meta["trained_with"]``: the models whose steps interleaved with this one's on
        both sides (each mid-step at the other's step ends, on most steps): one loop trains
        them against each other or in turn, and this loss is one side of it."""
        names = []
        for ref, _ in (self._beside or {}).values():
            other = ref()
            if other is not None and self._interleaved(other) and other._interleaved(self):
                names.append(type(other.model).__name__)
        return {"trained_with": sorted(names)} if names else {}

    def _end_step(self, loss, lr) -> None:
        t0 = time.perf_counter()
        self._note_beside()
        st = self._state
        try:
            if lr is None and self._optimizer is not None:
                lr = learning_rates(self._optimizer)
            flag = self._finisher.weights_flag()
            at = self._scale_at
            scale = at[1] if at is not None and at[0] == st.index else None
            if scale is None and self._scaler is not None:  # found in this step's optimizer
                scale = scale_of(self._scaler)  # step: before scaler.update(), this step's
            self._training.end_step(st.index, st.logged, loss, lr, flag, scale)
            self._last_logged = st.logged
            if st.logged:
                if self._grads is not None:  # a backward that raised ran no callback
                    self._grads.flush()
                self._recorded += self._finisher.finish_logged(st, write=True, scale=scale)
                if not self._flow.done:
                    self._flow.finish(self.run)  # which module lists feed each other
            else:
                self._host_loss(st.index, loss)
                self._first.push_flags(st)
        except Exception as err:
            self._hook_failed(f"step {self._step}", err)
        self._step += 1
        self._begin_step()
        self._step_seconds += time.perf_counter() - t0

    def _sentinel_fired(
        self, param: str | None, backward: Callable[[], dict] | None = None
    ) -> None:
        """CPU, one process, an unlogged step: a parameter's gradient (or the loss) is NaN/Inf;
        log the next step to name the module. Were the weights this step used already
        non-finite (the previous optimizer step)? ``backward``: where in the backward the
        first NaN/Inf parameter gradient appeared (``Probe._backward_bracket``)."""
        st = self._state
        self._first.sentinel.fire(st.index, "loss" if param is None else "gradient",
                                  () if param is None else (param,),
                                  backward=backward)  # fmt: skip
        if not st.sentinel_fired:
            st.sentinel_fired = True
            self._weights_after_update(st.index)

    def _host_loss(self, step: int, loss) -> None:
        """The free check of an unlogged step's loss on the CPU (one process)."""
        if loss is None or not (self._on_host and self._first.sentinel.active):
            return
        if isinstance(loss, torch.Tensor):
            if not R.on_host(loss.device):
                return  # read with the next logged step
            loss = loss.detach().item()  # in host memory already: no sync
        if not math.isfinite(loss):
            self._first.sentinel.fire(step, "loss")

    def _weights_after_update(self, step: int) -> None:
        """The forward of ``step`` (unlogged, read on the host) was the first non-finite: did
        the weights become NaN/Inf in the optimizer's step before it?"""
        self._finisher.check_update(step - 1, lambda: first_nonfinite_param(self._params))
