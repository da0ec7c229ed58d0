"""Small models and data for the fix tests (all train in well under a second)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class Exp(nn.Module):
    """An exponential activation module (Keras' ``exponential``)."""

    def forward(self, x):
        return torch.exp(x)


def mlp(act=nn.ReLU, depth=3, width=16, n_in=4, n_out=2, std=None, seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else width, width), act()]
    model = nn.Sequential(*layers, nn.Linear(width, n_out))
    if std is not None:
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
    return model


def circle_data(n=384, d=2, seed=0):
    """A radial two-class problem: no linear model solves it, a small MLP does."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = (x.pow(2).sum(1) > d - 0.6).long()
    return x, y


@pytest.fixture
def data():
    return circle_data()


def sgd(lr):
    """A picklable optimizer factory (workers > 1 ship it to other processes)."""
    return _SGD(lr)


class _SGD:
    def __init__(self, lr):
        self.lr = lr

    def __call__(self, params):
        return torch.optim.SGD(params, lr=self.lr)
