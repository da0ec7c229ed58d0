"""Executors on this machine: one task after another in this process, or spawned processes.

Processes are spawned, not forked: a fork after torch has started its threads can hang.
A task's shared object is pickled once, and each worker process unpickles it once (the
bytes still travel with every task: a pipe copy, cheap next to training a model).
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from typing import Any

from . import Done, split_shared

_SHARED: dict[int, Any] = {}  # a worker process's unpickled shared objects, by token


def timed(task: Any) -> tuple[Any, float]:
    """``task()`` and the seconds it took."""
    start = time.perf_counter()
    value = task()
    return value, time.perf_counter() - start


class InProcess:
    """Runs the tasks one after another in this process, as ``completed`` is iterated."""

    slots = 1

    def __init__(self) -> None:
        self._queue: list[Any] = []

    def submit(self, task: Any) -> None:
        self._queue.append(task)

    def completed(self) -> Iterator[Done]:
        while self._queue:
            task = self._queue.pop(0)
            try:
                value, seconds = timed(task)
            except Exception as err:  # KeyboardInterrupt goes through
                yield Done(task.key, None, 0.0, err)
            else:
                yield Done(task.key, value, seconds)

    def close(self, cancel: bool = False) -> None:
        self._queue.clear()


def _start(threads: int) -> None:
    # one torch thread per process by default: the cores are the workers'. Set before
    # torch is imported (by the first task), so a worker that never needs torch skips it
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _run(task: Any) -> tuple[Any, float]:
    return timed(task)


def _run_shared(token: int, blob: bytes, task: Any) -> tuple[Any, float]:
    if token not in _SHARED:
        _SHARED.clear()  # one shared object at a time: the latest run's
        _SHARED[token] = pickle.loads(blob)
    return timed(replace(task, shared=_SHARED[token]))


class ProcessPool:
    """Runs the tasks in ``workers`` spawned processes, each on ``threads`` torch threads."""

    def __init__(self, workers: int, threads: int = 1, start_method: str = "spawn") -> None:
        import multiprocessing

        self.slots = workers
        self._pool = ProcessPoolExecutor(
            workers,
            multiprocessing.get_context(start_method),
            initializer=_start,
            initargs=(threads,),
        )
        self._futures: dict[Future, str] = {}
        self._blobs: dict[int, tuple[Any, int, bytes]] = {}  # id -> (object kept, token, bytes)

    def submit(self, task: Any) -> None:
        task, shared = split_shared(task)
        if shared is None:
            future = self._pool.submit(_run, task)
        else:
            if id(shared) not in self._blobs:
                token = time.time_ns() ^ id(shared)
                self._blobs[id(shared)] = (shared, token, pickle.dumps(shared))
            _, token, blob = self._blobs[id(shared)]
            future = self._pool.submit(_run_shared, token, blob, task)
        self._futures[future] = task.key

    def completed(self) -> Iterator[Done]:
        while self._futures:
            finished, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
            for future in finished:
                key = self._futures.pop(future)
                try:
                    value, seconds = future.result()
                except Exception as err:
                    yield Done(key, None, 0.0, err)
                else:
                    yield Done(key, value, seconds)

    def close(self, cancel: bool = False) -> None:
        # cancel: no waiting for running tasks (Ctrl-C reaches the workers too)
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        self._futures.clear()
        self._blobs.clear()
