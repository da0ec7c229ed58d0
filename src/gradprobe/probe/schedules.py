"""Which steps are logged: a schedule is a ``step -> bool`` function (the cockpit habit).

>>> every(10)(20), every(10)(21)
(True, False)
>>> [s for s in range(41) if log_spaced(per_decade=5)(s)]
[0, 1, 2, 3, 4, 7, 10, 16, 26, 40]
>>> [s for s in range(45) if dense_then(first=3, every=10)(s)]
[0, 1, 2, 10, 20, 30, 40]

``watch()``'s default is :data:`DEFAULT`, ``dense_then(first=20, every=10)``: the training
rules judge the first steps one by one (e.g. ``large_updates``), and one step in ten after
them keeps the probe's cost near that of plain training (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidInputError

Schedule = Callable[[int], bool]


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(
            f"{what} must be a positive integer, got {value!r}; "
            f"use {what}=1 to log every step or {what}=10 to log one step in ten"
        )
    return value


@dataclass(frozen=True)
class Every:
    """Log step ``s`` when ``s % n == 0`` (step 0 is always logged)."""

    n: int

    def __call__(self, step: int) -> bool:
        return step % self.n == 0


@dataclass(frozen=True)
class LogSpaced:
    """Log about ``per_decade`` steps per decade: step 0, and ``s`` when it is the first
    integer at or above a grid point ``10**(j/k)``: ``floor(k log10 s) > floor(k log10(s-1))``."""

    per_decade: int

    def __call__(self, step: int) -> bool:
        if step <= 1:
            return step >= 0
        k = self.per_decade
        return math.floor(k * math.log10(step)) > math.floor(k * math.log10(step - 1))


@dataclass(frozen=True)
class DenseThen:
    """Log every step ``s < first``, then step ``s`` when ``s % every == 0``."""

    first: int
    every: int

    def __call__(self, step: int) -> bool:
        return step < self.first or step % self.every == 0


def every(n: int) -> Every:
    """Log every ``n``-th step: ``every(1)`` logs all steps."""
    return Every(_positive_int(n, "every"))


def log_spaced(per_decade: int = 10) -> LogSpaced:
    """Log-spaced steps: dense at the start of training, sparse later."""
    return LogSpaced(_positive_int(per_decade, "per_decade"))


def dense_then(first: int = 20, every: int = 10) -> DenseThen:
    """Every step of the first ``first`` steps, then every ``every``-th step (the default)."""
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise InvalidInputError(
            f"first must be a number of steps >= 0, got {first!r}; e.g. dense_then(first=20)"
        )
    return DenseThen(first, _positive_int(every, "every"))


DEFAULT = DenseThen(20, 10)  # watch()'s and the framework callbacks' default schedule


def as_schedule(value: int | Schedule) -> Schedule:
    """An int ``n`` means :func:`every` ``(n)``; a callable ``step -> bool`` is used as given
    (tried on step 0 here, so a wrong one fails at once with a clear message)."""
    if callable(value):
        try:
            bool(value(0))
        except Exception as err:
            raise InvalidInputError(
                f"every= must be a positive integer or a function step -> bool (e.g. "
                f"log_spaced()), but calling it with step 0 raised {type(err).__name__}: {err}"
            ) from err
        return value
    return every(value)  # type: ignore[arg-type]
