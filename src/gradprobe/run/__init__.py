"""The run store: what a probe recorded, one SQLite file per run (schema in docs/PROBE.md).

``Run`` reads (``Run.load(path)`` opens a stored run read-only); ``RunWriter`` writes, owned
by the probe that records the run (``probe.run`` is one, and reads like any Run). Without
a path the run lives in memory with the same interface.

A probe writes one transaction per logged step (WAL mode, ``synchronous=NORMAL``), so a
process killed at any point leaves every committed step readable, and another process
can read the run while it is written. One writer per run: it holds an exclusive ``flock``
on ``<file>.lock`` until it closes; closing checkpoints the WAL into the ``.sqlite`` file
(complete on its own, ready to copy) and removes the lock file. ``recover`` copies the
readable part of a damaged run into a new file.

>>> run = Run.load("runs/mlp.sqlite")                         # doctest: +SKIP
>>> run.to_pandas().query("quantity == 'activation' and stat == 'std'")   # doctest: +SKIP
"""

from ._reader import Run
from ._recover import recover
from ._schema import (
    APPLICATION_ID,
    FILENAME,
    FORMAT,
    SCHEMA,
    TABLES,
    VERSION,
    Event,
    Histogram,
    Layer,
)
from ._writer import RunWriter

__all__ = [
    "APPLICATION_ID",
    "FILENAME",
    "FORMAT",
    "SCHEMA",
    "TABLES",
    "VERSION",
    "Event",
    "Histogram",
    "Layer",
    "Run",
    "RunWriter",
    "recover",
]
