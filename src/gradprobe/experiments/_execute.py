"""Computing units: :func:`compute` does one, an :class:`Executor` runs many.

The executor is the seam between the runner and where units run. It takes
:class:`Job` s (``submit``) and hands back each one's :class:`Done` as it finishes
(``completed``); ``close`` ends it, ``cancel=True`` dropping what has not started.
:class:`InProcess` runs them one by one in this process, :class:`ProcessPool` in spawned
processes; another (Ray, Slurm) needs only these three methods. A job is plain data
(picklable) and :func:`compute` is a module-level function, so any executor can ship both.
``compute`` sets the process's random state and torch threads while it runs: an executor
runs one at a time per process (processes, not threads, for parallel units).

Each unit draws its random numbers from its own ``seed`` on ``threads`` torch threads,
so its numbers do not depend on the executor, and it leaves the caller's global random
state (torch, numpy, ``random``) and thread count as they were.
"""

from __future__ import annotations

import contextlib
import gc
import random
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import InvalidInputError
from ._experiment import get as get_experiment
from ._folder import write_json


@dataclass(frozen=True)
class Job:
    """One unit to compute: which experiment, its config, the unit, where, on how many threads."""

    experiment: str
    config: Any
    unit: dict
    key: str
    folder: str  # the unit's own folder (run_folder/units/KEY)
    threads: int = 1


@dataclass(frozen=True)
class Done:
    """A finished job: its numbers and seconds, or the error it raised."""

    key: str
    numbers: dict | None
    seconds: float
    error: BaseException | None = None


class Executor(Protocol):
    def submit(self, job: Job) -> None: ...
    def completed(self) -> Iterator[Done]: ...  # each submitted job once, as it finishes
    def close(self, cancel: bool = False) -> None: ...


@contextlib.contextmanager
def _own_random_state(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, numpy and ``random`` with ``seed`` inside; restore the caller's after."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    np_state, py_state, before = np.random.get_state(), random.getstate(), torch.get_num_threads()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed([seed & 0xFFFFFFFF, seed >> 32])  # numpy takes 32-bit words
        random.seed(seed)
        torch.set_num_threads(threads)  # the same count in every executor: the same numbers
        try:
            yield
        finally:
            torch.set_num_threads(before)
            np.random.set_state(np_state)
            random.setstate(py_state)


def _out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or any(
        s in text for s in ("can't allocate memory", "not enough memory", "out of memory")
    )


def compute(job: Job) -> tuple[dict, float]:
    """Compute one unit into ``job.folder`` (emptied first) and write its unit.json last."""
    exp = get_experiment(job.experiment)
    path = Path(job.folder)
    if path.exists():  # an interrupted attempt: start the unit again from scratch
        shutil.rmtree(path)
    path.mkdir(parents=True)
    seed = int(job.unit.get("seed", getattr(job.config, "seed", 0)))
    with _own_random_state(seed, job.threads):
        start = time.perf_counter()
        try:
            numbers = exp.run_unit(job.config, dict(job.unit), path)
        except (MemoryError, RuntimeError) as err:
            if not _out_of_memory(err):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InvalidInputError(
                f"unit {job.key} of {job.experiment} ran out of memory ({first}); make the "
                "config smaller (width, depth, batch, steps) or run fewer --workers"
            ) from None
        finally:
            gc.collect()  # probes and hooks form cycles: close their Run files now
        seconds = time.perf_counter() - start
    write_json(path / "unit.json", {"unit": job.unit, "numbers": numbers, "seconds": seconds})
    return numbers, seconds


class InProcess:
    """Runs the jobs one after another in this process, when ``completed`` is iterated."""

    name = "in-process"

    def __init__(self) -> None:
        self._queue: list[Job] = []

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def completed(self) -> Iterator[Done]:
        while self._queue:
            job = self._queue.pop(0)
            try:
                numbers, seconds = compute(job)
            except Exception as err:  # KeyboardInterrupt goes through
                yield Done(job.key, None, 0.0, err)
            else:
                yield Done(job.key, numbers, seconds)

    def close(self, cancel: bool = False) -> None:
        self._queue.clear()


class ProcessPool:
    """Runs the jobs in ``workers`` spawned processes (fork after torch threads can hang)."""

    name = "process-pool"

    def __init__(self, workers: int) -> None:
        import multiprocessing

        self._pool = ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"))
        self._futures: dict[Future, str] = {}

    def submit(self, job: Job) -> None:
        self._futures[self._pool.submit(compute, job)] = job.key

    def completed(self) -> Iterator[Done]:
        for fut in as_completed(list(self._futures)):
            key = self._futures.pop(fut)
            try:
                numbers, seconds = fut.result()
            except Exception as err:
                yield Done(key, None, 0.0, err)
            else:
                yield Done(key, numbers, seconds)

    def close(self, cancel: bool = False) -> None:
        # cancel: no waiting for running units (Ctrl-C reaches the workers too); what they
        # finish before they stop is still written, and resume picks it up
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


def local(workers: int) -> Executor:
    """In this process for one worker, else a pool of ``workers`` spawned processes."""
    return InProcess() if workers <= 1 else ProcessPool(workers)
