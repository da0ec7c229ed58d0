"""Recording what flows through a model: ``watch`` while it trains, ``check`` at init."""

from .check import CheckResult, check
from .guard import Guard, guard
from .schedules import every, log_spaced
from .watch import Probe, watch

__all__ = ["CheckResult", "Guard", "Probe", "check", "every", "guard", "log_spaced", "watch"]
