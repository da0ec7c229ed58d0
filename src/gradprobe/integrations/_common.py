"""What every adapter shares: the optional-package check, and a Run read as logging records.

A stored run becomes, per step, scalars named ``{quantity}/{stat}/{layer}`` (NaN kept as
NaN, never dropped); the whole model's per-step scalars have short names, on every step:
``loss``, ``lr`` (``lr/group{i}`` when the param groups differ) and ``grad_norm``. When the
run has histograms: one histogram per layer and quantity plus its exact counts of zeros,
NaN, +Inf and -Inf and of values outside its range as scalars named
``{quantity}/hist_{what}/{layer}``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..errors import GradprobeError
from ..run import Histogram, Run

HIST_QUANTITIES = ("activation", "grad_output")
HIST_COUNTS = ("zero", "nan", "posinf", "neginf", "below", "above")
TRAINING = ("loss", "lr", "grad_norm")  # per-step scalars of the whole model ("(model)")


def learning_rates(optimizer) -> list | None:
    """``lr`` of every param group of an optimizer (None without one)."""
    groups = getattr(optimizer, "param_groups", None)
    return [g["lr"] for g in groups if "lr" in g] if groups else None


class MissingExtraError(GradprobeError, ImportError):
    """An adapter was used without the optional package it needs."""


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise a GradprobeError that names the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"this needs the '{package or module}' package ({err}); install it with "
            f"`pip install 'gradprobe[{extra}]'`"
        ) from None


@dataclass
class StepRecords:
    """Everything a run recorded at one logged step, named for a logger."""

    step: int
    scalars: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)


def load_run(run: Run | str | Path) -> Run:
    from ..errors import InvalidInputError

    if isinstance(run, Run):
        return run
    if isinstance(run, str) or hasattr(run, "__fspath__"):
        return Run.load(run)
    raise InvalidInputError(
        f"expected a gradprobe Run or the path of a stored run, got {type(run).__name__}"
    )


def scalar_name(quantity: str, stat: str, layer: str) -> str:
    """A row's name for a logger: ``loss``, ``lr``, ``lr/group1``, ``grad_norm`` for the whole
    model's per-step scalars, ``{quantity}/{stat}/{layer}`` for everything else."""
    if layer == "(model)" and quantity in TRAINING:
        return quantity if stat in ("value", "global") else f"{quantity}/{stat}"
    return f"{quantity}/{stat}/{layer}"


def records(run: Run, histograms: bool = True, prefix: str = "") -> Iterator[StepRecords]:
    """The run, one :class:`StepRecords` per step (logged steps, and the steps that have only
    the loss, lr and gradient norm), in step order."""
    by_step: dict[int, StepRecords] = {s: StepRecords(s) for s in run.steps}
    for step, name, quantity, stat, value in run.rows():
        rec = by_step.setdefault(step, StepRecords(step))
        rec.scalars[prefix + scalar_name(quantity, stat, name)] = value
    if histograms and run.meta.get("histograms"):
        layers = [la.name for la in run.layers(role=None) if la.role != "param"]
        for step, rec in by_step.items():
            for name in layers:
                for quantity in HIST_QUANTITIES:
                    h = run.histogram(name, quantity, step)
                    if h is None:
                        continue
                    rec.histograms[f"{prefix}{quantity}/hist/{name}"] = h
                    for what in HIST_COUNTS:
                        tag = f"{prefix}{quantity}/hist_{what}/{name}"
                        rec.scalars[tag] = float(getattr(h, what))
    yield from (by_step[s] for s in sorted(by_step))


def finding_lines(findings) -> list[str]:
    return [str(f) for f in findings]


def finding_counts(findings, prefix: str = "gradprobe/") -> dict[str, float]:
    counts = {f"{prefix}findings_{s}": 0.0 for s in ("error", "warning", "info")}
    for f in findings:
        counts[f"{prefix}findings_{f.severity}"] += 1
    return counts


class ProbeOwner:
    """What the framework callbacks share: ``gp.watch``'s options, starting the probe on the
    model, and closing it into a diagnosis. A mixin beside the framework's callback class."""

    def _init_probe(self, every, histograms, path, log_run, distributed, watch_options) -> None:
        self.every, self.histograms, self.path = every, histograms, path
        self.log_run, self.distributed = log_run, distributed
        self.watch_options = watch_options
        self.probe: Any = None  # a gradprobe Probe once training starts
        self.run: Any = None
        self.findings: list = []

    def _start_probe(self, model) -> None:
        from ..probe import watch

        self.probe = watch(
            model, every=self.every, histograms=self.histograms, path=self.path,
            distributed=self.distributed, **self.watch_options,
        )  # fmt: skip
        self.run = self.probe.run

    def _use_scaler(self, scaler) -> None:
        """A framework's GradScaler (mixed precision): the probe divides the gradients it
        records by its scale, as ``watch(scaler=)`` does."""
        if self.probe is None or scaler is None:
            return
        if all(callable(getattr(scaler, a, None)) for a in ("get_scale", "is_enabled")):
            self.probe._scaler = scaler
            self.run.set_meta("grad_scaler", type(scaler).__name__)

    def _note_optimizer(self, optimizer) -> None:
        """``run.meta["optimizer"]`` (what ``watch(optimizer=)`` records: its class and
        hyper-parameters, read by the diagnosis), once, when the framework shows it (through
        accelerate's wrapper, its ``.optimizer``)."""
        if self.run is None or optimizer is None or "optimizer" in self.run.meta:
            return
        inner = getattr(optimizer, "optimizer", None)  # accelerate's AcceleratedOptimizer
        if isinstance(inner, torch.optim.Optimizer):
            optimizer = inner
        if isinstance(optimizer, torch.optim.Optimizer):
            from ..probe._training import optimizer_meta

            self.run.set_meta("optimizer", optimizer_meta(optimizer))

    def _finish_probe(self) -> bool:
        """Close the probe and diagnose its run; False when no probe was started."""
        if self.probe is None:
            return False
        from ..diagnose import diagnose

        self.probe.close()
        self.findings = diagnose(self.run)
        return True
