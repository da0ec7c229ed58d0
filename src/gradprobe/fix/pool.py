"""Where trials run: in this process, or in ``workers`` spawned processes.

The setup (model or factory, data, loss, optimizer, metric) is pickled once and sent to each
worker when it starts; a job is then only ``(index, recipe)``. Processes are spawned, not
forked (a fork after torch has started its threads can hang), and every trial runs on one
torch thread from its own seed (:func:`~gradprobe.fix.trial.run_trial`), so the numbers are
the same for any number of workers. Jobs are handed out one per free worker, so a budget
can stop what has not started.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from ..errors import InvalidInputError
from .recipe import Recipe
from .trial import Outcome, Setup, run_trial

_SETUP: Setup | None = None  # a worker's copy of the setup (one per process)


def _start_worker(blob: bytes) -> None:
    global _SETUP
    import torch

    torch.set_num_threads(1)
    _SETUP = pickle.loads(blob)


def _work(index: int, recipe: Recipe, seed: int | None) -> Outcome:
    assert _SETUP is not None, "worker started without a setup"
    return run_trial(_SETUP, recipe, index, seed=seed)


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
    pool: ProcessPoolExecutor | None = None,
) -> list[tuple[int, Recipe, int | None]]:
    """Run ``jobs``; ``done(outcome)`` as each finishes; a job starts only while
    ``keep_going()``. A job is (index, recipe, seed or None for the setup's). Returns the
    jobs never started."""
    pending = list(jobs)
    if workers <= 1 or pool is None:
        while pending and keep_going():
            index, recipe, seed = pending.pop(0)
            done(run_trial(setup, recipe, index, seed=seed))
        return pending
    running: set[Future] = set()
    try:
        while pending or running:
            while pending and len(running) < workers and keep_going():
                running.add(pool.submit(_work, *pending.pop(0)))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done(future.result())
    except BaseException:
        for future in running:
            future.cancel()
        raise
    return pending


def start_pool(setup: Setup, workers: int) -> ProcessPoolExecutor | None:
    if workers <= 1:
        return None
    import multiprocessing

    blob = picklable(setup)
    return ProcessPoolExecutor(
        workers, multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(blob,)
    )
