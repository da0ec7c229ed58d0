"""``init_gradients``: one forward/backward of an MLP on real digits, four inits side by side.

The seed lesson's table: per-layer mean and std of the weight gradients, and the std of
the back-propagated gradient ∂L/∂(layer output), for N(0,1), N(0,1)·0.01, Xavier
(N(0, 2/(n_in+n_out)), gain 1: Glorot & Bengio 2010) and Kaiming (N(0, 2/n_in): He et
al. 2015) before ReLU. Each layer multiplies the back-propagated std by about
``σ_w·√n·√(1/2)`` (the ReLU keeps half), so N(0,1) explodes, ·0.01 vanishes, Xavier
shrinks by ~0.7 per layer and Kaiming stays flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ... import init as gpinit
from ...probe import watch
from .. import data
from .._config import positive
from .._runner import Experiment, register
from .._train import mlp, spread
from ._probe import linear_names, per_layer, ratio

INITS = {
    "normal": ("normal", {"std": 1.0}, "N(0,1)"),
    "small": ("normal", {"std": 0.01}, "N(0,1)·0.01"),
    "xavier": ("xavier_normal", {"nonlinearity": "linear"}, "Xavier N(0, 2/(n_in+n_out))"),
    "kaiming": ("kaiming_normal", {"nonlinearity": "relu"}, "Kaiming N(0, 2/n_in)"),
}


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    width: int = 256
    hidden: int = 8
    activation: str = "relu"
    batch: int = 256
    inits: tuple[str, ...] = tuple(INITS)
    seeds: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        positive(self, "width", "hidden", "batch", "seeds")
        unknown = [i for i in self.inits if i not in INITS]
        if unknown:
            from ...errors import InvalidInputError

            raise InvalidInputError(f"unknown init(s) {unknown}; choose from {list(INITS)}")


PRESETS = {"quick": {}, "full": {"seeds": 10, "width": 512}}


def units(cfg: Config) -> list[dict]:
    return [{"init": i, "seed": cfg.seed + s} for s in range(cfg.seeds) for i in cfg.inits]


def run_unit(cfg: Config, unit: dict, folder: Path) -> dict:
    split = data.load(cfg.dataset, seed=unit["seed"], flatten=True)
    gen = torch.Generator().manual_seed(unit["seed"])
    idx = torch.randperm(len(split.x_train), generator=gen)[: cfg.batch]
    x, y = split.x_train[idx], split.y_train[idx]
    model = mlp(x.shape[1], cfg.width, cfg.hidden, int(split.y_train.max()) + 1, cfg.activation)
    scheme, options, _label = INITS[unit["init"]]
    options = dict(options)
    nonlin = options.pop("nonlinearity", "auto")
    gpinit.apply(model, scheme, nonlinearity=nonlin, generator=gen, **options)
    with watch(model, path=folder / "run.sqlite", updates=False) as probe:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        probe.step()
    names = linear_names(model)
    weights = [f"{n}.weight" for n in names]
    grads = [dict(model.named_parameters())[w].grad.double() for w in weights]
    return {
        "layers": names,
        "loss": loss.item(),
        "weight_grad_mean": [g.mean().item() for g in grads],
        "weight_grad_std": per_layer(probe.run, "param_grad", "std", weights),
        "backprop_std": per_layer(probe.run, "grad_output", "std", names),
        "activation_std": per_layer(probe.run, "activation", "std", names),
    }


def summarize(cfg: Config, results: list[tuple[dict, dict]]) -> dict:
    """Per init: first / last *hidden* layer ratio of the back-propagated std (over seeds).

    The head is left out of the ratio: its ∂L/∂output is softmax − onehot, set by the loss.
    """
    out = {}
    for init in cfg.inits:
        rows = [n for u, n in results if u["init"] == init]
        out[init] = {
            "label": INITS[init][2],
            "backprop_first_over_last": spread(
                [ratio(r["backprop_std"][0], r["backprop_std"][-2]) for r in rows]
            ),
            "weight_grad_first_over_last": spread(
                [ratio(r["weight_grad_std"][0], r["weight_grad_std"][-2]) for r in rows]
            ),
            "layers": rows[0]["layers"],
            "weight_grad_mean": rows[0]["weight_grad_mean"],
            "weight_grad_std": rows[0]["weight_grad_std"],
            "backprop_std": rows[0]["backprop_std"],
            "loss": spread([r["loss"] for r in rows]),
        }
    return out


register(
    Experiment(
        "init_gradients",
        "MLP on digits, one backward: per-layer gradients for N(0,1), x0.01, Xavier, Kaiming",
        Config,
        PRESETS,
        units,
        run_unit,
        summarize,
    )
)
