"""``recover(source, destination)``: the readable part of a damaged run, as a new run.

Rows are read table by table in rowid order. Where a read fails (a damaged page, the end
of a truncated file), the next readable rowid is found by seeking past the damage, with
doubling then halving strides, so the rows on the pages after it are kept too.
"""

from __future__ import annotations

import sqlite3

from ..errors import RunStoreError
from ._reader import Run, open_reader
from ._schema import APPLICATION_ID, TABLES, foreign_reason, layout_problems, resolve
from ._writer import RunWriter

_LOW = -(2**63)
_HIGH = 2**63 - 1


def _first_from(con, table: str, start: int) -> int | None:
    """The first rowid >= start, or None; raises where the rows from there meet damage (a
    few are read: a damaged page may still answer the seek to its first cell)."""
    rows = con.execute(
        f"SELECT rowid FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 8", (start,)
    ).fetchall()
    return rows[0][0] if rows else None


def _next_readable(con, table: str, after: int | None) -> int | None:
    """The smallest rowid past the damage that follows ``after`` (None: nothing readable)."""
    base = _LOW if after is None else after
    step, good = 1, None
    while base + step <= _HIGH:
        try:
            good = _first_from(con, table, base + step)
            break
        except sqlite3.DatabaseError:
            step *= 2
    if good is None:
        return None
    lo, hi = base + step // 2, base + step  # the damage ends somewhere in (lo, hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            found = _first_from(con, table, mid)
            hi, good = mid, found if found is not None else good
        except sqlite3.DatabaseError:
            lo = mid
    return good


def _salvage(con, table: str, columns: tuple[str, ...]) -> tuple[list[tuple], int]:
    """The readable rows of ``table`` and the number of damaged stretches skipped."""
    rows: list[tuple] = []
    skipped, last, floor = 0, None, None
    cols = ", ".join(columns)
    while True:
        where, args = ("", ()) if last is None else ("WHERE rowid > ?", (last,))
        before: int | None = last
        try:
            sql = f"SELECT rowid, {cols} FROM {table} {where} ORDER BY rowid"
            for row in con.execute(sql, args):
                last = row[0]
                rows.append(row[1:])
            return rows, skipped
        except sqlite3.DatabaseError:
            if last != before or floor is None:  # a new damaged stretch after good rows
                skipped += 1
                floor = last
            # (no progress: the rows from ``floor`` on failed too; search past it)
            nxt = _next_readable(con, table, floor)
            if nxt is None:
                return rows, skipped
            floor = nxt
            last = nxt - 1


def _copy(writer: RunWriter, table: str, columns: tuple[str, ...], rows: list[tuple]) -> str:
    """Insert ``rows`` in one transaction; '' or why the table could not be copied."""
    sql = (
        f"INSERT OR REPLACE INTO {table}({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    with writer._mutex:
        con = writer._w
        con.execute("BEGIN")
        try:
            con.executemany(sql, rows)
        except sqlite3.IntegrityError as err:  # a required column is missing from the source
            con.execute("ROLLBACK")
            return str(err)
        con.execute("COMMIT")
    return ""


def recover(source, destination, overwrite: bool = False) -> Run:
    """Copy every readable row of the run at ``source`` (truncated, damaged pages, an older
    layout) into a new run at ``destination``; returns it, loaded.

    ``meta["recovery"]`` says, per table, how many rows were copied and how many damaged
    stretches were skipped (or that the table was missing)."""
    src = resolve(source)
    if not src.is_file():
        raise RunStoreError(f"no run file at {src}; pass the path of the damaged run")
    try:
        con = open_reader(src, lenient=True)
        (app_id,) = con.execute("PRAGMA application_id").fetchone()
        layout = layout_problems(con)
    except sqlite3.Error as err:
        raise RunStoreError(
            f"{src} cannot be recovered: its first page, which lists its tables, is "
            f"damaged ({err}); nothing in it can be read"
        ) from None
    if app_id != APPLICATION_ID:
        reason = foreign_reason(src, con)
        con.close()
        raise RunStoreError(reason)
    writer = RunWriter.create(destination, overwrite=overwrite)
    report: dict[str, dict | str] = {}
    try:
        for table, columns in TABLES.items():
            if layout.get(table, ()) is None:
                report[table] = "missing"
                continue
            have = tuple(c for c in columns if c not in (layout.get(table) or ()))
            rows, skipped = _salvage(con, table, have)
            if table == "meta":
                rows = [r for r in rows if r[0] not in ("format", "version")]
            failed = _copy(writer, table, have, rows)
            report[table] = (
                f"not copied: {failed}"
                if failed
                else {"copied": len(rows), "damaged_stretches_skipped": skipped}
            )
        writer.update_meta({"recovered_from": str(src), "recovery": report})
    except sqlite3.Error as err:
        writer.close()
        raise RunStoreError(f"could not write the recovered run {writer.path}: {err}") from None
    finally:
        con.close()
    writer.close()
    return Run.load(resolve(destination))


__all__ = ["recover"]
