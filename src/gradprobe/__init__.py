"""gradprobe: see why a deep network's gradients vanish or explode, and fix it.

>>> import gradprobe as gp
>>> gp.init.names()[:3]
['zeros', 'constant', 'normal']

Public names are loaded lazily so ``import gradprobe`` stays cheap and a part that is not
needed (plots, theory) is never imported; type checkers see the real names through the
``TYPE_CHECKING`` imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import GradprobeError

if TYPE_CHECKING:  # pragma: no cover
    from . import experiments, init, theory
    from .check import CheckResult, check
    from .diagnose import Finding, diagnose
    from .fix import fix
    from .probe import guard, watch
    from .run import Run

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "init": ("gradprobe.init", None),
    "theory": ("gradprobe.theory", None),
    "experiments": ("gradprobe.experiments", None),
    "check": ("gradprobe.check", "check"),
    "CheckResult": ("gradprobe.check", "CheckResult"),
    "watch": ("gradprobe.probe", "watch"),
    "guard": ("gradprobe.probe", "guard"),
    "diagnose": ("gradprobe.diagnose", None),  # a callable module: gp.diagnose(run)
    "Finding": ("gradprobe.diagnose", "Finding"),
    "fix": ("gradprobe.fix", None),  # a callable module: gp.fix(model, data)
    "Run": ("gradprobe.run", "Run"),
}

__all__ = [  # noqa: RUF022  (grouped as DESIGN.md lists them)
    "GradprobeError",
    "__version__",
    "init",
    "theory",
    "experiments",
    "check",
    "CheckResult",
    "watch",
    "guard",
    "diagnose",
    "Finding",
    "fix",
    "Run",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gradprobe' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
