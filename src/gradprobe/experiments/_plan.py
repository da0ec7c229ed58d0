"""Planning a run: the resolved config, its run folder, every unit, and which are left to do.

A unit is finished when its ``unit.json`` exists (written last, atomically). The plan reads
each finished one once, so running the plan never lists the folder again; a ``unit.json``
that cannot be read counts as not finished (the unit is computed again, from scratch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, RunStoreError
from ._config import as_dict, resolve
from ._experiment import get as get_experiment
from ._folder import make_dir, pick_folder, read_json, unit_key
from ._status import Status


@dataclass(frozen=True)
class Plan:
    """A run folder made ready: its config, every unit, and those not finished yet.

    ``finished`` maps the key of each finished unit to its numbers; ``todo`` is the rest,
    in the order of ``units``."""

    name: str
    preset: str
    folder: Path
    config: Any
    units: list[dict]
    todo: list[dict]
    finished: dict[str, dict] = field(repr=False, default_factory=dict)
    status: Status | None = field(repr=False, default=None, compare=False)

    def key(self, unit: dict) -> str:
        """The unit's folder name under ``folder/units``."""
        return unit_key(unit)

    def unit_folder(self, unit: dict) -> Path:
        return self.folder / "units" / unit_key(unit)

    @property
    def info(self) -> dict:
        """The run.json as planned."""
        return self.status.info if self.status is not None else {}


def _read_finished(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
        return {"numbers": data["numbers"], "seconds": float(data.get("seconds", 0.0))}
    except (RunStoreError, KeyError, TypeError, ValueError):
        return None  # damaged: compute the unit again


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
    exp = get_experiment(name)
    cfg = resolve(exp.config, exp.presets, preset, overrides, name)
    units = exp.units(cfg)
    if not units:
        raise InvalidInputError(f"experiment {name!r} has no units with this config")
    keys = [unit_key(u) for u in units]
    if len(set(keys)) != len(keys):
        raise InvalidInputError(f"experiment {name!r} produced duplicate units; check its grid")
    if not isinstance(out, (str, os.PathLike)):
        raise InvalidInputError(f"out must be a folder path, got {out!r}; e.g. out='runs/'")
    out = Path(out).expanduser()
    make_dir(out)
    folder, resuming = pick_folder(out, name, as_dict(cfg), resume)
    make_dir(folder / "units")
    finished, todo = {}, []
    for unit, key in zip(units, keys, strict=True):
        record = _read_finished(folder / "units" / key / "unit.json") if resuming else None
        if record is None:
            todo.append(unit)
        else:
            finished[key] = record
    status = Status.planned(
        folder,
        resuming,
        name=name,
        summary=exp.summary,
        preset=preset,
        cfg=cfg,
        overrides=overrides,
        units=len(units),
        finished={k: r["seconds"] for k, r in finished.items()},
    )
    numbers = {k: r["numbers"] for k, r in finished.items()}
    return Plan(name, preset, folder, cfg, units, todo, numbers, status)
