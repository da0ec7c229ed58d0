"""Argument checks shared by the theory modules (one place, so no module imports another
for a private helper)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidInputError

#: Largest variance (σ_w², σ_b², q0) accepted. The maps are evaluated up to
#: q = σ_w² q0 + σ_b² ≤ 1e80, far inside float64, where the quadrature stays resolved.
MAX_VARIANCE = 1e40


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    return float(value)


def check_variances(sigma_w2, sigma_b2) -> tuple[float, float]:
    """(σ_w², σ_b²) as floats: finite, in [0, MAX_VARIANCE]."""
    out = []
    for name, value in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
        v = _number(value, name)
        if not (math.isfinite(v) and 0 <= v <= MAX_VARIANCE):
            raise InvalidInputError(
                f"{name} must be a finite variance in [0, {MAX_VARIANCE:g}], got {v}; sigma_w2 is"
                " fan_in times the weight variance (e.g. 2.0 for He init), sigma_b2 the bias"
                " variance"
            )
        out.append(v)
    return out[0], out[1]


def check_depth(depth) -> int:
    """A layer count: an integer >= 1."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise InvalidInputError(f"depth must be an integer >= 1 (number of layers), got {depth!r}")
    return int(depth)


def check_q0(q0, name: str = "q0", limit: float = MAX_VARIANCE) -> float:
    """An input's second moment (1/n₀)‖x‖²: finite, in [0, ``limit``]."""
    v = _number(q0, name)
    if not (math.isfinite(v) and 0 <= v <= limit):
        bound = f"[0, {limit:g}]" if math.isfinite(limit) else ">= 0"
        raise InvalidInputError(
            f"{name} must be a finite second moment {bound} (mean of x² over input units), got {v}"
        )
    return v


def check_array(values, name: str, low: float, high: float, what: str) -> np.ndarray:
    """``values`` as a float array, every entry in [low, high] (NaN refused)."""
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{name} must be a number or an array of numbers, got {values!r}"
        ) from None
    if not ((a >= low) & (a <= high)).all():
        bad = a[~((a >= low) & (a <= high))].ravel()[0]
        raise InvalidInputError(f"{name} must be {what} in [{low:g}, {high:g}], got {bad}")
    return a
