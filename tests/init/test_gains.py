import math

import pytest
import torch
from scipy import integrate
from torch import nn

import gradprobe as gp
from gradprobe.errors import InvalidInputError, UnknownNameError


@pytest.mark.parametrize("name", ["linear", "conv2d", "sigmoid", "tanh", "relu", "selu"])
def test_named_gains_are_torchs(name):
    assert gp.init.gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))


def test_leaky_relu_and_modules():
    assert gp.init.gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2)
    )
    assert gp.init.gain(nn.LeakyReLU(0.3)) == pytest.approx(math.sqrt(2 / (1 + 0.09)))
    assert gp.init.gain(nn.ReLU(inplace=True)) == pytest.approx(math.sqrt(2))
    assert gp.init.gain(nn.Tanh()) == pytest.approx(5 / 3)


def _reference_gain(phi):
    """1/sqrt(E[phi(z)^2]) by adaptive scipy quadrature, split at the origin."""
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    left = integrate.quad(lambda z: phi(z) ** 2 * pdf(z), -math.inf, 0, limit=200)[0]
    right = integrate.quad(lambda z: phi(z) ** 2 * pdf(z), 0, math.inf, limit=200)[0]
    return 1 / math.sqrt(left + right)


GELU = lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
SILU = lambda z: z / (1 + math.exp(-z)) if z > -700 else 0.0  # noqa: E731
MISH = lambda z: z * math.tanh(math.log1p(math.exp(z))) if z < 30 else z  # noqa: E731


@pytest.mark.parametrize(
    ("activation", "reference"),
    [
        (nn.GELU(), GELU),
        ("gelu", GELU),
        (nn.SiLU(), SILU),
        ("mish", MISH),
        (lambda x: torch.relu(x), lambda z: max(z, 0.0)),
        (nn.Hardtanh(), lambda z: max(-1.0, min(1.0, z))),
        (math.tanh, math.tanh),  # a scalar-only callable
    ],
)
def test_numeric_gain_against_scipy_quadrature(activation, reference):
    assert gp.init.gain(activation) == pytest.approx(_reference_gain(reference), rel=1e-6)


def test_numeric_relu_equals_he_sqrt2():
    assert gp.init.numeric_gain(torch.relu) == pytest.approx(math.sqrt(2), rel=1e-9)


def test_unknown_and_unusable_activations():
    with pytest.raises(UnknownNameError, match="Did you mean 'relu'"):
        gp.init.gain("reluu")
    with pytest.raises(InvalidInputError, match="elementwise"):
        gp.init.gain(lambda x: x.sum())
    with pytest.raises(InvalidInputError):
        gp.init.gain(lambda x: torch.zeros_like(x))  # E[phi^2] = 0
    with pytest.raises(InvalidInputError, match=r"name, an nn\.Module or a callable"):
        gp.init.gain(3)
