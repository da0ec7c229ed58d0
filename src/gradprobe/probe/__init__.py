"""Recording what flows through a model: ``watch`` while it trains, ``record_step`` for one
watched forward + backward (the probe's half of ``gp.check``)."""

from .guard import Guard, guard
from .record import Recorded, record_step
from .schedules import every, log_spaced
from .watch import EARLY_STEPS, Probe, watch

__all__ = [
    "EARLY_STEPS",
    "Guard",
    "Probe",
    "Recorded",
    "every",
    "guard",
    "log_spaced",
    "record_step",
    "watch",
]
