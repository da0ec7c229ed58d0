"""Computing units: :func:`compute` does one, an executor (:mod:`gradprobe.executors`) runs many.

A :class:`Job` is one unit as plain, picklable data; calling it (``job()``, what every
executor does) computes the unit into a scratch folder of the machine it runs on and
returns a :class:`Record`: its numbers, seconds and files as bytes. The driver writes the
record into the run folder (:func:`store`, ``unit.json`` last), so the run folder has one
writer, the workers need no shared file system, and a task that fails or is killed leaves
nothing in it. An executor of your own may instead call :func:`compute` itself on a shared
folder and hand back ``Done(key, numbers, seconds)``: the unit is then already written.

Each unit draws its random numbers from its own ``seed`` on ``threads`` torch threads,
so its numbers do not depend on the executor, and it leaves the caller's global random
state (torch, numpy, ``random``) and thread count as they were. ``compute`` sets the
process's random state and torch threads while it runs: an executor runs one at a time
per process (processes, not threads, for parallel units).
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError, RunStoreError
from ..executors import Done, Executor
from ..executors import make as make_executor
from ..executors.local import InProcess, ProcessPool
from ._experiment import Experiment
from ._experiment import get as get_experiment
from ._folder import write_json

__all__ = ["Done", "Executor", "InProcess", "Job", "ProcessPool", "Record", "compute", "store"]


@dataclass(frozen=True)
class Job:
    """One unit to compute: which experiment, its config, the unit, where, on how many threads."""

    experiment: str
    config: Any
    unit: dict
    key: str
    folder: str  # the unit's own folder (run_folder/units/KEY) in the driver's run folder
    threads: int = 1
    # the experiment itself, for workers that cannot look it up by name (one registered in
    # a script or a notebook, on a Ray worker); None: by name
    spec: Experiment | None = field(default=None, repr=False, compare=False)

    def __call__(self) -> Record:
        return compute_record(self)


@dataclass(frozen=True)
class Record:
    """A computed unit, as it travels back to the driver: numbers, seconds and its files
    (paths relative to the unit folder, their bytes)."""

    numbers: dict
    seconds: float
    files: dict[str, bytes] = field(repr=False, default_factory=dict)


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
    exp = job.spec if job.spec is not None else get_experiment(job.experiment)
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


def compute_record(job: Job) -> Record:
    """Compute one unit in a scratch folder of this machine; its numbers and files, as bytes."""
    scratch = Path(tempfile.mkdtemp(prefix="gradprobe-unit-"))
    try:
        numbers, seconds = compute(replace(job, folder=str(scratch / "unit")))
        root = scratch / "unit"
        files = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "unit.json"
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Record(numbers, seconds, files)


def store(job: Job, record: Record) -> None:
    """Write a unit's record into ``job.folder``: its files into a hidden sibling folder,
    unit.json last, then one rename; the unit folder is whole or absent (a crash in between
    leaves only the hidden folder, which the next attempt removes)."""
    final = Path(job.folder)
    partial = final.with_name(f".{final.name}.partial")
    for path in (partial, final):
        if path.exists():
            shutil.rmtree(path)
    try:
        partial.mkdir(parents=True)
        for rel, data in record.files.items():
            target = partial / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    except OSError as err:
        raise RunStoreError(
            f"cannot write the unit {job.key} into {partial}: {err.strerror or err}; check "
            "that the folder is writable and the disk has space, then run again with --resume"
        ) from None
    unit = {"unit": job.unit, "numbers": record.numbers, "seconds": record.seconds}
    write_json(partial / "unit.json", unit)
    os.replace(partial, final)


def local(workers: int, threads: int = 1) -> Executor:
    """In this process for one worker, else a pool of ``workers`` spawned processes."""
    return make_executor("local", workers=workers, threads=threads)
