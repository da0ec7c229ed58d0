"""Reading per-layer numbers back from a recorded Run (shared by the experiments)."""

from __future__ import annotations

import math

from torch import nn

from ...run import Run


def per_layer(run: Run, quantity: str, stat: str, names: list[str], step: int = 0) -> list:
    """``stat`` of ``quantity`` for each of ``names`` at ``step`` (None when missing/NaN)."""
    layers, steps, m = run.matrix(quantity, stat)
    col = steps.index(step)
    index = {n: i for i, n in enumerate(layers)}
    out = []
    for n in names:
        v = float(m[index[n], col]) if n in index else math.nan
        out.append(v if math.isfinite(v) else None)
    return out


def linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b
