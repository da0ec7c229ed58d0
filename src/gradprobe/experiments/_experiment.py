"""What an experiment is (:class:`Experiment`) and the registry that holds them."""

from __future__ import annotations

import importlib
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


def load_builtin() -> None:
    """Register the built-in experiments (``catalog/``), once; also in a fresh worker process.

    The catalog depends on this registry, not the other way round: it is loaded by name,
    as a plugin, so the registry has no import of it (and no import cycle)."""
    importlib.import_module(f"{__package__}.catalog")


def get(name: str) -> Experiment:
    """The experiment ``name``; the built-in ones are registered on first use."""
    load_builtin()
    return EXPERIMENTS.get(name)


def names(pattern: str | None = None) -> list[str]:
    """Registered experiment names (glob ``pattern`` to filter)."""
    load_builtin()
    return EXPERIMENTS.names(pattern)
