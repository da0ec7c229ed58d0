"""``Run``: a recorded run, read-only. ``Run.load(path)`` opens a stored one; a probe's
``probe.run`` (a :class:`~gradprobe.run.RunWriter`, which is a Run) reads the same way.

A file that is not a complete run (truncated, damaged pages, an older layout without some
tables or columns) raises a RunStoreError that says what is wrong and what is still
readable; ``gradprobe.run.recover`` copies that part into a new run file.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, RunStoreError
from ._schema import (
    APPLICATION_ID,
    VERSION,
    Event,
    Histogram,
    Layer,
    connect,
    describe_layout,
    error_name,
    file_problem,
    foreign_reason,
    layout_problems,
    readable,
    resolve,
)

# The tables each reading method needs (an older layout may lack some).
_ROWS = ("scalars", "layers", "quantities")


def open_reader(p: Path, lenient: bool = False) -> sqlite3.Connection:
    """A query-only connection to ``p``. A plain one first, so that a run left by a killed
    writer is recovered from its -wal; ``mode=ro`` where the folder cannot be written.

    ``lenient``: also open a truncated file (SQLite refuses one whose header announces more
    pages than it holds unless ``writable_schema`` is on; ``query_only`` still forbids
    every write), so that the pages which are there can be read."""
    uri = p.resolve().as_uri()
    for i, mode in enumerate(("rw", "ro")):  # (never "rwc": a missing file is not created)
        con = connect(f"{uri}?mode={mode}", uri=True)
        try:
            con.execute("PRAGMA query_only = ON")
            if lenient:
                con.execute("PRAGMA writable_schema = ON")
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.OperationalError as err:
            con.close()
            cannot_write = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR")
            if i or not error_name(err).startswith(cannot_write):
                raise
        except BaseException:
            con.close()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def recover_hint(p: Path | None) -> str:
    if p is None:
        return ""
    out = p.with_name(p.stem + ".recovered" + p.suffix)
    return f"; copy what is readable into a new run with gradprobe.run.recover('{p}', '{out}')"


class Run:
    """A recorded run, read-only. Build one with :func:`gradprobe.watch`/``check`` or
    ``Run.load``; every reading method below works on both."""

    def __init__(
        self,
        con: sqlite3.Connection | None,
        path: Path | None,
        layout: dict[str, tuple[str, ...] | None] | None = None,
    ) -> None:
        self._con = con
        self.path = path
        self._layout = layout or {}  # tables missing (None) or lacking columns (their names)
        self._closed = False

    @property
    def writable(self) -> bool:
        """False: a loaded run is read-only (a :class:`RunWriter` is writable until closed)."""
        return False

    # -- opening and closing ----------------------------------------------------------------
    @staticmethod
    def create(path: str | Path | None = None, meta: dict | None = None, overwrite: bool = False):
        """A new writable run: :meth:`RunWriter.create`, under the name older callers use."""
        from . import RunWriter  # the package: the writer module builds on this one

        return RunWriter.create(path, meta, overwrite)

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Open a stored run read-only (a file, or a folder holding ``run.sqlite``)."""
        if isinstance(path, Run):
            return path
        if not isinstance(path, (str, Path)) and not hasattr(path, "__fspath__"):
            raise InvalidInputError(f"Run.load needs a file path, got {type(path).__name__}")
        p = resolve(path)
        if not p.is_file():
            raise RunStoreError(f"no run file at {p}; pass the path given to watch(path=...)")
        problem = file_problem(p)
        try:
            con = open_reader(p, lenient=problem is not None)
        except sqlite3.Error as err:
            raise RunStoreError(
                problem or f"{p} is damaged ({err}): it cannot be opened as a run"
            ) from None
        try:
            if problem:  # truncated: say what the part that is there still holds
                raise RunStoreError(f"{problem}; {readable(con)}{recover_hint(p)}")
            (app_id,) = con.execute("PRAGMA application_id").fetchone()
            if app_id != APPLICATION_ID:
                raise RunStoreError(foreign_reason(p, con))
            layout = layout_problems(con)
        except sqlite3.Error as err:
            con.close()
            raise RunStoreError(
                f"{p} is damaged ({err}): its table of tables cannot be read{recover_hint(p)}"
            ) from None
        except BaseException:
            con.close()
            raise
        if "meta" in layout:
            what = readable(con)
            con.close()
            raise RunStoreError(
                f"{p} is not a complete gradprobe run: {describe_layout(layout)} (an older "
                f"layout, or a damaged file); {what}{recover_hint(p)}"
            )
        run = cls(con, p, layout)
        version = run.meta.get("version")
        if version != VERSION:
            newer = isinstance(version, int) and version > VERSION
            run.close()
            raise RunStoreError(
                f"{p} has run format version {version}; this gradprobe reads {VERSION}"
                + ("; upgrade gradprobe (pip install -U gradprobe) to read it" if newer else "")
            )
        return run

    def close(self) -> None:
        """Close the file (idempotent); an in-memory run stays open (closing would lose it)."""
        if self.path is None:
            return
        self._closed = True
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "memory"
        try:
            return f"Run({where}, {len(self.steps)} logged steps, {len(self.layers())} layers)"
        except RunStoreError as err:
            return f"Run({where}, unreadable: {err})"

    # -- writing: refused (a RunWriter overrides these while it is open) ---------------------
    def _refuse(self, what: str) -> RunStoreError:
        return RunStoreError(
            f"run {self.path or 'in memory'} is read-only (opened with Run.load), so it "
            f"cannot store {what}; a run is written only by the probe recording it: write "
            "inside the `with gp.watch(...)` block, e.g. probe.run.set_meta(key, value)"
        )

    def set_meta(self, key: str, value: Any) -> None:
        raise self._refuse(f"meta {key!r}")

    def update_meta(self, items: dict[str, Any]) -> None:
        raise self._refuse(f"meta {', '.join(map(repr, items))}")

    def add_layer(self, name: str, role: str, module_type=None, activation=None, shape=None):
        raise self._refuse(f"layer {name!r}")

    def set_activation(self, name: str, activation: str | None) -> None:
        raise self._refuse(f"layer {name!r}")

    def write_step(self, step: int, scalars, *args: Any, **kwargs: Any) -> None:
        raise self._refuse(f"step {step}")

    # -- reading ------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            if self._closed or self.path is None:
                raise RunStoreError(f"run {self.path} is closed; open it again with Run.load(path)")
            if not self.path.is_file():
                raise RunStoreError(f"run file {self.path} is gone (deleted or moved)")
            try:  # a finished writer hands its file over to a reading connection
                self._con = open_reader(self.path)
            except sqlite3.Error as err:
                raise RunStoreError(f"cannot read run file {self.path}: {err}") from None
        return self._con

    def _q(self, sql: str, args: tuple = (), need: tuple[str, ...] = ()) -> list[tuple]:
        """Rows of ``sql``; RunStoreError (never a raw sqlite3 error) when the file cannot
        answer: a table of ``need`` missing from its layout, or damaged pages."""
        gaps = {t: self._layout[t] for t in need if t in self._layout}
        if gaps:
            raise RunStoreError(
                f"{self.path} has {describe_layout(gaps)} (an older layout, or a damaged "
                f"file), so this cannot be read from it; {readable(self._connection())}"
            )
        con = self._connection()
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            try:
                what = readable(con)
            except sqlite3.Error:
                what = "nothing else could be read"
            raise RunStoreError(
                f"{self.path or 'the run'} is damaged: reading it failed ({err}); {what}"
                f"{recover_hint(self.path)}"
            ) from None

    def _damaged(self, what: str, err: Exception) -> RunStoreError:
        return RunStoreError(f"{self.path} is damaged: {what} ({err}){recover_hint(self.path)}")

    @property
    def meta(self) -> dict[str, Any]:
        out = {}
        for k, v in self._q("SELECT key, value FROM meta", need=("meta",)):
            try:
                out[k] = json.loads(v)
            except (TypeError, ValueError) as err:
                raise self._damaged(f"meta {k!r} holds no JSON", err) from None
        return out

    @property
    def steps(self) -> list[int]:
        """The logged steps, in order."""
        return [s for (s,) in self._q("SELECT step FROM steps ORDER BY step", need=("steps",))]

    def layers(self, role: str | None = "module") -> list[Layer]:
        """Layers of ``role`` (None: all) in execution order; never-called ones last."""
        rows = self._q(
            "SELECT name, role, module_type, activation, position, shape FROM layers "
            "WHERE ?1 IS NULL OR role = ?1 ORDER BY position IS NULL, position, id",
            (role,),
            need=("layers",),
        )
        try:
            return [
                Layer(n, r, t, a, p, None if s is None else tuple(json.loads(s)))
                for n, r, t, a, p, s in rows
            ]
        except (TypeError, ValueError) as err:
            raise self._damaged("a layer's shape holds no JSON list", err) from None

    def quantities(self) -> list[tuple[str, str]]:
        return self._q("SELECT quantity, stat FROM quantities ORDER BY id", need=("quantities",))

    def rows(self, step: int | None = None) -> list[tuple[int, str, str, str, float]]:
        """The long table as tuples ``(step, layer, quantity, stat, value)`` (no pandas needed);
        NaN, stored as NULL, comes back as NaN. ``step`` selects one logged step."""
        rows = self._q(
            "SELECT s.step, l.name, q.quantity, q.stat, s.value FROM scalars s "
            "JOIN layers l ON l.id = s.layer_id JOIN quantities q ON q.id = s.quantity_id "
            "WHERE ?1 IS NULL OR s.step = ?1 ORDER BY s.step, s.rowid",
            (step,),
            need=_ROWS,
        )
        return [(st, la, q, stat, math.nan if v is None else v) for st, la, q, stat, v in rows]

    def to_pandas(self):
        """The long table: one row per (step, layer, quantity, stat, value)."""
        import pandas as pd

        df = pd.DataFrame(self.rows(), columns=["step", "layer", "quantity", "stat", "value"])
        df["value"] = df["value"].astype(float)
        return df

    def matrix(self, quantity: str, stat: str, role: str | None = None):
        """``(layer names, steps, array[layer, step])`` of one (quantity, stat); NaN = missing.

        Layers are in execution order (parameters in registration order)."""
        rows = self._q(
            "SELECT l.name, s.step, s.value FROM scalars s JOIN layers l ON l.id = s.layer_id "
            "JOIN quantities q ON q.id = s.quantity_id WHERE q.quantity = ? AND q.stat = ?",
            (quantity, stat),
            need=_ROWS,
        )
        present = {r[0] for r in rows}
        names = [la.name for la in self.layers(role) if la.name in present]
        steps = sorted({r[1] for r in rows})
        li = {n: i for i, n in enumerate(names)}
        si = {s: i for i, s in enumerate(steps)}
        out = np.full((len(names), len(steps)), np.nan)
        for name, step, value in rows:
            if name in li:
                out[li[name], si[step]] = math.nan if value is None else value
        return names, steps, out

    def series(self, layer: str, quantity: str, step: int) -> np.ndarray:
        """A per-time-step (or per-call) series, e.g. ``rnn_grad_input`` norms over t."""
        rows = self._q(
            "SELECT s.value FROM series s JOIN layers l ON l.id = s.layer_id "
            "WHERE l.name = ? AND s.quantity = ? AND s.step = ? ORDER BY s.idx",
            (layer, quantity, step),
            need=("series", "layers"),
        )
        return np.array([math.nan if r[0] is None else r[0] for r in rows], dtype=float)

    def histogram(self, layer: str, quantity: str, step: int) -> Histogram | None:
        rows = self._q(
            "SELECT lo, hi, counts, below, above, zero, nan, posinf, neginf FROM histograms h "
            "JOIN layers l ON l.id = h.layer_id WHERE l.name = ? AND h.quantity = ? AND step = ?",
            (layer, quantity, step),
            need=("histograms", "layers"),
        )
        if not rows:
            return None
        lo, hi, blob, *rest = rows[0]
        if not isinstance(blob, bytes) or len(blob) % 8:
            raise self._damaged(
                f"the {quantity} histogram of {layer!r} at step {step} is not a list of counts",
                TypeError(f"{type(blob).__name__} of {len(blob or b'')} bytes"),
            )
        return Histogram(lo, hi, np.frombuffer(blob, dtype="<i8").copy(), *rest)

    def events(self) -> list[Event]:
        """First-non-finite events, in the order they were recorded."""
        rows = self._q(
            "SELECT e.step, e.phase, l.name, e.detail FROM events e "
            "LEFT JOIN layers l ON l.id = e.layer_id ORDER BY e.id",
            need=("events", "layers"),
        )
        return [Event(*r) for r in rows]

    def first_nonfinite(self, phase: str = "forward") -> Event | None:
        """The first non-finite event of ``phase`` ("forward" or "backward"), or None."""
        return next((e for e in self.events() if e.phase == phase), None)
