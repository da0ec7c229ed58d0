"""A tiny broken model for gp.fix through an executor (as tests/fix/test_fix.py's)."""

from __future__ import annotations

import torch
from torch import nn


def broken() -> nn.Sequential:
    """A 6-layer sigmoid stack: stuck at the constant prediction's loss under SGD."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(6):
        layers += [nn.Linear(2 if i == 0 else 16, 16), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(16, 2))


def circle_data(n=384, d=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    return x, (x.pow(2).sum(1) > d - 0.6).long()


class SGD:
    """A picklable optimizer factory."""

    def __init__(self, lr):
        self.lr = lr

    def __call__(self, params):
        return torch.optim.SGD(params, lr=self.lr)
