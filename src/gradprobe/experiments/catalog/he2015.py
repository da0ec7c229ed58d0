"""``he2015``: He et al. (2015), "Delving deep into rectifiers", figs. 2–3, as deep ReLU MLPs.

Plain ReLU nets of 22 and 30 layers, Xavier (``N(0, 1/n)``-like: ``xavier_normal`` with
gain 1, their "Xavier") vs He (``N(0, 2/n_in)``: ``kaiming_normal``), SGD with momentum.
Each ReLU keeps half the second moment, so under Xavier the signal and the gradient
shrink by 2^(−L/2) in std: the paper's 22-layer Xavier net starts to learn later, the
30-layer one does not learn at all, while He's converge. Their nets were convolutional
on ImageNet (the 30-layer one: 27 conv and 3 fc layers; SGD, lr 1e-2, momentum 0.9,
mini-batch 128); ours are MLPs, and with ``archs=("conv",)`` small conv nets of the same
shape (``depth − 3`` 3×3 conv layers of ``channels`` on the 8×8 image, then 3 fc layers),
on scikit-learn's digits (see docs/REPRODUCTIONS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ... import init as gpinit
from ...errors import InvalidInputError
from .. import data
from .._config import positive
from .._runner import Experiment, register
from .._train import evaluate, finite, mlp, spread, train_watched
from ._probe import per_layer

ARCHS = ("mlp", "conv")
INITS = {
    "xavier": ("xavier_normal", "linear"),  # gain 1: Var = 2/(n_in+n_out) = 1/n when square
    "he": ("kaiming_normal", "relu"),  # Var = 2/n_in
}


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    depths: tuple[int, ...] = (22, 30)
    inits: tuple[str, ...] = ("xavier", "he")
    archs: tuple[str, ...] = ("mlp",)
    width: int = 256  # MLP hidden width; the conv net's two hidden fc layers
    channels: int = 16  # conv net only
    steps: int = 3000
    batch: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    start_loss: float = 2.0  # "has started learning": windowed loss below this (ln 10 = 2.30)
    seeds: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        positive(self, "depths", "width", "channels", "steps", "batch", "lr", "seeds")
        bad = [i for i in self.inits if i not in INITS]
        if bad:
            raise InvalidInputError(f"unknown init(s) {bad}; choose from {list(INITS)}")
        bad = [a for a in self.archs if a not in ARCHS]
        if bad:
            raise InvalidInputError(f"unknown arch(s) {bad}; choose from {list(ARCHS)}")
        if "conv" in self.archs and min(self.depths) < 4:
            raise InvalidInputError("a conv net needs depth >= 4 (depth − 3 conv + 3 fc layers)")


PRESETS = {
    "quick": {"width": 64, "steps": 300, "seeds": 1},
    "full": {},
    # fig. 3 at the paper's learning rate and mini-batch, MLP and conv net side by side
    "paper30": {"depths": (30,), "archs": ("mlp", "conv"), "batch": 128, "steps": 2000},
}


def units(cfg: Config) -> list[dict]:
    # the MLP's units keep their keys without "arch" (folders of earlier runs resume)
    return [
        {"depth": d, "init": i, "seed": cfg.seed + s} | ({} if a == "mlp" else {"arch": a})
        for s in range(cfg.seeds)
        for a in cfg.archs
        for d in cfg.depths
        for i in cfg.inits
    ]


def convnet(depth: int, channels: int, width: int, n_out: int, side: int) -> nn.Sequential:
    """``depth − 3`` conv 3×3 (padding 1) + ReLU, then fc–ReLU–fc–ReLU–fc: ``depth`` weight
    layers, as He et al.'s 30-layer model (27 conv + 3 fc), without pooling (8×8 input)."""
    layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 4):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
    layers += [nn.Flatten(), nn.Linear(channels * side * side, width), nn.ReLU()]
    layers += [nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_out)]
    return nn.Sequential(*layers)


def weight_layer_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def run_unit(cfg: Config, unit: dict, folder: Path) -> dict:
    conv = unit.get("arch") == "conv"
    split = data.load(cfg.dataset, seed=unit["seed"], flatten=not conv)
    gen = torch.Generator().manual_seed(unit["seed"])
    classes = int(split.y_train.max()) + 1
    if conv:
        if split.x_train.dim() != 4 or split.x_train.shape[1] != 1:
            raise InvalidInputError(f"the conv net wants 1-channel images, not {cfg.dataset!r}")
        side = split.x_train.shape[-1]
        model = convnet(unit["depth"], cfg.channels, cfg.width, classes, side)
    else:
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
    names = weight_layer_names(model)[:-1]
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
    for a in cfg.archs:
        # the MLP's numbers stay at out[depth][init] (as before archs existed)
        dest = out if a == "mlp" else out.setdefault(a, {})
        for d in cfg.depths:
            dest[str(d)] = _depth(cfg, results, a, d)
    return out


def _depth(cfg: Config, results: list[tuple[dict, dict]], arch: str, d: int) -> dict:
    out: dict = {}
    for i in cfg.inits:
        rows = [
            r
            for u, r in results
            if u["depth"] == d and u["init"] == i and u.get("arch", "mlp") == arch
        ]
        g = rows[0]["init_backprop_std"]
        out[i] = {
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
