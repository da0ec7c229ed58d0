"""The classic experiments as registered, seeded, resumable runs (docs/EXPERIMENTS.md,
docs/REPRODUCTIONS.md).

>>> import gradprobe as gp
>>> gp.experiments.names()[:2]
['matrix_chain', 'init_gradients']
>>> result = gp.experiments.run("matrix_chain", out="runs/", seeds=2)   # doctest: +SKIP
>>> result.folder, result.numbers["small"]["first_zero"]                # doctest: +SKIP

``data`` holds the offline data sets (Shapeset-3x2, scikit-learn's digits, MNIST-1D,
synthetic); ``matrix_chain`` is also chapter 1 of ``gradprobe demo``. The runner and the
experiments are imported on first use, so ``from gradprobe.experiments import data``
stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_RUNNER_NAMES = (
    "EXPERIMENTS", "Done", "Executor", "Experiment", "ExperimentRun", "Job", "Plan", "Result",
    "compute", "config", "load", "names", "plan", "register", "run", "run_unit",
)  # fmt: skip

__all__ = list(_RUNNER_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _RUNNER_NAMES:
        raise AttributeError(f"module 'gradprobe.experiments' has no attribute {name!r}")
    importlib.import_module(".catalog", __name__)  # registers every experiment
    value = getattr(importlib.import_module("._runner", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "data", "matrix_chain"])
