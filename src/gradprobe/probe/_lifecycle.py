"""Part of :class:`~gradprobe.probe.probe.Probe`: its end (closing: the last numbers, the
run's closing meta, every hook removed), its failures (kept as warnings, never raised into
the training loop) and the guard's skipped steps."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from typing import Any, TypeVar

from ..errors import GradprobeWarning, InvalidInputError, RunStoreError
from . import reducers as R

_P = TypeVar("_P", bound="Lifecycle")


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
    _remove_attention: Any

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

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self._close(warn_empty=exc_type is None)  # no warning over the loop's own error
