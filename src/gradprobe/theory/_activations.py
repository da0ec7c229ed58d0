"""Resolve an activation given by name, torch module or callable to a :class:`Activation`.

Mean-field theory needs φ and φ′ on a tensor of pre-activations. Common
activations get a closed-form derivative and, where one exists, a closed-form
Gaussian kernel (ReLU, erf, linear); anything else is differentiated with
``torch.func`` and integrated numerically.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidInputError, UnknownNameError

Fn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Activation:
    """An elementwise φ with its derivative, kink locations and closed-form kernel (if any)."""

    name: str
    fn: Fn = field(repr=False)
    deriv: Fn | None = field(default=None, repr=False)
    kinks: tuple[float, ...] = (0.0,)  # points where φ or φ′ is not smooth (quadrature splits)
    closed: str | None = None  # "relu", "erf" or "linear": a closed-form kernel exists

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def d(self, x: Tensor) -> Tensor:
        """φ′(x), closed form when known, else autograd through ``torch.func``."""
        if self.deriv is not None:
            return self.deriv(x)
        return _autograd_derivative(self.fn, x)


def _autograd_derivative(fn: Fn, x: Tensor) -> Tensor:
    """φ′ elementwise: for an elementwise φ the gradient of Σφ(x) is φ′(x).

    Plain reverse-mode autograd; ``torch.func.grad`` gives the same numbers but
    costs seconds of set-up on its first call.
    """
    with torch.enable_grad():
        leaf = x.detach().clone().requires_grad_(True)
        out = fn(leaf)
        if not out.requires_grad:  # φ is piecewise constant or detached: φ′ = 0
            return torch.zeros_like(leaf)
        (grad,) = torch.autograd.grad(out.sum(), leaf)
    return grad


def _sigmoid_d(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _gelu_d(x: Tensor) -> Tensor:  # d/dx xΦ(x) = Φ(x) + x N(x)
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-(x**2) / 2) / _SQRT_2PI


def _silu_d(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


_SQRT_PI = math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2 * math.pi)

# name -> (φ, φ′ or None for autograd, kinks, closed-form kernel)
_TABLE: dict[str, tuple[Fn, Fn | None, tuple[float, ...], str | None]] = {
    "linear": (lambda x: x, torch.ones_like, (), "linear"),
    "relu": (torch.relu, lambda x: (x > 0).to(x.dtype), (0.0,), "relu"),
    "tanh": (torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, (), None),
    "erf": (torch.erf, lambda x: 2 / _SQRT_PI * torch.exp(-(x**2)), (), "erf"),
    "sigmoid": (torch.sigmoid, _sigmoid_d, (), None),
    "gelu": (F.gelu, _gelu_d, (), None),
    "silu": (F.silu, _silu_d, (), None),
    "softplus": (F.softplus, torch.sigmoid, (), None),
    "softsign": (F.softsign, lambda x: 1 / (1 + x.abs()) ** 2, (0.0,), None),
    "elu": (F.elu, lambda x: torch.where(x > 0, 1.0, torch.exp(x)).to(x.dtype), (0.0,), None),
    "selu": (F.selu, None, (0.0,), None),
    "leaky_relu": (F.leaky_relu, lambda x: torch.where(x > 0, 1.0, 0.01).to(x.dtype), (0.0,), None),
    "hardtanh": (F.hardtanh, lambda x: (x.abs() < 1).to(x.dtype), (-1.0, 0.0, 1.0), None),
    "relu6": (F.relu6, lambda x: ((x > 0) & (x < 6)).to(x.dtype), (0.0, 6.0), None),
    "mish": (F.mish, None, (), None),
    "sin": (torch.sin, torch.cos, (), None),
}
_ALIASES = {"identity": "linear", "none": "linear", "swish": "silu"}

# torch module class -> table name (modules with parameters of their own are handled below)
_MODULES: dict[type, str] = {
    nn.Identity: "linear",
    nn.ReLU: "relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
    nn.Softsign: "softsign",
    nn.SELU: "selu",
    nn.Mish: "mish",
    nn.ReLU6: "relu6",
}


# plain functions that are table entries (so torch.tanh gets tanh's closed-form derivative)
_FUNCTIONS: dict[object, str] = {fn: name for name, (fn, *_) in _TABLE.items() if name != "linear"}
_FUNCTIONS.update({F.relu: "relu", F.tanh: "tanh", F.sigmoid: "sigmoid", torch.special.erf: "erf"})


def activation_names() -> list[str]:
    """Names accepted by :func:`resolve` (``torch.nn.functional`` names work too)."""
    return sorted([*_TABLE, *_ALIASES])


def _from_name(name: str) -> Activation:
    key = _ALIASES.get(name.lower(), name.lower())
    if key in _TABLE:
        fn, deriv, kinks, closed = _TABLE[key]
        return Activation(key, fn, deriv, kinks, closed)
    candidate = getattr(F, key, None)
    if callable(candidate) and not key.startswith("_"):
        return _checked(Activation(key, candidate))
    close = difflib.get_close_matches(key, activation_names(), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(
        f"unknown activation {name!r}.{hint} Known activations: {', '.join(activation_names())};"
        " any torch.nn.functional name, a torch module or an elementwise callable also works."
    )


def _from_module(module: nn.Module) -> Activation:
    kind = type(module)
    if kind in _MODULES:
        return _from_name(_MODULES[kind])
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return _from_name("gelu")
    if isinstance(module, nn.LeakyReLU):
        slope = module.negative_slope
        return Activation(
            f"leaky_relu({slope:g})",
            lambda x: F.leaky_relu(x, slope),
            lambda x: torch.where(x > 0, 1.0, slope).to(x.dtype),
        )
    if isinstance(module, nn.PReLU) and module.weight.numel() == 1:  # one learned slope
        slope = float(module.weight.detach())
        return Activation(
            f"prelu({slope:g})",
            lambda x: F.leaky_relu(x, slope),
            lambda x: torch.where(x > 0, 1.0, slope).to(x.dtype),
        )
    if isinstance(module, nn.Hardtanh):
        lo, hi = module.min_val, module.max_val
        return Activation(f"hardtanh({lo:g},{hi:g})", module, None, (lo, 0.0, hi))
    return _checked(Activation(kind.__name__.lower(), module))


def _checked(act: Activation) -> Activation:
    """Refuse a callable that is not elementwise (mean-field theory assumes φ acts per unit)."""
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    try:
        with torch.no_grad():
            y, y_perm, y_part = act.fn(x), act.fn(x[perm]), act.fn(x[:3])
        ok = (
            isinstance(y, Tensor)
            and y.shape == x.shape
            and torch.allclose(y[perm], y_perm)
            and torch.allclose(y[:3], y_part)  # softmax-like maps fail this one
        )
    except Exception as err:
        raise InvalidInputError(
            f"activation {act.name!r} failed on a float64 tensor ({err}); pass a callable that"
            " maps a tensor to a tensor of the same shape, elementwise"
        ) from err
    if isinstance(y, Tensor) and y.shape == x.shape and not torch.isfinite(y).all():
        bad = [round(v, 1) for v in x[~torch.isfinite(y)].tolist()]
        raise InvalidInputError(
            f"activation {act.name!r} gives NaN/Inf at finite inputs ({bad}); mean-field"
            " theory integrates φ over the whole real line (pre-activations are Gaussian), so"
            " φ must be finite everywhere (log or sqrt are not; clamp them first)"
        )
    if not ok:
        raise InvalidInputError(
            f"activation {act.name!r} is not elementwise; mean-field theory needs φ applied to"
            " each unit on its own (tensor -> tensor of the same shape)"
        )
    return act


def resolve(activation: str | nn.Module | Fn | Activation) -> Activation:
    """An :class:`Activation` from a name (``"tanh"``), a module (``nn.GELU()``) or a callable."""
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        return _from_name(activation)
    if isinstance(activation, nn.Module):
        return _from_module(activation)
    if callable(activation):
        try:
            if activation in _FUNCTIONS:
                return _from_name(_FUNCTIONS[activation])
        except TypeError:  # unhashable callable
            pass
        name = getattr(activation, "__name__", type(activation).__name__)
        return _checked(Activation(name, activation))
    raise InvalidInputError(
        f"cannot use {activation!r} as an activation; pass a name such as 'tanh',"
        " a torch module such as nn.GELU(), or an elementwise callable"
    )
