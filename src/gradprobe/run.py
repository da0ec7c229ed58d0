"""The run store: what a probe recorded, one SQLite file per run (schema in docs/PROBE.md).

A probe writes one transaction per logged step (WAL mode, ``synchronous=NORMAL``), so a
process killed at any point leaves every committed step readable, and another process
can read the run while it is written. ``Run.load(path)`` opens a stored run read-only;
without a path the run lives in memory with the same interface.

One writer per run: the writer holds an exclusive ``flock`` on ``<file>.lock`` for its
lifetime, so a second process that tries to write the same path gets a RunStoreError
(never a file corrupted by two writers). A write that fails (disk full, file-size limit)
rolls back that step only and raises a RunStoreError; every step before it stays.

>>> run = Run.load("runs/mlp.sqlite")                         # doctest: +SKIP
>>> run.to_pandas().query("quantity == 'activation' and stat == 'std'")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError, RunStoreError

FORMAT = "gradprobe-run"
VERSION = 1
APPLICATION_ID = 0x67707262  # "gprb": marks the file as a gradprobe run
FILENAME = "run.sqlite"  # used when a folder is given as path

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE layers(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
    module_type TEXT, activation TEXT, position INTEGER, shape TEXT);
CREATE TABLE quantities(id INTEGER PRIMARY KEY, quantity TEXT NOT NULL, stat TEXT NOT NULL,
    UNIQUE(quantity, stat));
CREATE TABLE steps(step INTEGER PRIMARY KEY, wall_time REAL NOT NULL);
CREATE TABLE scalars(step INTEGER NOT NULL, layer_id INTEGER NOT NULL,
    quantity_id INTEGER NOT NULL, value REAL);
CREATE TABLE series(step INTEGER NOT NULL, layer_id INTEGER NOT NULL, quantity TEXT NOT NULL,
    idx INTEGER NOT NULL, value REAL);
CREATE TABLE histograms(step INTEGER NOT NULL, layer_id INTEGER NOT NULL,
    quantity TEXT NOT NULL, lo REAL, hi REAL, counts BLOB NOT NULL, below INTEGER,
    above INTEGER, zero INTEGER, nan INTEGER, posinf INTEGER, neginf INTEGER);
CREATE TABLE events(id INTEGER PRIMARY KEY, step INTEGER NOT NULL, phase TEXT NOT NULL,
    layer_id INTEGER, detail TEXT);
"""


@dataclass(frozen=True)
class Layer:
    """A recorded layer: a module (``role="module"``), a parameter or the model input."""

    name: str
    role: str  # "module" | "param" | "input"
    module_type: str | None
    activation: str | None  # "saturating:<lo>,<hi>" | "relu" | None
    position: int | None  # execution order of the first forward call; None if never called
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Event:
    """The first non-finite value seen in ``phase`` ("forward" | "backward")."""

    step: int
    phase: str
    layer: str | None
    detail: str


@dataclass(frozen=True)
class Histogram:
    """Counts of finite non-zero values in ``len(counts)`` equal bins on ``[lo, hi]``,
    plus explicit counts outside the range, of exact zeros, NaN, +Inf and -Inf."""

    lo: float
    hi: float
    counts: np.ndarray
    below: int
    above: int
    zero: int
    nan: int
    posinf: int
    neginf: int

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, len(self.counts) + 1)


