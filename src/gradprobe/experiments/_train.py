"""Small shared pieces of the experiments: MLPs, a seeded SGD loop, evaluation, seeds.

Kept deliberately plain (no DataLoader, no AMP): every experiment is a few hundred to a
few thousand SGD steps of an MLP on a CPU, and reproducibility comes from one
``torch.Generator`` per run for the mini-batch order.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError
from ..probe import watch
from ..run import Run

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softsign": nn.Softsign,
    "relu": nn.ReLU,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise InvalidInputError(f"unknown activation {name!r}; choose from {list(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class Block(nn.Module):
    """A residual block ``x + fc2(act(fc1(x)))``: the identity path has no activation on it
    (He et al. 2016, "Identity mappings in deep residual networks"), MLP form."""

    def __init__(self, width: int, act: str, batchnorm: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.bn = nn.BatchNorm1d(width) if batchnorm else nn.Identity()
        self.act = activation(act)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.bn(self.fc1(x))))


def mlp(
    n_in: int,
    width: int,
    hidden: int,
    n_out: int,
    act: str,
    *,
    batchnorm: bool = False,
    residual: bool = False,
) -> nn.Sequential:
    """``hidden`` hidden layers of ``width`` units (Linear [-> BatchNorm] -> act), a linear head.

    ``residual``: an input layer, then ``(hidden - 1) // 2`` residual blocks of two layers.
    """
    layers: list[nn.Module] = [nn.Linear(n_in, width)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(width))
    layers.append(activation(act))
    if residual:
        layers += [Block(width, act, batchnorm) for _ in range((hidden - 1) // 2)]
    else:
        for _ in range(hidden - 1):
            layers.append(nn.Linear(width, width))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(activation(act))
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, error rate in %) on ``x, y``, in eval mode."""
    was = model.training
    model.eval()
    try:
        out = model(x)
        loss = nn.functional.cross_entropy(out, y).item()
        err = (out.argmax(1) != y).double().mean().item() * 100
    finally:
        model.train(was)
    return loss, err


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    momentum: float = 0.0,
    clip: float | None = None,
    points: int = 20,
    after_step: Callable[[int], None] | None = None,
) -> dict:
    """Plain SGD on cross-entropy; mini-batches drawn from a seeded permutation per epoch.

    Returns ``curve_steps``/``curve_loss``: the mean training loss over ``points`` equal
    windows (NaN stays NaN: a diverged run shows as such), and ``final_loss`` (last window).
    """
    n = len(x)
    if steps < 1 or batch < 1:
        raise InvalidInputError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    if batch > n:  # else every step would silently use the whole (smaller) split
        raise InvalidInputError(
            f"batch={batch} is more than the {n} training examples; pass --set batch={n} or less"
        )
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    order = torch.randperm(n, generator=gen)
    pos = 0
    window = max(1, steps // points)
    losses = torch.empty(steps)
    model.train()
    for step in range(steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch]
        pos += batch
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses[step] = loss.detach()
        if after_step is not None:
            after_step(step)
    means = [losses[i : i + window].mean().item() for i in range(0, steps, window)]
    return {
        "curve_steps": [min(i + window, steps) for i in range(0, steps, window)],
        "curve_loss": means,
        "final_loss": means[-1],
    }


def split_validation(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    """(x_train, y_train, x_val, y_val): a seeded hold-out of ``fraction`` of the data."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    k = max(1, int(len(x) * fraction))
    return x[perm[k:]], y[perm[k:]], x[perm[:k]], y[perm[:k]]


def finite(value: float) -> float | None:
    """``value`` or None when NaN/Inf (JSON has no NaN)."""
    return value if math.isfinite(value) else None


def spread(values: list[float]) -> dict:
    """Mean, std and range over seeds (ignoring None)."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def train_watched(model: nn.Module, x, y, path, *, every: int, **train_kwargs) -> tuple[dict, Run]:
    """:func:`train` under ``gp.watch(every=...)``, stored at ``path``; returns the curve and
    the Run. Update ratios and the every-step first-non-finite check are off: they would
    roughly double the step time of these small nets, and diverged runs show as NaN losses."""
    with watch(model, every=every, path=path, updates=False, first_nonfinite=False) as probe:
        curve = train(model, x, y, after_step=lambda _s: probe.step(), **train_kwargs)
    return curve, probe.run
