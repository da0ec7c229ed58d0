"""Diagnosis in plain words: rules over a Run -> findings with evidence and a remedy.

>>> result = gp.check(model, x)                                   # doctest: +SKIP
>>> for f in gp.diagnose(result.run): print(f)                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..run import Run
from .context import Context
from .finding import SEVERITY_ORDER, Cause, Finding, Remedy
from .link import link
from .rules import RULES
from .thresholds import Thresholds


def diagnose(
    run: Run | str | os.PathLike,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    rules: list[str] | str | None = None,
) -> list[Finding]:
    """Run every registered rule (or those named) over ``run`` (a Run or a run file's path);
    most severe first. ``thresholds``: a :class:`Thresholds` or a dict of its fields."""
    if isinstance(run, (str, os.PathLike)):
        run = Run.load(Path(run))
    if not isinstance(run, Run):
        raise InvalidInputError(
            f"diagnose needs a gradprobe Run (from gp.check, gp.watch or Run.load), got "
            f"{type(run).__name__}"
        )
    if thresholds is None:
        thresholds = Thresholds()
    elif isinstance(thresholds, Mapping):
        thresholds = Thresholds(**thresholds)
    elif not isinstance(thresholds, Thresholds):
        raise InvalidInputError(
            f"thresholds must be a gp.diagnose.Thresholds (or a dict of its fields), got "
            f"{type(thresholds).__name__}"
        )
    if isinstance(rules, str):
        rules = [rules]
    try:
        names = RULES.names() if rules is None else list(rules)
    except TypeError:
        raise InvalidInputError(
            f"rules must be a list of rule names ({', '.join(RULES.names())}), got {rules!r}"
        ) from None
    ctx = Context(run, thresholds)
    findings: list[Finding] = []
    for name in names:
        findings.extend(RULES.get(name)(ctx))
    findings = link(ctx, findings)  # symptoms in the loss named with their causes
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.step or 0))


__all__ = [
    "RULES",
    "Cause",
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
