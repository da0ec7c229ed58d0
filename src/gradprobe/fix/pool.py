"""Where trials run: in this process, or through an executor (:mod:`gradprobe.executors`):
``workers`` spawned processes, or Ray.

The setup (model or factory, data, loss, optimizer, metric) is the tasks' shared object,
sent once to each worker (pickled once for processes, put once into Ray's object store); a
job is then only ``(index, recipe, seed)``. Every trial runs on one torch thread from its
own seed (:func:`~gradprobe.fix.trial.run_trial`), so the numbers are the same for any
executor. A worker writes the trial's run file in a scratch folder of its own machine and
sends it back as bytes; this process writes it into the setup's folder (no shared file
system needed). Jobs are handed out one per free worker, so a budget can stop what has not
started.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..executors import Executor, Task, make, slots
from .recipe import Recipe
from .trial import Outcome, Setup, run_trial


def _work(setup: Setup, index: int, recipe: Recipe, seed: int | None) -> tuple[Outcome, dict]:
    """A trial in a worker, its run file (if any) back as bytes."""
    if setup.folder is None:
        return run_trial(setup, recipe, index, seed=seed), {}
    scratch = tempfile.mkdtemp(prefix="gradprobe-trial-")
    try:
        out = run_trial(replace(setup, folder=scratch), recipe, index, seed=seed)
        files = {p.name: p.read_bytes() for p in Path(scratch).iterdir() if p.is_file()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out, files


def _keep(setup: Setup, out: Outcome, files: dict) -> Outcome:
    """Write a worker's run file into the setup's folder; the outcome points there."""
    if setup.folder is not None:
        for name, data in files.items():
            (Path(setup.folder) / name).write_bytes(data)
        if out.run_path is not None:
            out.run_path = str(Path(setup.folder) / Path(out.run_path).name)
    return out


def picklable(setup: Setup) -> bytes:
    """The setup as bytes for the workers, or an error naming what cannot be sent."""
    try:
        return pickle.dumps(setup)
    except Exception as err:
        for name in ("source", "loss_fn", "metric"):
            try:
                pickle.dumps(getattr(setup, name))
            except Exception:
                raise InvalidInputError(
                    f"workers > 1 sends the {name.replace('source', 'model')} to other "
                    f"processes, but it cannot be pickled ({type(err).__name__}: {err}); "
                    "define it at module level (no lambda or local function), or use workers=1"
                ) from None
        raise InvalidInputError(
            f"workers > 1 needs a picklable setup ({type(err).__name__}: {err}); use workers=1"
        ) from None


def run_jobs(
    setup: Setup,
    jobs: list[tuple[int, Recipe, int | None]],
    workers: int,
    keep_going: Callable[[], bool],
    done: Callable[[Outcome], None],
    pool: Executor | None = None,
) -> list[tuple[int, Recipe, int | None]]:
    """Run ``jobs``; ``done(outcome)`` as each finishes; a job starts only while
    ``keep_going()``. A job is (index, recipe, seed or None for the setup's). Returns the
    jobs never started."""
    pending = list(jobs)
    if pool is None:
        while pending and keep_going():
            index, recipe, seed = pending.pop(0)
            done(run_trial(setup, recipe, index, seed=seed))
        return pending
    size, running = slots(pool) or workers, 0

    def feed() -> None:
        nonlocal running
        while pending and running < size and keep_going():
            job = pending.pop(0)
            pool.submit(Task(f"trial {job[0]} seed {job[2]}", _work, job, setup))
            running += 1

    feed()
    for finished in pool.completed():
        running -= 1
        if finished.error is not None:
            raise finished.error
        done(_keep(setup, *finished.value))
        feed()
    return pending


def start_pool(
    setup: Setup, workers: int, executor: Any = "local", address: str | None = None
) -> Executor | None:
    """None (trials in this process) for one local worker, else the executor."""
    if executor == "local" and workers <= 1:
        return None
    if executor == "local":
        picklable(setup)  # an error that names what cannot be sent
    return make(executor, workers=workers, address=address)
