"""Diagnosis in plain words: rules over a Run -> findings with evidence and a remedy.

>>> result = gp.check(model, x)                                   # doctest: +SKIP
>>> for f in gp.diagnose(result.run): print(f)                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import types

from ..errors import InvalidInputError
from ..run import Run
from .context import Context
from .finding import SEVERITY_ORDER, Finding, Remedy
from .rules import RULES
from .thresholds import Thresholds


def diagnose(
    run: Run, thresholds: Thresholds | None = None, rules: list[str] | None = None
) -> list[Finding]:
    """Run every registered rule (or those named) over ``run`` (a Run or a run file's path);
    most severe first."""
    if isinstance(run, (str, os.PathLike)):
        run = Run.load(run)
    if not isinstance(run, Run):
        raise InvalidInputError(
            f"diagnose needs a gradprobe Run (from gp.check, gp.watch or Run.load), got "
            f"{type(run).__name__}"
        )
    ctx = Context(run, thresholds or Thresholds())
    findings: list[Finding] = []
    for name in rules if rules is not None else RULES.names():
        findings.extend(RULES.get(name)(ctx))
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.step or 0))


__all__ = [
    "RULES",
    "Context",
    "Finding",
    "Remedy",
    "Thresholds",
    "diagnose",
]


class _CallableModule(types.ModuleType):
    """``gp.diagnose(run)`` and ``gp.diagnose.Finding`` both work: importing the subpackage
    binds ``gradprobe.diagnose`` to this module, so the module is callable."""

    def __call__(self, *args, **kwargs) -> list[Finding]:
        return diagnose(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
