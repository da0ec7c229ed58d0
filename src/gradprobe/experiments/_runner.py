"""The experiment runner: a config grid of sub-runs, in parallel, resumable, in one folder.

An experiment is a config dataclass with presets, a list of *units* (one per point of its
grid: seed × init × activation × depth ...), ``run_unit(cfg, unit, folder)`` that computes
one unit (writing its :class:`~gradprobe.Run` files into ``folder``) and returns its numbers,
and ``summarize(cfg, results)`` that turns all units' numbers into the headline numbers.

Run folder (``out/NAME``, or ``out/NAME-2`` ... when it exists)::

    run.json       experiment, preset, resolved config, overrides, seed, versions, timings, status
    result.json    the headline numbers (written when every unit is done)
    units/KEY/     one folder per unit: unit.json (its numbers and seconds) and its *.sqlite runs

A unit is finished when its ``unit.json`` exists (written last, atomically), so Ctrl-C keeps
every finished unit and ``resume=True`` runs only the others.
"""

from __future__ import annotations

import gc
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._registry import Registry
from ..errors import InvalidInputError, RunStoreError
from ._config import as_dict, parse_sets, resolve
from ._folder import pick_folder, read_json, unit_key, versions, write_json

UnitFn = Callable[[Any, dict, Path], dict]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment; see the module docstring for what each part does."""

    name: str
    summary: str  # one line, for ``gradprobe run --list``
    config: type
    presets: Mapping[str, Mapping[str, Any]]
    units: Callable[[Any], list[dict]]
    run_unit: UnitFn
    summarize: Callable[[Any, list[tuple[dict, dict]]], dict]


@dataclass(frozen=True)
class Result:
    """What :func:`run` returns: the folder, the resolved config and the headline numbers."""

    folder: Path
    config: Any
    numbers: dict
    units: list[tuple[dict, dict]] = field(repr=False, default_factory=list)


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register(experiment: Experiment) -> Experiment:
    for preset in ("quick", "full"):
        if preset not in experiment.presets:
            raise InvalidInputError(f"experiment {experiment.name!r} needs a {preset!r} preset")
    return EXPERIMENTS.register(experiment.name, experiment)


def names(pattern: str | None = None) -> list[str]:
    """Registered experiment names (glob ``pattern`` to filter)."""
    return EXPERIMENTS.names(pattern)


def config(name: str, preset: str = "quick", **overrides: Any) -> Any:
    """The resolved config of experiment ``name`` (validated, nothing run)."""
    exp = EXPERIMENTS.get(name)
    return resolve(exp.config, exp.presets, preset, overrides, name)


def _run_one(name: str, cfg: Any, unit: dict, folder: str, threads: int) -> tuple[dict, float]:
    """Compute one unit in ``folder`` and write its unit.json; also the process-pool entry."""
    from . import catalog  # noqa: F401  (registers the experiments in a fresh process)

    exp = EXPERIMENTS.get(name)
    path = Path(folder)
    if path.exists():  # an interrupted attempt: start the unit again from scratch
        shutil.rmtree(path)
    path.mkdir(parents=True)
    torch.manual_seed(int(unit.get("seed", getattr(cfg, "seed", 0))))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # same thread count in every mode: same numbers
    start = time.perf_counter()
    try:
        numbers = exp.run_unit(cfg, dict(unit), path)
    finally:
        torch.set_num_threads(before)
        gc.collect()  # probes and hooks form cycles: close their Run files (WAL merged) now
    seconds = time.perf_counter() - start
    write_json(path / "unit.json", {"unit": unit, "numbers": numbers, "seconds": seconds})
    return numbers, seconds


@dataclass(frozen=True)
class Plan:
    """A run folder made ready: its config, every unit, and those not finished yet."""

    name: str
    folder: Path
    config: Any
    units: list[dict]
    todo: list[dict]
    info: dict = field(repr=False, default_factory=dict)

    def key(self, unit: dict) -> str:
        return unit_key(unit)


def plan(
    name: str,
    out: str | Path = "runs/",
    preset: str = "quick",
    *,
    resume: bool = False,
    **overrides: Any,
) -> Plan:
    """Create (or, with ``resume``, reopen) the run folder of ``name`` and list its units.

    For running the units elsewhere (a cluster): call :func:`run_unit` for each of
    ``plan.todo`` on any machine that sees the folder, then ``run(..., resume=True)``
    to collect them (docs/EXPERIMENTS.md shows it with Ray).
    """
    exp = EXPERIMENTS.get(name)
    cfg = resolve(exp.config, exp.presets, preset, overrides, name)
    cfg_data = as_dict(cfg)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    folder, resuming = pick_folder(out, name, cfg_data, resume)
    (folder / "units").mkdir(parents=True, exist_ok=True)
    units = exp.units(cfg)
    keys = [unit_key(u) for u in units]
    if len(set(keys)) != len(keys):
        raise InvalidInputError(f"experiment {name!r} produced duplicate units; check its grid")
    info = read_json(folder / "run.json") if resuming else {}
    info.update(
        experiment=name,
        summary=exp.summary,
        preset=preset,
        config=cfg_data,
        overrides={
            k: str(v) if not isinstance(v, (int, float, bool)) else v for k, v in overrides.items()
        },
        seed=getattr(cfg, "seed", None),
        versions=versions(),
        status="planned",
        units=len(units),
    )
    info.setdefault("timings", {"units": {}})
    info.setdefault("started", time.time())
    info["resumed"] = info.get("resumed", 0) + (1 if resuming else 0)
    write_json(folder / "run.json", info)
    todo = [
        u
        for u, k in zip(units, keys, strict=True)
        if not (folder / "units" / k / "unit.json").is_file()
    ]
    return Plan(name, folder, cfg, units, todo, info)


def run_unit(plan: Plan, unit: dict, threads: int = 1) -> dict:
    """Compute one unit of ``plan`` into ``plan.folder/units/KEY`` (a cluster worker's job)."""
    numbers, _seconds = _run_one(
        plan.name, plan.config, unit, str(plan.folder / "units" / unit_key(unit)), threads
    )
    return numbers


def run(
    name: str,
    out: str | Path = "runs/",
    preset: str = "quick",
    *,
    resume: bool = False,
    workers: int = 1,
    threads: int = 1,
    quiet: bool = False,
    **overrides: Any,
) -> Result:
    """Run experiment ``name`` with ``preset`` and ``overrides``; return its :class:`Result`.

    ``workers`` > 1 runs the units in that many processes; each unit uses ``threads`` torch
    threads (1 by default: small models gain little from more, and a fixed count keeps the
    numbers identical whatever ``workers`` is). ``resume=True`` continues the latest run
    folder of this experiment (same config), skipping its finished units.

    >>> gp.experiments.run("init_gradients", out="runs/", seeds=2)   # doctest: +SKIP
    """
    for what, value in (("workers", workers), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    exp = EXPERIMENTS.get(name)
    p = plan(name, out, preset, resume=resume, **overrides)
    cfg, folder, units, info = p.config, p.folder, p.units, p.info
    keys = [unit_key(u) for u in units]
    info.update(workers=workers, threads=threads, status="running")
    write_json(folder / "run.json", info)
    done: dict[str, dict] = {}
    for key in keys:
        f = folder / "units" / key / "unit.json"
        if f.is_file():
            data = read_json(f)
            done[key] = data["numbers"]
            info["timings"]["units"].setdefault(key, round(data.get("seconds", 0.0), 4))
    todo = [(u, k) for u, k in zip(units, keys, strict=True) if k not in done]
    start = time.perf_counter()

    def finished(key: str, numbers: dict, seconds: float) -> None:
        done[key] = numbers
        info["timings"]["units"][key] = round(seconds, 4)

    bar = None
    if not quiet:
        from ..report.terminal import progress

        bar = progress(transient=False)
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task(f"{name} ({preset})", total=len(units), completed=len(done))
        if workers == 1 or len(todo) <= 1:
            for unit, key in todo:
                numbers, seconds = _run_one(name, cfg, unit, str(folder / "units" / key), threads)
                finished(key, numbers, seconds)
                if bar is not None:
                    bar.advance(task)
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # fork after torch threads can hang
            pool = ProcessPoolExecutor(workers, ctx)
            futures = {
                pool.submit(_run_one, name, cfg, u, str(folder / "units" / k), threads): k
                for u, k in todo
            }
            try:
                for fut in as_completed(futures):
                    numbers, seconds = fut.result()
                    finished(futures[fut], numbers, seconds)
                    if bar is not None:
                        bar.advance(task)
            except BaseException:
                # no waiting for running units (Ctrl-C reaches the workers too); what they
                # finish before they stop is still written, and resume picks it up
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
    except BaseException as err:
        info["status"] = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        info["error"] = f"{type(err).__name__}: {err}"
        info["timings"]["last_session_s"] = round(time.perf_counter() - start, 3)
        write_json(folder / "run.json", info)
        if isinstance(err, KeyboardInterrupt) and not quiet:
            print(
                f"interrupted: {len(done)} of {len(units)} units finished are kept in {folder}; "
                f"continue with --resume (resume=True)",
                file=sys.stderr,
            )
        raise
    finally:
        if bar is not None:
            bar.stop()
    results = [(u, done[k]) for u, k in zip(units, keys, strict=True)]
    numbers = exp.summarize(cfg, results)
    info["timings"]["last_session_s"] = round(time.perf_counter() - start, 3)
    info["timings"]["units_total_s"] = round(sum(info["timings"]["units"].values()), 3)
    info.update(status="done", finished=time.time())
    info.pop("error", None)
    write_json(folder / "result.json", {"experiment": name, "preset": preset, **numbers})
    write_json(folder / "run.json", info)
    return Result(folder, cfg, numbers, results)


def load(folder: str | Path) -> Result:
    """A finished run folder as a :class:`Result` (config as stored, as a dict)."""
    folder = Path(folder)
    info = read_json(folder / "run.json")
    if not (folder / "result.json").is_file():
        raise RunStoreError(
            f"{folder} has no result.json (status {info.get('status')!r}); "
            f"finish it with gradprobe run {info.get('experiment')} --resume"
        )
    numbers = read_json(folder / "result.json")
    units = []
    for key in (folder / "units").iterdir():
        if (key / "unit.json").is_file():
            data = read_json(key / "unit.json")
            units.append((data["unit"], data["numbers"]))
    return Result(folder, info["config"], numbers, units)


def run_from_cli(
    name: str, preset: str, sets: list[str], out: Path, resume: bool, workers: int, threads: int
) -> Result:
    """``gradprobe run NAME --set k=v ...``: parse the pairs, run, return the Result."""
    overrides = parse_sets(sets)
    return run(
        name, out=out, preset=preset, resume=resume, workers=workers, threads=threads, **overrides
    )