def _resolve(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p / FILENAME if p.is_dir() else p


def _lock(p: Path):
    """An exclusive, non-blocking lock on ``<p>.lock``; the open file is the lock's owner."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process guard
        return None
    lock_path = Path(str(p) + ".lock")
    try:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the writer's lifetime
    except OSError as err:
        raise RunStoreError(
            f"cannot create the lock file {lock_path}: {err.strerror}; check that the folder "
            "is writable"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise RunStoreError(
            f"{p} is being written by {owner}; one run file has one writer — pass another "
            "path, or wait for that process to finish"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}")
    handle.flush()
    return handle


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    con = sqlite3.connect(target, uri=uri, check_same_thread=False, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 5000")
    return con


class Run:
    """A recorded run. Build one with :func:`gradprobe.watch`/``check`` or ``Run.load``."""

    def __init__(self, con: sqlite3.Connection, path: Path | None, writable: bool) -> None:
        self._con = con
        self.path = path
        self.writable = writable
        self._layer_ids: dict[str, int] = {}
        self._qids: dict[tuple[str, str], int] = {}
        self._lock = None  # the writer's lock file (file runs only)

    # -- creating and opening ---------------------------------------------------------
    @classmethod
    def create(
        cls, path: str | Path | None = None, meta: dict | None = None, overwrite: bool = False
    ) -> Run:
        """A new, writable run: in memory when ``path`` is None, else one SQLite file."""
        lock = None
        if path is None:
            con = _connect(":memory:")
        else:
            p = _resolve(path)
            if not p.parent.is_dir():
                raise RunStoreError(
                    f"cannot create run file {p}: folder {p.parent} does not exist; "
                    "create it first (mkdir -p) or pass another path"
                )
            lock = _lock(p)  # before looking at (or replacing) the file
            if p.exists():
                if not overwrite:
                    kind = "a gradprobe run" if _is_run_file(p) else "not a gradprobe run"
                    raise RunStoreError(
                        f"{p} already exists ({kind}); pass a new path, delete the file, "
                        "or pass overwrite=True to replace it"
                    )
                if not _is_run_file(p):
                    raise RunStoreError(
                        f"{p} exists and is not a gradprobe run; refusing to overwrite it"
                    )
                for suffix in ("", "-wal", "-shm"):
                    Path(str(p) + suffix).unlink(missing_ok=True)
            try:
                con = _connect(str(p))
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as err:
                raise RunStoreError(
                    f"cannot write run file {p}: {err}; check that the folder is writable"
                ) from None
        info = {"format": FORMAT, "version": VERSION, "created": time.time(), **(meta or {})}
        try:
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute("BEGIN")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in info.items()]
            )
            con.execute("COMMIT")
        except sqlite3.Error as err:
            raise RunStoreError(
                f"cannot write run file {path}: {err}; check that the folder is writable"
            ) from None
        run = cls(con, None if path is None else _resolve(path), writable=True)
        run._lock = lock
        return run

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Open a stored run read-only (a file, or a folder holding ``run.sqlite``)."""
        if isinstance(path, Run):
            return path
        if not isinstance(path, (str, Path)):
            raise InvalidInputError(f"Run.load needs a file path, got {type(path).__name__}")
        p = _resolve(path)
        if not p.is_file():
            raise RunStoreError(f"no run file at {p}; pass the path given to watch(path=...)")
        if not _is_run_file(p):
            raise RunStoreError(
                f"{p} is not a gradprobe run (no gradprobe header); "
                "pass a file written by gradprobe.watch(path=...)"
            )
        # A plain connection (not mode=ro) so that a run left by a killed writer is recovered.
        con = _connect(str(p))
        con.execute("PRAGMA query_only = ON")
        run = cls(con, p, writable=False)
        version = run.meta.get("version")
        if version != VERSION:
            newer = isinstance(version, int) and version > VERSION
            raise RunStoreError(
                f"{p} has run format version {version}; this gradprobe reads {VERSION}"
                + ("; upgrade gradprobe (pip install -U gradprobe) to read it" if newer else "")
            )
        return run

    def finish_writing(self) -> None:
        """Give up the writer's lock (idempotent): the run stays readable, another process may
        now write this path. Called by the probe when its ``with`` block ends."""
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None
        self.writable = False

    def close(self) -> None:
        """Close the file (idempotent); an in-memory run stays open (closing would lose it)."""
        if self._con is not None and self.path is not None:
            self._con.close()
            self._con = None
        self.finish_writing()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "memory"
        return f"Run({where}, {len(self.steps)} logged steps, {len(self.layers())} layers)"

    # -- writing (used by the probe) ------------------------------------------------------
    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        if self._con is None:
            raise RunStoreError(f"run {self.path} is closed; open it again with Run.load(path)")
        return self._con.execute(sql, args).fetchall()

    def add_layer(self, name: str, role: str, module_type=None, activation=None, shape=None) -> int:
        """Register a layer (idempotent); returns its id."""
        if name not in self._layer_ids:
            shape_s = None if shape is None else json.dumps(list(shape))
            cur = self._con.execute(
                "INSERT INTO layers(name, role, module_type, activation, shape) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, role, module_type, activation, shape_s),
            )
            self._layer_ids[name] = cur.lastrowid
        return self._layer_ids[name]

    def _qid(self, quantity: str, stat: str) -> int:
        key = (quantity, stat)
        if key not in self._qids:
            cur = self._con.execute(
                "INSERT INTO quantities(quantity, stat) VALUES (?, ?)", (quantity, stat)
            )
            self._qids[key] = cur.lastrowid
        return self._qids[key]

    def write_step(
        self,
        step: int,
        scalars: list[tuple[str, str, str, float]],
        positions: dict[str, int] | None = None,
        series: list[tuple[str, str, list[float]]] = (),
        histograms: list[tuple[str, str, Histogram]] = (),
        events: list[Event] = (),
        mark_step: bool = True,
    ) -> None:
        """Store one logged step in one transaction: scalars are (layer, quantity, stat, value)."""
        ids = self._layer_ids
        con = self._con
        con.execute("BEGIN")
        try:
            for name, pos in (positions or {}).items():
                con.execute("UPDATE layers SET position = ? WHERE id = ?", (pos, ids[name]))
            if mark_step:
                con.execute("INSERT OR REPLACE INTO steps VALUES (?, ?)", (step, time.time()))
            con.executemany(
                "INSERT INTO scalars VALUES (?, ?, ?, ?)",
                [(step, ids[lay], self._qid(q, s), v) for lay, q, s, v in scalars],
            )
            con.executemany(
                "INSERT INTO series VALUES (?, ?, ?, ?, ?)",
                [(step, ids[lay], q, i, v) for lay, q, vs in series for i, v in enumerate(vs)],
            )
            con.executemany(
                "INSERT INTO histograms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        step,
                        ids[lay],
                        q,
                        h.lo,
                        h.hi,
                        h.counts.astype("<i8").tobytes(),
                        h.below,
                        h.above,
                        h.zero,
                        h.nan,
                        h.posinf,
                        h.neginf,
                    )
                    for lay, q, h in histograms
                ],
            )
            con.executemany(
                "INSERT INTO events(step, phase, layer_id, detail) VALUES (?, ?, ?, ?)",
                [(e.step, e.phase, ids.get(e.layer), e.detail) for e in events],
            )
            con.execute("COMMIT")
        except BaseException as err:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise RunStoreError(
                    f"could not store step {step} in {self.path or 'memory'}: {err}; the steps "
                    "before it are kept — free disk space or pass a path on another disk"
                ) from None
            raise

    def set_meta(self, key: str, value: Any) -> None:
        self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -- reading --------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._q("SELECT key, value FROM meta")}

    @property
    def steps(self) -> list[int]:
        """The logged steps, in order."""
        return [s for (s,) in self._q("SELECT step FROM steps ORDER BY step")]

    def layers(self, role: str | None = "module") -> list[Layer]:
        """Layers of ``role`` (None: all) in execution order; never-called ones last."""
        rows = self._q(
            "SELECT name, role, module_type, activation, position, shape FROM layers "
            "WHERE ?1 IS NULL OR role = ?1 ORDER BY position IS NULL, position, id",
            (role,),
        )
        return [
            Layer(n, r, t, a, p, None if s is None else tuple(json.loads(s)))
            for n, r, t, a, p, s in rows
        ]

    def quantities(self) -> list[tuple[str, str]]:
        return self._q("SELECT quantity, stat FROM quantities ORDER BY id")

    def rows(self, step: int | None = None) -> list[tuple[int, str, str, str, float]]:
        """The long table as tuples ``(step, layer, quantity, stat, value)`` (no pandas needed);
        NaN, stored as NULL, comes back as NaN. ``step`` selects one logged step."""
        rows = self._q(
            "SELECT s.step, l.name, q.quantity, q.stat, s.value FROM scalars s "
            "JOIN layers l ON l.id = s.layer_id JOIN quantities q ON q.id = s.quantity_id "
            "WHERE ?1 IS NULL OR s.step = ?1 ORDER BY s.step, s.rowid",
            (step,),
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
        )
        return np.array([r[0] for r in rows], dtype=float)

    def histogram(self, layer: str, quantity: str, step: int) -> Histogram | None:
        rows = self._q(
            "SELECT lo, hi, counts, below, above, zero, nan, posinf, neginf FROM histograms h "
            "JOIN layers l ON l.id = h.layer_id WHERE l.name = ? AND h.quantity = ? AND step = ?",
            (layer, quantity, step),
        )
        if not rows:
            return None
        lo, hi, blob, *rest = rows[0]
        return Histogram(lo, hi, np.frombuffer(blob, dtype="<i8").copy(), *rest)

    def events(self) -> list[Event]:
        """First-non-finite events, in the order they were recorded."""
        rows = self._q(
            "SELECT e.step, e.phase, l.name, e.detail FROM events e "
            "LEFT JOIN layers l ON l.id = e.layer_id ORDER BY e.id"
        )
        return [Event(*r) for r in rows]

    def first_nonfinite(self, phase: str = "forward") -> Event | None:
        """The first non-finite event of ``phase`` ("forward" or "backward"), or None."""
        return next((e for e in self.events() if e.phase == phase), None)


def _is_run_file(p: Path) -> bool:
    """True for a SQLite file whose application_id marks it as a gradprobe run."""
    try:
        with p.open("rb") as f:
            header = f.read(16)
        if header and header != b"SQLite format 3\x00":
            return False
        con = sqlite3.connect(str(p), isolation_level=None)
        try:
            con.execute("PRAGMA query_only = ON")
            (app_id,) = con.execute("PRAGMA application_id").fetchone()
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return False
    return app_id == APPLICATION_ID
