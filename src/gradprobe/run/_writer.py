"""``RunWriter``: the one writer of a run, owned by the probe that records it.

A RunWriter is a :class:`Run` (it reads like one) that can also write until it is closed:
``add_layer``, ``write_step`` (one transaction per logged step), ``set_meta`` /
``update_meta``, and ``close(meta=...)``, which stores the closing meta, checkpoints the WAL
into the ``.sqlite`` file (TRUNCATE: the file alone is then complete, ready to copy) and
releases and removes ``<file>.lock``. Every write happens between ``create`` and ``close``,
under the lock. After close the run is read-only and still readable; a write raises a
RunStoreError saying so.

A write that fails (disk full, file-size limit) rolls back that step only and raises a
RunStoreError; every step before it stays. ``close`` never raises for a failed store: it
stores what it can and warns once (GradprobeWarning) with what was kept.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import GradprobeWarning, InvalidInputError, RunStoreError
from ._lock import WriterLock
from ._reader import Run
from ._schema import (
    APPLICATION_ID,
    FORMAT,
    SCHEMA,
    VERSION,
    Event,
    Histogram,
    advice,
    connect,
    encode_meta,
    error_name,
    is_run_file,
    resolve,
)


def _histogram_row(h: Histogram) -> tuple:
    counts = h.counts.astype("<i8").tobytes()
    return (h.lo, h.hi, counts, h.below, h.above, h.zero, h.nan, h.posinf, h.neginf)


class RunWriter(Run):
    """A writable run: one SQLite file (or memory) and its lock, from :meth:`create` to
    :meth:`close`. The probe owns one; ``probe.run`` is it."""

    def __init__(self, con: sqlite3.Connection, path: Path | None, lock: WriterLock | None):
        super().__init__(con, path)
        self._lock = lock
        # a writer dropped without close() still lets go of its lock file (at exit at last)
        self._unlock = weakref.finalize(self, lock.release) if lock is not None else None
        self._writing = True
        self._mutex = threading.RLock()  # one transaction at a time, whatever the thread
        self._layer_ids: dict[str, int] = {}
        self._qids: dict[tuple[str, str], int] = {}
        self._stored = 0  # logged steps committed, and the first and last of them
        self._first: int | None = None
        self._last: int | None = None
        self._lost: list[int] = []  # logged steps whose write failed
        self._failure: str | None = None  # the first failed write, in words

    @property
    def writable(self) -> bool:
        """True until :meth:`close`."""
        return self._writing

    @property
    def _w(self) -> sqlite3.Connection:
        """The writing connection (open until close)."""
        assert self._con is not None
        return self._con

    # -- creating ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, path: str | Path | None = None, meta: dict | None = None, overwrite: bool = False
    ) -> RunWriter:
        """A new, writable run: in memory when ``path`` is None, else one SQLite file (a
        folder gets ``run.sqlite``). ``overwrite=True`` replaces an existing run file."""
        if path is None:
            return cls._init(connect(":memory:"), None, None, meta)
        p = resolve(path)
        if not p.parent.is_dir():
            raise RunStoreError(
                f"cannot create run file {p}: folder {p.parent} does not exist; "
                "create it first (mkdir -p) or pass another path"
            )
        lock = WriterLock(p)  # before looking at (or replacing) the file
        try:
            if p.exists():
                if not overwrite:
                    kind = "a gradprobe run" if is_run_file(p) else "not a gradprobe run"
                    raise RunStoreError(
                        f"{p} already exists ({kind}); pass a new path, delete the file, "
                        "or pass overwrite=True to replace it"
                    )
                if not is_run_file(p):
                    raise RunStoreError(
                        f"{p} exists and is not a gradprobe run; refusing to overwrite it"
                    )
            for suffix in ("", "-wal", "-shm"):
                Path(str(p) + suffix).unlink(missing_ok=True)
            try:
                con = connect(str(p))
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as err:
                raise RunStoreError(
                    f"cannot write run file {p}: {err}; check that the folder is writable"
                ) from None
            try:
                return cls._init(con, p, lock, meta)
            except BaseException:
                con.close()
                for suffix in ("", "-wal", "-shm"):  # a half-made file is no run
                    Path(str(p) + suffix).unlink(missing_ok=True)
                raise
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _init(cls, con, p: Path | None, lock, meta: dict | None) -> RunWriter:
        info = {"format": FORMAT, "version": VERSION, "created": time.time(), **(meta or {})}
        rows = encode_meta(info)
        try:
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute("BEGIN")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            con.executemany("INSERT INTO meta VALUES (?, ?)", rows)
            con.execute("COMMIT")
            if p is not None:  # header and tables into the file itself: a copy is a run
                con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as err:
            raise RunStoreError(
                f"cannot write run file {p}: {advice(err)}; check that the folder is writable"
            ) from None
        return cls(con, p, lock)

    # -- writing -------------------------------------------------------------------------------
    def _refuse(self, what: str) -> RunStoreError:
        return RunStoreError(
            f"run {self.path or 'in memory'} is closed for writing (its probe's `with` block "
            f"ended, or close() was called), so it cannot store {what}; write while the "
            "probe is open, inside the `with gp.watch(...)` block: probe.run.set_meta(key, value)"
        )

    def _transaction(self, what: str, body, reset=None) -> None:
        """Run ``body(con)`` as one transaction; rolled back whole if anything fails.

        A write refused for want of room is tried once more after a checkpoint has emptied
        the WAL (that frees its disk space, and the room under a file-size limit):
        ``reset()`` first undoes what the failed attempt left in memory."""
        if not self._writing:
            raise self._refuse(what)
        with self._mutex:
            for attempt in (0, 1):
                con = self._w
                con.execute("BEGIN")
                try:
                    body(con)
                    con.execute("COMMIT")
                    return
                except sqlite3.Error as err:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    if reset is not None:
                        reset()
                    full = error_name(err).startswith(("SQLITE_FULL", "SQLITE_IOERR"))
                    if attempt or not full or self.path is None or not self._checkpoint():
                        raise
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    if reset is not None:
                        reset()
                    raise

    def add_layer(self, name: str, role: str, module_type=None, activation=None, shape=None) -> int:
        """Register a layer (idempotent); returns its id."""
        if name not in self._layer_ids:
            shape_s = None if shape is None else json.dumps(list(shape))

            new: list[int] = []

            def body(con):
                new[:] = [
                    con.execute(
                        "INSERT INTO layers(name, role, module_type, activation, shape) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (name, role, module_type, activation, shape_s),
                    ).lastrowid
                ]

            self._layer_transaction(name, body)
            self._layer_ids[name] = new[0]
        return self._layer_ids[name]

    def set_activation(self, name: str, activation: str | None) -> None:
        """The activation label of a registered layer, learnt after it was added (a function
        applied to its output inside a ``forward``: probe/_functional.py)."""
        layer_id = self._layer_ids[name]

        def body(con):
            con.execute("UPDATE layers SET activation = ? WHERE id = ?", (activation, layer_id))

        self._layer_transaction(name, body)

    def _layer_transaction(self, name: str, body) -> None:
        try:
            self._transaction(f"layer {name!r}", body)
        except sqlite3.Error as err:
            raise RunStoreError(
                f"could not store layer {name!r} in {self.path or 'memory'}: {advice(err)}"
            ) from None

    def _qid(self, con, quantity: str, stat: str) -> int:
        key = (quantity, stat)
        if key not in self._qids:
            cur = con.execute(
                "INSERT INTO quantities(quantity, stat) VALUES (?, ?)", (quantity, stat)
            )
            self._qids[key] = cur.lastrowid
        return self._qids[key]

    def write_step(
        self,
        step: int,
        scalars: list[tuple[str, str, str, float]],
        positions: dict[str, int] | None = None,
        series: Sequence[tuple[str, str, Sequence[float]]] = (),
        histograms: Sequence[tuple[str, str, Histogram]] = (),
        events: Sequence[Event] = (),
        mark_step: bool = True,
    ) -> None:
        """Store one logged step in one transaction: scalars are (layer, quantity, stat, value)."""
        ids = self._layer_ids
        qids = dict(self._qids)  # ids interned in a step that is rolled back are forgotten

        def reset():
            self._qids = dict(qids)

        def body(con):
            for name, pos in (positions or {}).items():
                con.execute("UPDATE layers SET position = ? WHERE id = ?", (pos, ids[name]))
            if mark_step:
                con.execute("INSERT OR REPLACE INTO steps VALUES (?, ?)", (step, time.time()))
            known = self._qids  # interned ids looked up inline (a call per row costs more)
            con.executemany(
                "INSERT INTO scalars VALUES (?, ?, ?, ?)",
                [
                    (step, ids[lay], known.get((q, s)) or self._qid(con, q, s), v)
                    for lay, q, s, v in scalars
                ],
            )
            con.executemany(
                "INSERT INTO series VALUES (?, ?, ?, ?, ?)",
                [(step, ids[lay], q, i, v) for lay, q, vs in series for i, v in enumerate(vs)],
            )
            con.executemany(
                "INSERT INTO histograms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(step, ids[lay], q, *_histogram_row(h)) for lay, q, h in histograms],
            )
            con.executemany(
                "INSERT INTO events(step, phase, layer_id, detail) VALUES (?, ?, ?, ?)",
                [(e.step, e.phase, ids.get(e.layer), e.detail) for e in events],
            )

        try:
            self._transaction(f"step {step}", body, reset)
        except KeyError as err:
            raise InvalidInputError(
                f"step {step} names layer {err.args[0]!r}, which was never registered; "
                "call add_layer first"
            ) from None
        except sqlite3.Error as err:
            if mark_step:
                self._lost.append(step)
            self._failure = self._failure or advice(err)
            raise RunStoreError(
                f"could not store step {step} in {self.path or 'memory'}: {advice(err)}; the "
                f"steps before it are kept ({self._kept()})"
            ) from None
        if mark_step:
            self._stored += 1
            self._first = step if self._first is None else min(self._first, step)
            self._last = step if self._last is None else max(self._last, step)

    def _kept(self) -> str:
        if not self._stored:
            return "none was stored"
        return f"{self._stored} logged steps, {self._first}-{self._last}"

    def set_meta(self, key: str, value: Any) -> None:
        """Store ``meta[key] = value`` (JSON data) now, in its own transaction."""
        self.update_meta({key: value})

    def update_meta(self, items: dict[str, Any]) -> None:
        """Store several meta entries in one transaction."""
        rows = encode_meta(items)
        what = f"meta {', '.join(map(repr, items))}"
        try:
            self._transaction(
                what, lambda con: con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows)
            )
        except sqlite3.Error as err:
            self._failure = self._failure or advice(err)
            raise RunStoreError(
                f"could not store {what} in {self.path or 'memory'}: {advice(err)}"
            ) from None

    # -- closing -------------------------------------------------------------------------------
    def close(self, meta: dict[str, Any] | None = None) -> None:
        """Finish writing: store ``meta``, checkpoint the WAL into the file, release and
        remove the lock. The run stays readable. Once closed for writing, ``close()`` closes
        the file like :meth:`Run.close`."""
        if not self._writing:
            if meta:
                raise self._refuse(f"meta {', '.join(map(repr, meta))}")
            super().close()
            return
        if meta:
            encode_meta(meta)  # a value JSON cannot hold: refused before anything is let go
        with self._mutex:  # no write of another thread between the last one and the close
            meta_failed = False
            if meta:
                try:
                    self.update_meta(meta)  # (retried after a checkpoint when the disk is full)
                except RunStoreError:
                    meta_failed = True
            try:
                if self.path is not None:
                    self._checkpoint()
                    self._leave_wal()
                    self._w.close()
                    self._con = None  # reads reopen the file read-only (Run._connection)
                else:
                    self._w.execute("PRAGMA query_only = ON")
            finally:
                self._writing = False
                if self._unlock is not None:
                    self._unlock()  # WriterLock.release, once
                    self._lock = self._unlock = None
        self._report(meta if meta_failed else None)

    def finish_writing(self) -> None:
        """``close()``: the name older callers use."""
        self.close()

    def _checkpoint(self) -> bool:
        """Copy the WAL into the file and empty it; True when it is empty now."""
        try:
            busy, _, _ = self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as err:
            self._failure = self._failure or advice(err)
            return False
        return not busy

    def _leave_wal(self) -> None:
        """Back to a rollback journal where no one else has the file open, so that readers
        need no -wal/-shm files (a read-only folder, a copy); else the file stays in WAL."""
        try:
            self._w.execute("PRAGMA busy_timeout = 0")  # a reader elsewhere: do not wait
            self._w.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.Error:
            pass

    def _report(self, unwritten: dict | None) -> None:
        """One warning when something could not be stored: what is kept, what is not."""
        if not self._lost and unwritten is None and self._failure is None:
            return
        parts = [f"run {self.path or 'in memory'}:"]
        if self._lost:
            parts.append(
                f"{len(self._lost)} logged step(s) could not be stored (the first, step "
                f"{self._lost[0]}: {self._failure});"
            )
        elif self._failure:
            parts.append(f"a write failed ({self._failure});")
        if unwritten is not None:
            parts.append(f"the closing meta ({', '.join(unwritten)}) was not written;")
        parts.append(f"the data stored before is kept ({self._kept()})")
        if self.path is not None:
            parts.append(f"and loads with Run.load('{self.path}')")
        warnings.warn(" ".join(parts), GradprobeWarning, stacklevel=3)
