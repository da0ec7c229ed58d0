"""``matrix_chain``: ``x = x @ W`` fifty times (the demo's chapter 1) as a seeded experiment.

Wraps :func:`gradprobe.experiments.matrix_chain.matrix_chain`; one unit per seed. Headline:
where each scale of ``W`` hits 0 / Inf / NaN in float32, and the final std over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .._config import positive
from .._runner import Experiment, register
from .._train import spread
from ..matrix_chain import matrix_chain


@dataclass(frozen=True)
class Config:
    depth: int = 50
    width: int = 100
    seeds: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        positive(self, "depth", "width", "seeds")


PRESETS = {"quick": {"seeds": 3}, "full": {"seeds": 10}}


def units(cfg: Config) -> list[dict]:
    return [{"seed": cfg.seed + i} for i in range(cfg.seeds)]


def run_unit(cfg: Config, unit: dict, folder: Path) -> dict:
    chains = matrix_chain(depth=cfg.depth, width=cfg.width, seed=unit["seed"])
    return {
        name: {
            "first_zero": r.first_zero,
            "first_inf": r.first_inf,
            "first_nan": r.first_nan,
            "std": [float(s) if math.isfinite(s) else None for s in r.std.tolist()],
        }
        for name, r in chains.items()
    }


def summarize(cfg: Config, results: list[tuple[dict, dict]]) -> dict:
    out = {}
    for name in results[0][1]:
        per_seed = [numbers[name] for _, numbers in results]
        finals = [s["std"][-1] for s in per_seed]
        out[name] = {
            "first_zero": [s["first_zero"] for s in per_seed],
            "first_inf": [s["first_inf"] for s in per_seed],
            "first_nan": [s["first_nan"] for s in per_seed],
            "log10_final_std": spread(
                [math.log10(f) if f is not None and f > 0 else None for f in finals]
            ),
        }
    return out


register(
    Experiment(
        "matrix_chain",
        "x = x @ W fifty times: 0.01 underflows to 0, N(0,1) overflows, sqrt(1/n) survives",
        Config,
        PRESETS,
        units,
        run_unit,
        summarize,
    )
)
