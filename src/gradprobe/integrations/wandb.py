"""Log a :class:`~gradprobe.Run` to Weights & Biases.

>>> from gradprobe.integrations.wandb import to_wandb                   # doctest: +SKIP
>>> to_wandb("runs/mlp.sqlite", project="my-project")                   # doctest: +SKIP

The same records as the TensorBoard export: scalars ``gradprobe/{quantity}/{stat}/{layer}``
(NaN logged as NaN), histograms as ``wandb.Histogram`` (exact zeros put back into the bin
that holds 0) with their NaN, ±Inf, zero and out-of-range counts as scalars
``gradprobe/{quantity}/hist_{what}/{layer}``; the first-non-finite events and the findings
go to the run's summary. Into a run of your own (``wandb_run=``) the records are logged
against their own step axis ``gradprobe/step`` (``define_metric``), so they never fight
the run's step counter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..run import Run
from ._common import finding_counts, load_run, records, require

PREFIX = "gradprobe/"


def _histogram(wandb, h):
    counts = h.counts.astype(np.int64).copy()
    if h.zero:
        i = int(np.searchsorted(h.edges, 0.0, side="left")) - 1
        counts[min(max(i, 0), len(counts) - 1)] += h.zero
    return wandb.Histogram(np_histogram=(counts, h.edges), num_bins=len(counts))


def to_wandb(
    run: Run | str | Path,
    wandb_run=None,
    *,
    histograms: bool = True,
    findings="auto",
    prefix: str = PREFIX,
    **init_kwargs,
):
    """Log ``run`` (a Run or a stored run's path) to W&B; returns the W&B run.

    ``wandb_run``: an active run to log into (left open); without it a new run is made with
    ``wandb.init(**init_kwargs)`` and finished. ``findings``: ``"auto"`` runs
    ``gp.diagnose(run)``; a list logs those; None, none.
    """
    wandb = require("wandb", "wandb")
    run = load_run(run)
    own = wandb_run is None
    wb = wandb.init(**init_kwargs) if own else wandb_run
    try:
        if not own:
            wb.define_metric(prefix + "step")
            wb.define_metric(prefix + "*", step_metric=prefix + "step")
        last = 0
        for rec in records(run, histograms=histograms, prefix=prefix):
            last = rec.step
            data: dict = dict(rec.scalars)
            for tag, h in rec.histograms.items():
                data[tag] = _histogram(wandb, h)
            if own:
                wb.log(data, step=rec.step)
            else:
                data[prefix + "step"] = rec.step
                wb.log(data)
        events = run.events()
        if events:
            wb.summary[prefix + "first_nonfinite"] = [
                f"step {e.step}, {e.phase}: {e.detail}" for e in events
            ]
        if findings == "auto":
            from ..diagnose import diagnose

            findings = diagnose(run)
        if findings is not None:
            log_findings(wb, findings, last, prefix)
    finally:
        if own:
            wb.finish()
    return wb


def log_findings(wb, findings, step: int, prefix: str = PREFIX) -> None:
    """Findings into the summary (one line each) and their count per severity."""
    wb.summary[prefix + "findings"] = [str(f) for f in findings]
    for tag, value in finding_counts(findings, prefix).items():
        wb.summary[tag] = value
