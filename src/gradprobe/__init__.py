"""gradprobe: see why a deep network's gradients vanish or explode, and fix it.

>>> import gradprobe as gp
>>> gp.init.names()[:3]
['zeros', 'constant', 'normal']

Public names are loaded lazily so ``import gradprobe`` stays cheap and a part
that is not needed (plots, theory) is never imported.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import GradprobeError

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "init": ("gradprobe.init", None),
    "theory": ("gradprobe.theory", None),
    "experiments": ("gradprobe.experiments", None),
    "check": ("gradprobe.probe", "check"),
    "watch": ("gradprobe.probe", "watch"),
    "guard": ("gradprobe.probe", "guard"),
    "diagnose": ("gradprobe.diagnose", None),  # a callable module: gp.diagnose(run)
    "Finding": ("gradprobe.diagnose", "Finding"),
    "Run": ("gradprobe.run", "Run"),
}

__all__ = ["GradprobeError", "__version__", *_LAZY]


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
