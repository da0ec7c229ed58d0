"""Recording what flows through a model: ``watch`` while it trains, ``record_step`` for one
watched forward + backward (the probe's half of ``gp.check``)."""

from .guard import Guard, guard
from .record import Recorded, record_step
from .schedules import DEFAULT, dense_then, every, log_spaced
from .watch import EARLY_STEPS, Probe, watch

__all__ = [
    "DEFAULT",
    "EARLY_STEPS",
    "Guard",
    "Probe",
    "Recorded",
    "dense_then",
    "every",
    "guard",
    "log_spaced",
    "record_step",
    "watch",
]
