"""Which steps are logged: a schedule is a ``step -> bool`` function (the cockpit habit).

>>> every(10)(20), every(10)(21)
(True, False)
>>> [s for s in range(41) if log_spaced(per_decade=5)(s)]
[0, 1, 2, 3, 4, 7, 10, 16, 26, 40]
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


def every(n: int) -> Every:
    """Log every ``n``-th step: ``every(1)`` logs all steps."""
    return Every(_positive_int(n, "every"))


def log_spaced(per_decade: int = 10) -> LogSpaced:
    """Log-spaced steps: dense at the start of training, sparse later."""
    return LogSpaced(_positive_int(per_decade, "per_decade"))


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
