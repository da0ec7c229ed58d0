"""The experiment runner: a config grid of units, in parallel, resumable, in one folder.

An experiment (:class:`Experiment`) is a config dataclass with presets, a list of *units*
(one per point of its grid: seed × init × depth ...), ``run_unit`` that computes one and
``summarize`` that turns all units' numbers into the headline numbers. A run is four
steps, one module each: plan (``_plan``: config, folder, what is left to do), execute
(``_execute``: an executor computes the units), progress (``_progress``: the bar) and
status (``_status``: run.json). Run folder (``out/NAME``, or ``out/NAME-2`` ...)::

    run.json       experiment, preset, resolved config, overrides, seed, versions, timings, status
    result.json    the headline numbers (written when every unit is done)
    units/KEY/     one folder per unit: unit.json (its numbers and seconds) and its *.sqlite runs

:func:`run` and :func:`load` return the same :class:`ExperimentRun`: what was computed
and what is read back from its folder are equal.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, RunStoreError, UnknownNameError
from ..executors import Done, Executor, slots
from ..executors import check as check_executor
from ..executors import make as make_executor
from ._config import parse_sets, resolve
from ._execute import Job, Record, compute, store
from ._experiment import EXPERIMENTS, Experiment, names, register
from ._experiment import get as get_experiment
from ._folder import as_json, read_json, unit_key
from ._plan import Plan, plan
from ._progress import Progress

__all__ = [
    "EXPERIMENTS", "Done", "Executor", "Experiment", "ExperimentRun", "Job", "Plan", "Result",
    "compute", "config", "load", "names", "plan", "register", "run", "run_unit",
]  # fmt: skip


@dataclass(frozen=True)
class ExperimentRun:
    """A run folder and what is in it: what :func:`run` returns and :func:`load` reads back.

    ``numbers`` are the headline numbers (result.json), ``units`` each unit's numbers in
    the order of the grid, ``config`` the experiment's frozen config, ``status`` that of
    run.json (``info``: all of run.json)."""

    name: str
    preset: str
    folder: Path
    config: Any
    numbers: dict
    units: list[tuple[dict, dict]] = field(repr=False, default_factory=list)
    status: str = "done"
    info: dict = field(repr=False, default_factory=dict, compare=False)


Result = ExperimentRun  # the name of earlier versions


def config(name: str, preset: str = "quick", **overrides: Any) -> Any:
    """The resolved config of experiment ``name`` (validated, nothing run)."""
    exp = get_experiment(name)
    return resolve(exp.config, exp.presets, preset, overrides, name)


def run_unit(plan: Plan, unit: dict, threads: int = 1) -> dict:
    """Compute one unit of ``plan`` into ``plan.folder/units/KEY`` (a cluster worker's job)."""
    _check_counts(1, threads)
    if unit not in plan.units:
        raise InvalidInputError(
            f"{unit!r} is not a unit of this plan of {plan.name}; pass one of plan.todo"
        )
    return compute(_job(plan, unit, threads))[0]


def _job(p: Plan, unit: dict, threads: int, spec: Experiment | None = None) -> Job:
    return Job(p.name, p.config, unit, unit_key(unit), str(p.unit_folder(unit)), threads, spec)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_counts(workers: int, threads: int) -> None:
    cores = _cores()
    for what, value, most in (("workers", workers, 4 * cores), ("threads", threads, cores)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
        if value > most:
            raise InvalidInputError(
                f"{what}={value} is more than this machine's {cores} cores can use (at most "
                f"{most}); more only share the cores, each process holding its own torch"
            )


def run(
    name: str,
    out: str | Path = "runs/",
    preset: str = "quick",
    *,
    resume: bool = False,
    workers: int = 1,
    threads: int = 1,
    quiet: bool = False,
    executor: Executor | str | None = None,
    address: str | None = None,
    **overrides: Any,
) -> ExperimentRun:
    """Run experiment ``name`` with ``preset`` and ``overrides``; return its :class:`ExperimentRun`.

    ``workers`` > 1 runs the units in that many processes (no more than there are units
    to do; run.json records how many); each unit uses ``threads`` torch threads (1 by
    default: a fixed count keeps the numbers identical whatever ``workers`` is).
    ``resume=True`` continues the latest run folder of this experiment (same config),
    skipping its finished units. ``executor``: ``"local"`` (the default: in this process,
    or ``workers`` processes), ``"ray"`` (a Ray task per unit, each with ``threads`` CPUs;
    ``address``: the cluster to join, None for a Ray instance on this machine), or any
    object with the three methods of :class:`gradprobe.executors.Executor`.

    >>> gp.experiments.run("init_gradients", out="runs/", seeds=2)   # doctest: +SKIP
    """
    _check_counts(workers, threads)
    named = executor is None or executor == "local"
    if not named and workers != 1:
        raise InvalidInputError("pass workers= or executor=, not both (the executor decides)")
    check_executor("local" if executor is None else executor, address)  # before any folder
    return execute(plan(name, out, preset, resume=resume, **overrides), executor, workers,
                   threads, quiet, address)  # fmt: skip


def execute(
    p: Plan,
    executor: Executor | str | None,
    workers: int,
    threads: int,
    quiet: bool,
    address: str | None = None,
) -> ExperimentRun:
    """Compute ``p.todo`` with ``executor`` (else a local one), then summarise. A unit's
    record comes back to this process, which writes it (:func:`store`)."""
    assert p.status is not None, "a Plan from plan()"
    exp = get_experiment(p.name)
    numbers = dict(p.finished)
    used = min(workers, len(p.todo)) or 1
    if not p.todo and (executor is None or isinstance(executor, str)):
        executor, address = "local", None  # nothing left to compute: no Ray to start
    local = executor is None or executor == "local"
    try:  # starting Ray can fail after the plan: the folder then says so
        ex = make_executor(executor or "local", workers=used, address=address, cpus=threads,
                           threads=threads)  # fmt: skip
    except BaseException as err:
        p.status.stopped(err, None)
        raise
    p.status.running(used if local else None, threads, type(ex).__name__)
    failed, jobs = None, {}
    with Progress(f"{p.name} ({p.preset})", len(p.units), len(numbers), quiet) as bar:
        try:
            for unit in p.todo:
                job = jobs[unit_key(unit)] = _job(p, unit, threads, exp)
                ex.submit(job)
            bar.update(running=min(len(jobs), slots(ex) or len(jobs)))
            for done in ex.completed():
                if done.error is not None:
                    failed = done.key
                    bar.update(failed=1)
                    raise done.error
                if isinstance(done.value, Record):  # computed elsewhere: written here
                    store(jobs[done.key], done.value)
                    value, seconds = done.value.numbers, done.value.seconds
                else:  # an executor that ran compute() itself has written the unit
                    value, seconds = done.value, done.seconds
                numbers[done.key] = value
                p.status.unit_done(done.key, seconds)
                left = len(p.units) - len(numbers)
                bar.advance(running=min(left, slots(ex) or left))
        except BaseException as err:
            ex.close(cancel=True)
            p.status.stopped(err, failed)
            if isinstance(err, KeyboardInterrupt) and not quiet:
                print(
                    f"interrupted: {len(numbers)} of {len(p.units)} units finished are kept in "
                    f"{p.folder}; continue with --resume (resume=True)",
                    file=sys.stderr,
                )
            raise
        ex.close()
    units = [(u, numbers[unit_key(u)]) for u in p.units]
    headline = as_json(exp.summarize(p.config, units))
    p.status.done(p.name, p.preset, headline)
    units = [(as_json(u), as_json(n)) for u, n in units]  # as they read back from disk
    return ExperimentRun(p.name, p.preset, p.folder, p.config, headline, units, "done",
                         p.status.info)  # fmt: skip


def load(folder: str | Path) -> ExperimentRun:
    """A finished run folder, read back: the same :class:`ExperimentRun` :func:`run` returned."""
    folder = Path(folder)
    if not (folder / "run.json").is_file():
        raise RunStoreError(f"{folder} is not an experiment run folder (it has no run.json)")
    info = read_json(folder / "run.json")
    if not isinstance(info, dict) or "experiment" not in info:
        raise RunStoreError(f"{folder / 'run.json'} is not the run.json of an experiment run")
    name = info["experiment"]
    if not (folder / "result.json").is_file():
        raise RunStoreError(
            f"{folder} has no result.json (status {info.get('status')!r}); "
            f"finish it with gradprobe run {name} --resume"
        )
    try:
        exp = get_experiment(name)
        cfg = resolve(exp.config, {"stored": {}}, "stored", info.get("config", {}), name)
    except (UnknownNameError, InvalidInputError) as err:
        raise RunStoreError(
            f"{folder} was made by another version of gradprobe: {err} "
            "(its numbers are in result.json and units/*/unit.json)"
        ) from None
    numbers = read_json(folder / "result.json")
    for key in ("experiment", "preset"):
        numbers.pop(key, None)
    units = []
    for unit in exp.units(cfg):
        data = read_json(folder / "units" / unit_key(unit) / "unit.json")
        units.append((data["unit"], data["numbers"]))
    preset = info.get("preset", "")
    return ExperimentRun(name, preset, folder, cfg, numbers, units, info.get("status", ""), info)


def run_from_cli(
    name: str,
    preset: str,
    sets: list[str],
    out: Path,
    resume: bool,
    workers: int,
    threads: int,
    executor: str = "local",
    address: str | None = None,
) -> ExperimentRun:
    """``gradprobe run NAME --set k=v ...``: parse, run; every bad input is a GradprobeError."""
    overrides: dict[str, Any] = dict(parse_sets(sets))
    return run(name, out=out, preset=preset, resume=resume, workers=workers, threads=threads,
               executor=executor, address=address, **overrides)  # fmt: skip
