"""The run file's layout (tables, header) and the records a run holds; docs/PROBE.md has the
table of tables. Also the checks that tell a damaged or foreign file from a run, and how
meta values and failed writes are put into words."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError

FORMAT = "gradprobe-run"
VERSION = 1
APPLICATION_ID = 0x67707262  # "gprb": marks the file as a gradprobe run
FILENAME = "run.sqlite"  # used when a folder is given as path
SQLITE_MAGIC = b"SQLite format 3\x00"

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

# The columns of each table, as SCHEMA creates them (a test keeps the two in step).
TABLES: dict[str, tuple[str, ...]] = {
    "meta": ("key", "value"),
    "layers": ("id", "name", "role", "module_type", "activation", "position", "shape"),
    "quantities": ("id", "quantity", "stat"),
    "steps": ("step", "wall_time"),
    "scalars": ("step", "layer_id", "quantity_id", "value"),
    "series": ("step", "layer_id", "quantity", "idx", "value"),
    "histograms": (
        *("step", "layer_id", "quantity", "lo", "hi", "counts", "below", "above"),
        *("zero", "nan", "posinf", "neginf"),
    ),
    "events": ("id", "step", "phase", "layer_id", "detail"),
}


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


def resolve(path: str | Path) -> Path:
    """The run file of ``path``: the path itself, or ``run.sqlite`` inside a folder."""
    p = Path(path).expanduser()
    return p / FILENAME if p.is_dir() else p


def connect(target: str, uri: bool = False) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit), usable from any thread."""
    con = sqlite3.connect(target, uri=uri, check_same_thread=False, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 5000")
    return con


def error_name(err: sqlite3.Error) -> str:
    """SQLite's result code name (``SQLITE_FULL``, ...); read from the message before 3.11."""
    name = getattr(err, "sqlite_errorname", None)
    if name:
        return name
    text = str(err)
    for needle, code in (
        ("disk is full", "SQLITE_FULL"),
        ("malformed", "SQLITE_CORRUPT"),
        ("not a database", "SQLITE_NOTADB"),
        ("readonly", "SQLITE_READONLY"),
        ("unable to open", "SQLITE_CANTOPEN"),
        ("disk I/O", "SQLITE_IOERR"),
        ("no such", "SQLITE_ERROR"),
    ):
        if needle in text:
            return code
    return "SQLITE_ERROR"


def layout_problems(con: sqlite3.Connection) -> dict[str, tuple[str, ...] | None]:
    """Tables of SCHEMA that are missing (None) or lack columns (the missing names)."""
    out: dict[str, tuple[str, ...] | None] = {}
    for table, columns in TABLES.items():
        have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        if not have:
            out[table] = None
        elif missing := tuple(c for c in columns if c not in have):
            out[table] = missing
    return out


def describe_layout(problems: dict[str, tuple[str, ...] | None]) -> str:
    """``no table 'events'; table 'layers' lacks column 'shape'``."""
    parts = []
    for table, missing in problems.items():
        if missing is None:
            parts.append(f"no table {table!r}")
        else:
            cols = ", ".join(repr(c) for c in missing)
            parts.append(f"table {table!r} lacks column{'s' if len(missing) > 1 else ''} {cols}")
    return "; ".join(parts)


def file_problem(p: Path) -> str | None:
    """Why ``p`` cannot be a readable run, from its bytes alone (None: it may be one).

    The SQLite header (https://sqlite.org/fileformat.html): bytes 16-17 the page size,
    28-31 the page count (valid when 24-27 equal 92-95), 18 = 2 in WAL mode, 68-71 the
    application id."""
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(100)
    if size == 0:
        return (
            f"{p} is empty (0 bytes): nothing was ever stored in it (a writer stopped before "
            "its first write, or an empty copy); record the run again"
        )
    if not head.startswith(SQLITE_MAGIC[: len(head)]):
        return (
            f"{p} is not a gradprobe run (not a SQLite file); "
            "pass a file written by gradprobe.watch(path=...)"
        )
    if len(head) < 100:
        return (
            f"{p} is truncated: only {size} bytes, less than a SQLite header (a copy cut "
            "short, or a disk that filled); nothing in it can be recovered"
        )
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    wal = Path(str(p) + "-wal")
    if wal.exists() and wal.stat().st_size:  # pages may still be in the WAL (a live run)
        return None
    if head[24:28] == head[92:96] and pages and page and size < page * pages:
        return (
            f"{p} is truncated: it holds {size} of the {page * pages} bytes its header "
            "announces (a copy cut short, or a disk that filled while it was written)"
        )
    return None


def foreign_reason(p: Path, con: sqlite3.Connection) -> str:
    """Why a SQLite file without gradprobe's application id is refused, in words."""
    head = p.read_bytes()[:100]
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    except sqlite3.Error:
        tables = []
    wal = Path(str(p) + "-wal")
    if not tables and head[18] == 2 and not (wal.exists() and wal.stat().st_size):
        return (
            f"{p} holds a SQLite header but no gradprobe data: a copy of a run taken while "
            f"it was written, without its {wal.name} file (where the steps were)? Copy "
            f"{wal.name} beside it, or copy the run after its `with gp.watch(...)` block ends"
        )
    what = f"its tables: {', '.join(tables[:6])}" if tables else "it has no tables"
    return (
        f"{p} is not a gradprobe run (a SQLite file without the gradprobe header; {what}); "
        "pass a file written by gradprobe.watch(path=...)"
    )


def is_run_file(p: Path) -> bool:
    """True for a SQLite file whose application_id marks it as a gradprobe run."""
    try:
        if file_problem(p) is not None:
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


def readable(con: sqlite3.Connection) -> str:
    """What can still be read, table by table: ``meta, steps (50: 0-49), ...; unreadable:
    histograms`` (each table is scanned once; used only when something failed)."""
    ok, bad = [], []
    for table in TABLES:
        try:
            (n,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            if table == "steps" and n:
                lo, hi = con.execute("SELECT min(step), max(step) FROM steps").fetchone()
                ok.append(f"steps ({n}: {lo}-{hi})")
            else:
                ok.append(f"{table} ({n} rows)")
        except sqlite3.Error:
            bad.append(table)
    text = "readable: " + (", ".join(ok) or "nothing")
    return text + (f"; unreadable: {', '.join(bad)}" if bad else "")


def advice(err: sqlite3.Error) -> str:
    """What a failed write means, and what to do, by SQLite's result code."""
    name = error_name(err)
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        return (
            f"the disk is full or a file-size limit was reached ({err}); free disk space or "
            "pass a path on another disk"
        )
    if name.startswith("SQLITE_READONLY"):
        return f"the file or its folder became read-only ({err}); check its permissions"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return f"the file was damaged while it was written ({err}); record to another path"
    return str(err)


def _plain(value: Any) -> Any:
    """JSON for numpy/torch scalars and arrays (their ``tolist``) and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def encode_meta(items: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, JSON text)`` rows; InvalidInputError for a key or value JSON cannot hold."""
    try:
        return [(str(k), json.dumps(v, default=_plain)) for k, v in items.items()]
    except (TypeError, ValueError) as err:
        raise InvalidInputError(
            f"meta values must be JSON data (str, number, bool, None, list, dict), got a "
            f"{err}; convert it first, e.g. float(x) or x.tolist()"
        ) from None
