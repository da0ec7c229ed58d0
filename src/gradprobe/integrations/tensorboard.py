"""Write a :class:`~gradprobe.Run` as TensorBoard event files.

>>> from gradprobe.integrations.tensorboard import to_tensorboard     # doctest: +SKIP
>>> to_tensorboard("runs/mlp.sqlite", "tb/mlp")                         # doctest: +SKIP

Scalars are ``gradprobe/{quantity}/{stat}/{layer}``; NaN is written as NaN. A histogram
becomes TensorBoard's bucket form: its regular bins (exact zeros put back into the bin that
holds 0), and, only when they are not empty, a bucket for values below the range (right
limit ``lo``), above it (``DBL_MAX``), for -Inf (``-DBL_MAX``) and +Inf (``inf``). NaN has
no place on a number line: it is the scalar ``gradprobe/{quantity}/hist_nan/{layer}``,
next to ``hist_zero``, ``hist_posinf``, ``hist_neginf``, ``hist_below`` and ``hist_above``.
``sum`` and ``sum_squares`` of a histogram are bucket-centre estimates (finite values).
First-non-finite events and findings are written as text.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from ..run import Histogram, Run
from ._common import finding_counts, load_run, records, require

DBL_MAX = sys.float_info.max
PREFIX = "gradprobe/"


def buckets(h: Histogram) -> tuple[list[float], list[float], float, float]:
    """``(bucket_limits, bucket_counts, min, max)`` of ``h`` in TensorBoard's convention:
    bucket ``i`` holds ``(limit[i-1], limit[i]]``."""
    edges = h.edges
    counts = h.counts.astype(np.float64).copy()
    if h.zero:
        i = int(np.searchsorted(edges, 0.0, side="left")) - 1  # the bin (e_i, e_{i+1}] with 0
        counts[min(max(i, 0), len(counts) - 1)] += h.zero
    limits: list[float] = []
    values: list[float] = []
    for limit, count in ((-DBL_MAX, h.neginf), (h.lo, h.below)):
        if count:
            limits.append(limit)
            values.append(float(count))
    limits += [float(e) for e in edges[1:]]
    values += counts.tolist()
    for limit, count in ((DBL_MAX, h.above), (math.inf, h.posinf)):
        if count:
            limits.append(limit)
            values.append(float(count))
    lo = -math.inf if h.neginf else h.lo
    hi = math.inf if h.posinf else h.hi
    return limits, values, lo, hi


def _add_histogram(writer, tag: str, h: Histogram, step: int, walltime=None) -> None:
    limits, counts, lo, hi = buckets(h)
    centres = (h.edges[1:] + h.edges[:-1]) / 2
    finite = h.counts.astype(np.float64)
    writer.add_histogram_raw(
        tag,
        min=lo,
        max=hi,
        num=float(sum(counts)),
        sum=float((finite * centres).sum()),
        sum_squares=float((finite * centres**2).sum()),
        bucket_limits=limits,
        bucket_counts=counts,
        global_step=step,
        walltime=walltime,
    )


def to_tensorboard(
    run: Run | str | Path,
    logdir: str | Path | None = None,
    *,
    writer=None,
    histograms: bool = True,
    findings="auto",
    prefix: str = PREFIX,
) -> Path | None:
    """Write ``run`` (a Run or a stored run's path) as event files in ``logdir``.

    ``writer``: an open ``torch.utils.tensorboard.SummaryWriter`` to write through instead
    (e.g. Lightning's ``TensorBoardLogger.experiment``); it is flushed, not closed.
    ``findings``: ``"auto"`` runs ``gp.diagnose(run)``; a list writes those; None, none.
    Returns the folder written (None when ``writer`` was given).
    """
    require("tensorboard", "tensorboard")
    run = load_run(run)
    if writer is None:
        if logdir is None:
            raise InvalidInputError("to_tensorboard needs logdir (a folder) or writer=")
        logdir = Path(logdir).expanduser()
        if logdir.exists() and not logdir.is_dir():
            raise InvalidInputError(f"{logdir} is a file; pass a folder for the event files")
        from torch.utils.tensorboard import SummaryWriter

        own = SummaryWriter(log_dir=str(logdir))
    else:
        own = None
    w = own or writer
    try:
        last = 0
        for rec in records(run, histograms=histograms, prefix=prefix):
            last = rec.step
            for tag, value in rec.scalars.items():
                w.add_scalar(tag, value, rec.step, new_style=False)
            for tag, h in rec.histograms.items():
                _add_histogram(w, tag, h, rec.step)
        events = run.events()
        if events:
            text = "\n".join(f"- step {e.step}, {e.phase}: {e.detail}" for e in events)
            w.add_text(prefix + "first_nonfinite", text, events[0].step)
        if findings == "auto":
            from ..diagnose import diagnose

            findings = diagnose(run)
        if findings is not None:
            write_findings(w, findings, last, prefix)
        w.flush()
    finally:
        if own is not None:
            own.close()
    return None if writer is not None else Path(logdir)  # type: ignore[arg-type]


def write_findings(writer, findings, step: int, prefix: str = PREFIX) -> None:
    """Findings as text (one line each) and their count per severity as scalars."""
    lines = [f"- {f}" for f in findings] or ["- no findings: gradients look healthy"]
    writer.add_text(prefix + "findings", "\n".join(lines), step)
    for tag, value in finding_counts(findings, prefix).items():
        writer.add_scalar(tag, value, step, new_style=False)
