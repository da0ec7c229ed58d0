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
) -> list[Finding]:
    """One finding per layer whose ``activation/<stat>`` fraction exceeds ``threshold`` at
    some logged step; reported at the first such step."""
    if not layers:
        return []
    values = ctx.matrix("activation", stat, layers)
    findings = []
    for name, row in zip(layers, values, strict=True):
        over = np.nonzero(row > threshold)[0]
        if not over.size:
            continue
        frac = float(row[over[0]])
        findings.append(
            Finding(
                kind=kind,
                layer=name,
                severity="error" if frac > error_threshold else "warning",
                step=ctx.steps[int(over[0])],
                evidence={
                    f"{stat}_fraction": frac,
                    "threshold": threshold,
                    "max_fraction": float(np.nanmax(row)),
                    "steps_affected": int(over.size),
                },
                remedy=remedy,
                message=message(name, frac),
            )
        )
    return findings
