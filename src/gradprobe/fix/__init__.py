"""Remedies applied to copies of a model and proven there.

``gp.fix(model, (x, y))`` trains the model as given and the remedies its findings call for,
each on a copy with the same data, seed and steps, and ranks them by what they achieve
(:mod:`gradprobe.fix.search`; remedies in :mod:`gradprobe.fix.catalog`, one file each).
:func:`try_remedies` re-checks copies re-initialised with each scheme at initialisation
only (:mod:`gradprobe.fix.ranking`). The user's model is never modified.

>>> result = gp.fix(model, (x, y), steps=300)                     # doctest: +SKIP
>>> print(result); model = result.best.apply(model)               # doctest: +SKIP
"""

from __future__ import annotations

import sys
import types

from .catalog import REMEDIES, Remedy
from .edit import insert_norm, set_forget_bias, set_norm_first, swap_activations
from .ranking import CANDIDATES, Candidate, Ranking, score, try_remedies
from .recipe import Change, OptimizerSpec, Recipe
from .result import FixResult, Trial
from .search import fix
from .symptoms import Symptom, loss_symptoms

__all__ = [
    "CANDIDATES",
    "REMEDIES",
    "Candidate",
    "Change",
    "FixResult",
    "OptimizerSpec",
    "Ranking",
    "Recipe",
    "Remedy",
    "Symptom",
    "Trial",
    "fix",
    "insert_norm",
    "loss_symptoms",
    "score",
    "set_forget_bias",
    "set_norm_first",
    "swap_activations",
    "try_remedies",
]


class _CallableModule(types.ModuleType):
    """``gp.fix(model, data)`` and ``gradprobe.fix.try_remedies`` both work: importing the
    subpackage binds ``gradprobe.fix`` to this module, so the module is callable."""

    def __call__(self, *args, **kwargs) -> FixResult:
        return fix(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
