"""The gain of an activation: the factor by which a weight's std is scaled for it.

Named activations (and their modules) use torch's table
(``torch.nn.init.calculate_gain``): linear/conv/sigmoid 1, tanh 5/3, relu √2,
leaky_relu √(2/(1+a²)), selu 3/4. For any other activation — GELU, SiLU,
Mish, a lambda — the gain is computed numerically:

    gain(φ) = 1 / sqrt(E_{z~N(0,1)}[φ(z)²])

the factor that keeps the second moment of pre-activations at 1 from layer to
layer (the fixed point q* = 1 of the mean-field length map with σ_b = 0;
He et al. 2015 eq. 10 for ReLU, where it gives exactly √2). The expectation is
computed by composite Gauss–Legendre quadrature on [-12, 12] (the Gaussian mass
outside is < 1e-32), with panel edges at 0 so that kinks at the origin (ReLU,
hardtanh...) cost no accuracy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._registry import Registry
from ..errors import InvalidInputError, UnknownNameError

_TABLE = {
    "linear": 1.0,
    "identity": 1.0,
    "conv1d": 1.0,
    "conv2d": 1.0,
    "conv3d": 1.0,
    "conv_transpose1d": 1.0,
    "conv_transpose2d": 1.0,
    "conv_transpose3d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3,
    "relu": math.sqrt(2.0),
    "selu": 0.75,
}

# Named activations without a table entry: their gain is numeric.
_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "elu": F.elu,
    "celu": F.celu,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "hardtanh": F.hardtanh,
    "relu6": F.relu6,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "logsigmoid": F.logsigmoid,
    "tanhshrink": F.tanhshrink,
    "softshrink": F.softshrink,
    "hardshrink": F.hardshrink,
    "sin": torch.sin,
    "erf": torch.erf,
}

# Modules whose gain is torch's table entry.
_MODULE_NAMES: dict[type[nn.Module], str] = {
    nn.Identity: "linear",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    nn.SELU: "selu",
}

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)


def _quadrature_grid(limit: float = 12.0, panels: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ∫ f(z) φ_N(z) dz over [-limit, limit]; panel edges include 0."""
    edges = np.linspace(-limit, limit, panels + 1)
    half = (edges[1:] - edges[:-1]) / 2
    mid = (edges[1:] + edges[:-1]) / 2
    z = (mid[:, None] + half[:, None] * _NODES[None, :]).ravel()
    w = (half[:, None] * _WEIGHTS[None, :]).ravel() * np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    return z, w


_Z, _W = _quadrature_grid()


def _evaluate(fn: Callable, z: np.ndarray) -> np.ndarray:
    """fn on the nodes: as a torch function, else as a numpy ufunc, else one scalar at a time."""
    attempts = (
        lambda: fn(torch.from_numpy(z)),
        lambda: fn(torch.from_numpy(z).float()),
        lambda: fn(z),
        lambda: np.array([fn(float(v)) for v in z]),
    )
    for attempt in attempts:
        try:
            with torch.no_grad():
                out = attempt()
        except Exception:
            continue
        out = out.detach().double().cpu().numpy() if torch.is_tensor(out) else np.asarray(out)
        if out.shape == z.shape:
            return out.astype(np.float64)
    raise InvalidInputError(
        f"cannot evaluate activation {fn!r} elementwise on a 1-D tensor or array; pass a "
        f"function of one tensor that returns a tensor of the same shape, or a known name"
    )


def gaussian_second_moment(fn: Callable) -> float:
    """E_{z~N(0,1)}[fn(z)²] by composite Gauss–Legendre quadrature."""
    return float(np.sum(_W * _evaluate(fn, _Z) ** 2))


def numeric_gain(fn: Callable) -> float:
    """1 / sqrt(E[fn(z)²]), z ~ N(0, 1): the gain that keeps q* = 1 (see module docstring)."""
    moment = gaussian_second_moment(fn)
    if not math.isfinite(moment) or moment <= 0:
        raise InvalidInputError(
            f"activation {fn!r} has E[φ(z)²] = {moment} under a standard Gaussian, so no gain "
            f"can normalise it; pass gain= explicitly"
        )
    return 1.0 / math.sqrt(moment)


def known_activations() -> list[str]:
    return sorted({*_TABLE, "leaky_relu", *_FUNCTIONS})


def gain(
    activation: str | nn.Module | Callable | None = "linear", param: float | None = None
) -> float:
    """Gain for ``activation``: a name, a module, or any elementwise callable.

    >>> round(gain("relu"), 4), round(gain(nn.LeakyReLU(0.2)), 4)
    (1.4142, 1.3868)
    >>> round(gain("gelu"), 4)  # numeric: 1/sqrt(E[gelu(z)^2])
    1.5335
    """
    if activation is None:
        return 1.0
    if isinstance(activation, str):
        name = activation.lower().replace("-", "_")
        if name == "leaky_relu":
            slope = 0.01 if param is None else float(param)
            return math.sqrt(2.0 / (1 + slope**2))
        if name in _TABLE:
            return _TABLE[name]
        if name in _FUNCTIONS:
            return _named_numeric_gain(name)
        raise UnknownNameError(_NAMES.unknown_message(activation))
    if isinstance(activation, nn.LeakyReLU):
        return gain("leaky_relu", activation.negative_slope)
    if isinstance(activation, nn.PReLU) and activation.weight.numel() == 1:
        return gain("leaky_relu", float(activation.weight.detach()))
    if type(activation) in _MODULE_NAMES:
        return _TABLE[_MODULE_NAMES[type(activation)]]
    if callable(activation):
        return numeric_gain(activation)
    raise InvalidInputError(
        f"activation must be a name, an nn.Module or a callable, got {type(activation).__name__}"
    )


_NAMES: Registry[None] = Registry("activation")
for _name in known_activations():
    _NAMES.register(_name, None)


@functools.cache
def _named_numeric_gain(name: str) -> float:
    return numeric_gain(_FUNCTIONS[name])
