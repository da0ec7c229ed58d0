"""Recording what flows through a model: ``watch`` while it trains, ``check`` at init."""

from .check import CheckResult, check
from .schedules import every, log_spaced
from .watch import Probe, watch

__all__ = ["CheckResult", "Probe", "check", "every", "log_spaced", "watch"]
