"""``run.json``: what a run folder says about itself, and every write of it.

Its ``status`` moves ``planned`` -> ``running`` -> ``done``, or ``interrupted`` (Ctrl-C) /
``failed`` (an error; ``error`` and ``failed_unit`` say which). Each change is written at
once (atomically), so a reader of the folder sees the state as it is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ._config import as_dict
from ._folder import read_json, versions, write_json


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, bool)) else str(value)


class Status:
    """The ``run.json`` of one folder, kept in memory and written on every change."""

    def __init__(self, folder: Path, info: dict) -> None:
        self.folder, self.info = folder, info
        self._start = time.perf_counter()

    @classmethod
    def planned(
        cls,
        folder: Path,
        resuming: bool,
        *,
        name: str,
        summary: str,
        preset: str,
        cfg: Any,
        overrides: dict,
        units: int,
        finished: dict[str, float],
    ) -> Status:
        """A new (or, when ``resuming``, the folder's own) run.json, status ``planned``.

        ``finished``: seconds of each unit already done (their unit.json), for the timings."""
        info = read_json(folder / "run.json") if resuming else {}
        info.update(
            experiment=name,
            summary=summary,
            preset=preset,
            config=as_dict(cfg),
            overrides={k: _plain(v) for k, v in overrides.items()},
            seed=getattr(cfg, "seed", None),
            versions=versions(),
            status="planned",
            units=units,
        )
        timings = info.setdefault("timings", {"units": {}})
        for key, seconds in finished.items():
            timings["units"].setdefault(key, round(seconds, 4))
        info.setdefault("started", time.time())
        info["resumed"] = info.get("resumed", 0) + (1 if resuming else 0)
        status = cls(folder, info)
        status.write()
        return status

    def write(self) -> None:
        write_json(self.folder / "run.json", self.info)

    def running(self, workers: int | None, threads: int, executor: str) -> None:
        self._start = time.perf_counter()
        self.info.update(workers=workers, threads=threads, executor=executor, status="running")
        self.info.pop("failed_unit", None)
        self.write()

    def unit_done(self, key: str, seconds: float) -> None:
        """Kept in memory (written with the next change: one write per unit would be
        quadratic in a sweep of thousands of millisecond units); unit.json holds it anyway."""
        self.info["timings"]["units"][key] = round(seconds, 4)

    def stopped(self, err: BaseException, unit: str | None) -> None:
        self.info["status"] = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        self.info["error"] = f"{type(err).__name__}: {err}"
        if unit is not None:
            self.info["failed_unit"] = unit
        self._session()
        self.write()

    def done(self, name: str, preset: str, numbers: dict) -> None:
        """result.json (the headline numbers), then run.json says ``done``."""
        self._session()
        timings = self.info["timings"]
        timings["units_total_s"] = round(sum(timings["units"].values()), 3)
        self.info.update(status="done", finished=time.time())
        self.info.pop("error", None)
        write_json(self.folder / "result.json", {"experiment": name, "preset": preset, **numbers})
        self.write()

    def _session(self) -> None:
        self.info["timings"]["last_session_s"] = round(time.perf_counter() - self._start, 3)
