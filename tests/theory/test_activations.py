"""Resolving activations: names, modules, callables, and the errors for the rest."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.errors import InvalidInputError, UnknownNameError
from gradprobe.theory import activation_names, resolve
from gradprobe.theory._activations import _autograd_derivative


@pytest.mark.parametrize("name", activation_names())
def test_closed_form_derivatives_match_autograd(name):
    act = resolve(name)
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    x = x[x.abs() > 1e-9]  # kinks: one-sided derivatives differ at 0
    x = x[(x.abs() - 1).abs() > 1e-9]
    torch.testing.assert_close(act.d(x), _autograd_derivative(act.fn, x))


@pytest.mark.parametrize(
    ("given", "name"),
    [
        (nn.Tanh(), "tanh"),
        (nn.ReLU(), "relu"),
        (nn.GELU(), "gelu"),
        (torch.tanh, "tanh"),
        (F.relu, "relu"),
        ("Swish", "silu"),
        ("hardswish", "hardswish"),  # any torch.nn.functional name
    ],
)
def test_resolve_names_modules_and_functions(given, name):
    assert resolve(given).name == name


def test_modules_keep_their_parameters():
    leaky = resolve(nn.LeakyReLU(0.2))
    x = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(leaky(x), torch.tensor([-0.2, 2.0], dtype=torch.float64))
    torch.testing.assert_close(leaky.d(x), torch.tensor([0.2, 1.0], dtype=torch.float64))
    elu = resolve(nn.ELU(alpha=0.5))
    assert float(elu(torch.tensor(-100.0, dtype=torch.float64))) == pytest.approx(-0.5)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'tanh'"):
        resolve("tahn")


@pytest.mark.parametrize("bad", [nn.Softmax(-1), lambda x: x.sum(), lambda x: x.cumsum(0), 3])
def test_non_elementwise_is_refused(bad):
    with pytest.raises(InvalidInputError):
        resolve(bad)
