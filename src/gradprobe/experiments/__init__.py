"""The classic experiments as registered, seeded, resumable runs (docs/REPRODUCTIONS.md).

>>> import gradprobe as gp
>>> gp.experiments.names()[:2]
['matrix_chain', 'init_gradients']
>>> result = gp.experiments.run("matrix_chain", out="runs/", seeds=2)   # doctest: +SKIP
>>> result.folder, result.numbers["small"]["first_zero"]                # doctest: +SKIP

``data`` holds the offline data sets (Shapeset-3x2, scikit-learn's digits, MNIST-1D,
synthetic); ``matrix_chain`` is also chapter 1 of ``gradprobe demo``.
"""

from __future__ import annotations

from . import catalog as _catalog  # noqa: F401  (registers every experiment)
from ._runner import (
    EXPERIMENTS,
    Experiment,
    Plan,
    Result,
    config,
    load,
    names,
    plan,
    run,
    run_unit,
)

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "Plan",
    "Result",
    "config",
    "load",
    "names",
    "plan",
    "run",
    "run_unit",
]
