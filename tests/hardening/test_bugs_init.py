"""Regression tests (issue 14, init): a raw ``nn.Parameter`` used as ``x @ W``."""

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeWarning


class RawMatmul(nn.Module):
    """A 256 → 64 layer written as ``x @ W`` with W stored (in, out) = (256, 64)."""

    def __init__(self, n_in=256, n_out=64):
        super().__init__()
        self.W = nn.Parameter(torch.empty(n_in, n_out))
        self.V = nn.Parameter(torch.empty(n_out, 8))  # used as h @ V as well

    def forward(self, x):
        return torch.relu(x @ self.W) @ self.V


class RawLinear(nn.Module):
    """The same layer through F.linear, stored torch's way (out, in) = (64, 256)."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.empty(64, 256))

    def forward(self, x):
        return nn.functional.linear(x, self.W)


def test_raw_parameter_used_as_x_at_w_gets_its_fan_in_from_use():
    model = RawMatmul()
    gp.init.apply(
        model,
        "lecun_normal",
        nonlinearity="linear",
        example_input=torch.randn(4, 256),
        generator=torch.Generator().manual_seed(0),
    )
    # LeCun: std = 1/√fan_in = 1/√256 = 0.0625 (torch's convention would read 1/√64 = 0.125)
    assert model.W.std().item() == pytest.approx(0.0625, rel=0.03)
    assert model.V.std().item() == pytest.approx(1 / 64**0.5, rel=0.05)


def test_raw_parameter_through_f_linear_keeps_torchs_convention():
    model = RawLinear()
    gp.init.apply(
        model,
        "lecun_normal",
        nonlinearity="linear",
        example_input=torch.randn(4, 256),
        generator=torch.Generator().manual_seed(0),
    )
    assert model.W.std().item() == pytest.approx(0.0625, rel=0.03)


def test_raw_non_square_parameter_without_example_input_warns():
    with pytest.warns(GradprobeWarning, match="example_input"):
        gp.init.apply(RawMatmul(), "kaiming_normal")


def test_builtin_layers_and_non_fan_schemes_do_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gp.init.apply(nn.Sequential(nn.Linear(256, 64), nn.ReLU()), "kaiming_normal")
        gp.init.apply(RawMatmul(), "zeros")
