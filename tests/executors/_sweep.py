"""A test experiment for the executors: tiny watched units (a real run.sqlite each) that
log every start, and that can fail, or kill their own worker process, mid-unit."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gradprobe.experiments import Experiment
from gradprobe.probe import watch

NAME = "executor_sweep"


@dataclass(frozen=True)
class Config:
    seeds: int = 4
    seed: int = 0
    log: str = ""  # each unit appends its seed here when it starts
    kill: int = -1  # this unit kills its worker process mid-unit, once (flag file: log.killed)
    fail: int = -1  # this unit raises mid-unit
    driver: int = 0  # the test's own process id: a unit never kills that one


def units(cfg: Config) -> list[dict]:
    return [{"seed": cfg.seed + s} for s in range(cfg.seeds)]


def run_unit(cfg: Config, unit: dict, folder: Path) -> dict:
    if cfg.log:
        with open(cfg.log, "a") as f:
            f.write(f"{unit['seed']}\n")
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(16, 4)
    with watch(model, path=folder / "run.sqlite", every=1) as probe:
        for _ in range(3):
            loss = model(x).pow(2).mean()
            loss.backward()
            loss = loss.detach()
            probe.step()
    (folder / "half-written").write_text("a unit that stops here leaves this behind")
    if unit["seed"] == cfg.fail:
        raise ValueError(f"unit {unit['seed']} failed on purpose")
    flag = Path(cfg.log + ".killed")
    worker = cfg.log and os.getpid() != cfg.driver  # never the test's own process
    if worker and unit["seed"] == cfg.kill and not flag.exists():
        flag.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-unit
    (folder / "half-written").unlink()
    return {"loss": loss.item(), "weight": model[0].weight.sum().item()}


def summarize(cfg: Config, done: list[tuple[dict, dict]]) -> dict:
    return {"mean_loss": sum(n["loss"] for _, n in done) / len(done)}


EXPERIMENT = Experiment(
    NAME, "executor test sweep", Config, {"quick": {}, "full": {}}, units, run_unit, summarize
)
