"""What an experiment is (:class:`Experiment`) and the registry that holds them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._registry import Registry
from ..errors import InvalidInputError

UnitFn = Callable[[Any, dict, Path], dict]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: a frozen ``config`` dataclass and its ``presets``; ``units(cfg)``
    lists the grid points (JSON-able dicts, each with its ``seed``); ``run_unit(cfg, unit,
    folder)`` computes one of them, writing its Run files into ``folder``, and returns its
    numbers; ``summarize(cfg, [(unit, numbers)])`` makes the headline numbers."""

    name: str
    summary: str  # one line, for ``gradprobe run --list``
    config: type
    presets: Mapping[str, Mapping[str, Any]]
    units: Callable[[Any], list[dict]]
    run_unit: UnitFn
    summarize: Callable[[Any, list[tuple[dict, dict]]], dict]


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register(experiment: Experiment) -> Experiment:
    for preset in ("quick", "full"):
        if preset not in experiment.presets:
            raise InvalidInputError(f"experiment {experiment.name!r} needs a {preset!r} preset")
    return EXPERIMENTS.register(experiment.name, experiment)


def get(name: str) -> Experiment:
    """The experiment ``name``; the built-in ones are registered on first use."""
    from . import catalog  # noqa: F401  (also in a fresh worker process)

    return EXPERIMENTS.get(name)
