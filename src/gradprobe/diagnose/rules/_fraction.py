"""The shared shape of the per-layer fraction rules (saturated units, dead units)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..context import Context
from ..finding import Finding, Kind, Remedy


def fraction_findings(
    ctx: Context,
    layers: list[str],
    stat: str,
    kind: Kind,
    threshold: float,
    error_threshold: float,
    remedy: Remedy,
    message: Callable[[str, float], str],
    min_samples: int | None = None,
) -> list[Finding]:
    """One finding per layer whose ``activation/<stat>`` fraction exceeds ``threshold`` at
    some logged step; reported at the first such step. With ``min_samples``, a step counts
    only where ``activation/<stat>_samples`` (the examples the fraction was taken over) is
    at least that (a run without the count is judged on every step)."""
    if not layers:
        return []
    values = ctx.matrix("activation", stat, layers)
    samples = np.full_like(values, np.nan)
    if min_samples is not None and ("activation", f"{stat}_samples") in set(ctx.run.quantities()):
        samples = ctx.matrix("activation", f"{stat}_samples", layers)
    judged = ~(samples < min_samples) if min_samples is not None else np.isfinite(samples) | True
    findings = []
    for name, row, ok, count in zip(layers, values, judged, samples, strict=True):
        over = np.nonzero((row > threshold) & ok)[0]
        if not over.size:
            continue
        frac = float(row[over[0]])
        examples = {} if np.isnan(count[over[0]]) else {"examples": int(count[over[0]])}
        findings.append(
            Finding(
                kind=kind,
                layer=name,
                severity="error" if frac > error_threshold else "warning",
                step=ctx.steps[int(over[0])],
                evidence={
                    f"{stat}_fraction": frac,
                    "threshold": threshold,
                    "max_fraction": float(np.nanmax(np.where(ok, row, np.nan))),
                    "steps_affected": int(over.size),
                    **examples,
                },
                remedy=remedy,
                message=message(name, frac),
            )
        )
    return findings
