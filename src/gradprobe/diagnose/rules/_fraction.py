"""The shared shape of the per-layer fraction rules (saturated units, dead units).

A fraction of few units is a coin's count: 5 of 8 units dead (62%) over a batch happens by
chance in a healthy layer whose units are each dead with probability 1/2 (the bound at
init, see ``Thresholds``) one time in three. With ``chance``, a layer crosses only where its
count is also beyond chance: P(Binomial(n, chance) ≥ k) < ``SIGNIFICANCE`` (1%), n the
units of the layer, so a verdict does not flip on one unit of a small layer (8 units need
8 dead, 16 need 14, 64 need 42, 256 or more the fraction line itself). Every unit of a
layer counted is always beyond chance: no gradient passes it at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import binom

from ..context import Context
from ..finding import Finding, Kind, Remedy

SIGNIFICANCE = 0.01  # a healthy layer crosses by chance in one check of a hundred at most


def units(ctx: Context, layers: list[str]) -> np.ndarray:
    """array[layer, step]: the elements per example of each layer's output, read from its
    gradient: (‖g‖ / rms(g))² is the element count of the batch's tensor, divided by the
    examples (``activation/dead_samples``); NaN where a row is missing or the gradient is 0."""
    quantities = set(ctx.run.quantities())
    need = {("grad_output", "norm"), ("grad_output", "rms"), ("activation", "dead_samples")}
    if not need <= quantities:
        return np.full((len(layers), len(ctx.steps)), np.nan)
    norm = ctx.matrix("grad_output", "norm", layers)
    rms = ctx.matrix("grad_output", "rms", layers)
    samples = ctx.matrix("activation", "dead_samples", layers)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.rint((norm / rms) ** 2 / samples)
    return np.where(np.isfinite(n) & (n >= 1), n, np.nan)


def _beyond_chance(frac: np.ndarray, n: np.ndarray, chance: float) -> np.ndarray:
    """Whether k = frac·n of n units is more than a Binomial(n, chance) gives in 99% of
    draws (True where n is unknown: the fraction line alone decides)."""
    k = np.rint(frac * np.where(np.isfinite(n), n, 0))
    with np.errstate(invalid="ignore"):
        tail = binom.sf(k - 1, np.where(np.isfinite(n), n, 1), chance)  # P(X ≥ k)
    every = np.isfinite(n) & (k >= n)  # all units: nothing passes, whatever chance says
    return ~np.isfinite(n) | (tail < SIGNIFICANCE) | every


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
    chance: float | None = None,
) -> list[Finding]:
    """One finding per layer whose ``activation/<stat>`` fraction exceeds ``threshold`` at
    some logged step; reported at the first such step. With ``min_samples``, a step counts
    only where ``activation/<stat>_samples`` (the examples the fraction was taken over) is
    at least that (a run without the count is judged on every step). With ``chance`` (the
    largest probability a healthy unit has of counting), a count within chance is not a
    finding (module docstring)."""
    if not layers:
        return []
    values = ctx.matrix("activation", stat, layers)
    samples = np.full_like(values, np.nan)
    if min_samples is not None and ("activation", f"{stat}_samples") in set(ctx.run.quantities()):
        samples = ctx.matrix("activation", f"{stat}_samples", layers)
    judged = ~(samples < min_samples) if min_samples is not None else np.isfinite(samples) | True
    sizes = units(ctx, layers) if chance is not None else np.full_like(values, np.nan)
    if chance is not None:
        judged = judged & _beyond_chance(np.nan_to_num(values), sizes, chance)
    findings = []
    for name, row, ok, count, n in zip(layers, values, judged, samples, sizes, strict=True):
        over = np.nonzero((row > threshold) & ok)[0]
        if not over.size:
            continue
        frac = float(row[over[0]])
        examples = {} if np.isnan(count[over[0]]) else {"examples": int(count[over[0]])}
        if np.isfinite(n[over[0]]):
            examples["units"] = int(n[over[0]])
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
