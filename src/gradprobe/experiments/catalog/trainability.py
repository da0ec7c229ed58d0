"""``trainability``: Schoenholz et al. (2017), "Deep information propagation", fig. 5 at
small scale.

tanh MLPs with ``W ~ N(0, σ_w²/n_in)`` and ``b ~ N(0, σ_b²)``, σ_b² = 0.05, on a depth ×
σ_w² grid, each trained for a few hundred SGD steps. Mean-field theory says a net trains
when it is shallower than a few correlation depths: depth ≲ 6·ξ_c, where
ξ_c = −1/ln χ_c(c*) diverges on the critical line χ₁ = 1 (σ_w² ≈ 1.76 at σ_b² = 0.05) and
is short on both sides (ordered: small σ_w², chaotic: large). The result is a test
accuracy heat map with the theory's 6·ξ_c line, from :func:`gradprobe.theory.xi_c`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ... import init as gpinit
from ... import theory
from ...errors import InvalidInputError
from .. import data
from .._config import positive
from .._runner import Experiment, register
from .._train import evaluate, finite, mlp, spread, train_watched


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    depths: tuple[int, ...] = (5, 10, 20, 30, 45, 60, 90)
    sigma_w2: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
    sigma_b2: float = 0.05
    width: int = 256
    steps: int = 1000
    steps_per_layer: int = 0  # > 0: a depth-L cell trains max(steps, L · this) steps
    batch: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    seeds: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        positive(self, "depths", "sigma_w2", "width", "steps", "batch", "lr", "seeds")
        if self.steps_per_layer < 0:
            raise InvalidInputError(f"steps_per_layer must be >= 0, got {self.steps_per_layer}")


PRESETS = {
    "quick": {"depths": (10, 30), "sigma_w2": (0.5, 1.5, 4.0), "width": 64, "steps": 300},
    "full": {},
    # issue 18: the edge near criticality (σ_w² ≈ 1.76), deep nets trained longer
    "edge": {
        "depths": (30, 45, 60, 90),
        "sigma_w2": (1.0, 1.25, 1.5, 1.76, 2.0, 2.5, 3.0),
        "width": 128,
        "steps": 500,
        "steps_per_layer": 20,
    },
}


def steps_for(cfg: Config, depth: int) -> int:
    return max(cfg.steps, depth * cfg.steps_per_layer)


def units(cfg: Config) -> list[dict]:
    return [
        {"depth": d, "sigma_w2": s, "seed": cfg.seed + k}
        for k in range(cfg.seeds)
        for d in cfg.depths
        for s in cfg.sigma_w2
    ]


def build(n_in: int, n_out: int, depth: int, width: int, sw2: float, sb2: float, gen):
    model = mlp(n_in, width, depth, n_out, "tanh")
    # kaiming_normal with gain √σ_w²: std = √σ_w² / √n_in, every layer
    gpinit.apply(model, "kaiming_normal", nonlinearity=math.sqrt(sw2), generator=gen)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.bias.normal_(0.0, math.sqrt(sb2), generator=gen)
    return model


def run_unit(cfg: Config, unit: dict, folder: Path) -> dict:
    split = data.load(cfg.dataset, seed=unit["seed"], flatten=True)
    gen = torch.Generator().manual_seed(unit["seed"])
    classes = int(split.y_train.max()) + 1
    model = build(
        split.x_train.shape[1],
        classes,
        unit["depth"],
        cfg.width,
        unit["sigma_w2"],
        cfg.sigma_b2,
        gen,
    )
    steps = steps_for(cfg, unit["depth"])
    curve, _run = train_watched(
        model,
        split.x_train,
        split.y_train,
        folder / "run.sqlite",
        every=max(1, steps // 5),
        steps=steps,
        batch=cfg.batch,
        lr=cfg.lr,
        momentum=cfg.momentum,
        seed=unit["seed"],
        points=5,
    )
    _loss, err = evaluate(model, split.x_test, split.y_test)
    return {
        "test_accuracy": 100.0 - err,
        "final_loss": finite(curve["final_loss"]),
        "steps": steps,
    }


def summarize(cfg: Config, results: list[tuple[dict, dict]]) -> dict:
    acc = [
        [
            spread(
                [r["test_accuracy"] for u, r in results if u["depth"] == d and u["sigma_w2"] == s]
            )["mean"]
            for s in cfg.sigma_w2
        ]
        for d in cfg.depths
    ]
    xi = [theory.xi_c("tanh", s, cfg.sigma_b2) for s in cfg.sigma_w2]
    # agreement: trained (accuracy > halfway from chance to 100) iff depth < 6·ξ_c
    chance = 100.0 / 10
    agree = [
        [(a > (chance + 100) / 2) == (d < 6 * x) for a, x in zip(row, xi, strict=True)]
        for row, d in zip(acc, cfg.depths, strict=True)
    ]
    cells = sum(len(r) for r in agree)
    return {
        "depths": list(cfg.depths),
        "sigma_w2": list(cfg.sigma_w2),
        "test_accuracy": acc,
        "steps": [steps_for(cfg, d) for d in cfg.depths],
        "six_xi_c": [6 * x if math.isfinite(x) else None for x in xi],
        "critical_sigma_w2": theory.critical_sigma_w2("tanh", cfg.sigma_b2),
        "agreement": sum(sum(r) for r in agree) / cells,
    }


register(
    Experiment(
        "trainability",
        "Schoenholz et al. 2017: depth x sigma_w^2 accuracy map for tanh with the 6 xi_c line",
        Config,
        PRESETS,
        units,
        run_unit,
        summarize,
    )
)
