"""``he2015``: He et al. (2015), "Delving deep into rectifiers", figs. 2–3, as deep ReLU MLPs.

Plain ReLU nets of 22 and 30 layers, Xavier (``N(0, 1/n)``-like: ``xavier_normal`` with
gain 1, their "Xavier") vs He (``N(0, 2/n_in)``: ``kaiming_normal``), SGD with momentum.
Each ReLU keeps half the second moment, so under Xavier the signal and the gradient
shrink by 2^(−L/2) in std: the paper's 22-layer Xavier net starts to learn later, the
30-layer one does not learn at all, while He's converge. Their nets were convolutional
on ImageNet; ours are MLPs on scikit-learn's digits (see docs/REPRODUCTIONS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ... import init as gpinit
from ...errors import InvalidInputError
from .. import data
from .._config import positive
from .._runner import Experiment, register
from .._train import evaluate, finite, mlp, spread, train_watched
from ._probe import linear_names, per_layer

INITS = {
    "xavier": ("xavier_normal", "linear"),  # gain 1: Var = 2/(n_in+n_out) = 1/n when square
    "he": ("kaiming_normal", "relu"),  # Var = 2/n_in
}


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    depths: tuple[int, ...] = (22, 30)
    inits: tuple[str, ...] = ("xavier", "he")
    width: int = 256
    steps: int = 3000
    batch: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    start_loss: float = 2.0  # "has started learning": windowed loss below this (ln 10 = 2.30)
    seeds: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        positive(self, "depths", "width", "steps", "batch", "lr", "seeds")
        bad = [i for i in self.inits if i not in INITS]
        if bad:
            raise InvalidInputError(f"unknown init(s) {bad}; choose from {list(INITS)}")


PRESETS = {"quick": {"width": 64, "steps": 300, "seeds": 1}, "full": {}}


def units(cfg: Config) -> list[dict]:
    return [
        {"depth": d, "init": i, "seed": cfg.seed + s}
        for s in range(cfg.seeds)
        for d in cfg.depths
        for i in cfg.inits
    ]


def run_unit(cfg: Config, unit: dict, folder: Path) -> dict:
    split = data.load(cfg.dataset, seed=unit["seed"], flatten=True)
    gen = torch.Generator().manual_seed(unit["seed"])
    classes = int(split.y_train.max()) + 1
    model = mlp(split.x_train.shape[1], cfg.width, unit["depth"], classes, "relu")
    scheme, nonlin = INITS[unit["init"]]
    gpinit.apply(model, scheme, nonlinearity=nonlin, generator=gen)
    every = max(1, cfg.steps // 10)
    curve, run = train_watched(
        model,
        split.x_train,
        split.y_train,
        folder / "run.sqlite",
        every=every,
        steps=cfg.steps,
        batch=cfg.batch,
        lr=cfg.lr,
        momentum=cfg.momentum,
        seed=unit["seed"],
    )
    names = linear_names(model)[:-1]
    grad0 = per_layer(run, "grad_output", "std", names, step=0)
    started = next(
        (
            s
            for s, v in zip(curve["curve_steps"], curve["curve_loss"], strict=True)
            if v < cfg.start_loss
        ),
        None,
    )
    test_loss, test_err = evaluate(model, split.x_test, split.y_test)
    return {
        **curve,
        "init_backprop_std": grad0,
        "started_at": started,
        "test_loss": finite(test_loss),
        "test_error": test_err,
    }


def summarize(cfg: Config, results: list[tuple[dict, dict]]) -> dict:
    out: dict = {}
    for d in cfg.depths:
        out[str(d)] = {}
        for i in cfg.inits:
            rows = [r for u, r in results if u["depth"] == d and u["init"] == i]
            g = rows[0]["init_backprop_std"]
            out[str(d)][i] = {
                "final_loss": spread([finite(r["final_loss"]) for r in rows]),
                "diverged": sum(finite(r["final_loss"]) is None for r in rows),
                "test_error": spread([r["test_error"] for r in rows]),
                "started_at": [r["started_at"] for r in rows],
                "init_backprop_first_over_last": g[0] / g[-1] if g[-1] else None,
                "init_log2_ratio_per_layer": math.log2(g[0] / g[-1]) / (len(g) - 1)
                if g[0] and g[-1]
                else None,
                "curve_steps": rows[0]["curve_steps"],
                "curve_loss_mean": [
                    sum(v) / len(v) for v in zip(*(r["curve_loss"] for r in rows), strict=True)
                ],
            }
    return out


register(
    Experiment(
        "he2015",
        "He et al. 2015: 22- and 30-layer ReLU nets, Xavier vs He init; He converges",
        Config,
        PRESETS,
        units,
        run_unit,
        summarize,
    )
)
