"""Per-layer predictions across depth: ``propagate`` for a uniform stack, ``predict`` for a model.

Forward (Poole et al. 2016): q^1 = σ_w² q⁰ + σ_b², q^l = σ_w² E[φ(√q^{l−1} z)²] + σ_b².
Backward (Schoenholz et al. 2017, eq. 13), δ^l = ∂loss/∂h^l under the gradient
independence assumption:

    E[(δ^l)²] = χ^l · E[(δ^{l+1})²],   χ^l = σ_w² E[φ′(√q^l z)²] · n_{l+1} / n_l

so the gradient ratio across a stack is Π χ^l; χ^l = χ₁ once q^l = q*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError
from ._activations import Activation, resolve
from ._checks import check_depth, check_q0, check_variances
from ._stack import Affine, stack_steps
from .finite_width import chain_spread
from .kernels import D_at, V


@dataclass(frozen=True)
class Propagation:
    """Mean-field trajectory of a depth-L stack; arrays are indexed by layer 1..L (0-based)."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    q: np.ndarray  # pre-activation variance E[(h^l)²]
    act_var: np.ndarray  # E[φ(h^l)²], the second moment a layer hands to the next
    chi: np.ndarray  # σ_w² E[φ′(h^l)²]: E[(δ^l)²] / E[(δ^{l+1})²]
    grad_var: np.ndarray  # E[(δ^l)²] / E[(δ^L)²]

    @property
    def depth(self) -> int:
        return len(self.q)

    @property
    def gradient_ratio(self) -> float:
        """E[(δ^1)²] / E[(δ^L)²] = Π_{l<L} χ^l: < 1 vanishing, > 1 exploding towards the input."""
        return float(self.grad_var[0])


def _grad_var(chi: np.ndarray) -> np.ndarray:
    """Reverse cumulative product: out[l] = Π_{k=l}^{L−2} chi[k], out[L−1] = 1."""
    out = np.ones(len(chi))
    with np.errstate(over="ignore"):  # a product past 1e308 is +inf: it explodes
        for k in range(len(chi) - 2, -1, -1):
            out[k] = out[k + 1] * chi[k]
    return out


def propagate(activation, sigma_w2: float, sigma_b2: float, depth: int, q0: float = 1.0):
    """Per-layer forward variance q^l and gradient variance of a uniform random stack.

    ``q0`` is the input's second moment (1/n₀)‖x‖². Returns a :class:`Propagation`.

    >>> p = propagate("relu", sigma_w2=2.0, sigma_b2=0.0, depth=50)
    >>> float(p.q[-1]), p.gradient_ratio
    (2.0, 1.0)
    """
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    depth, q0 = check_depth(depth), check_q0(q0)
    q = np.empty(depth)
    with torch.no_grad():
        q[0] = sigma_w2 * q0 + sigma_b2
        for l in range(1, depth):
            q[l] = sigma_w2 * float(V(act, q[l - 1])) + sigma_b2
            if not math.isfinite(q[l]):
                q[l:] = math.inf
                break
        finite = np.isfinite(q)
        act_var = np.full(depth, math.inf)
        act_var[finite] = V(act, q[finite]).numpy()
        # a diverged q (past 1e308) keeps its q → ∞ slope: ReLU's χ is σ_w²/2 at any q
        chi = sigma_w2 * D_at(act, q).numpy()
    return Propagation(act.name, sigma_w2, sigma_b2, q, act_var, chi, _grad_var(chi))


@dataclass(frozen=True)
class LayerPrediction:
    """Prediction for one affine layer of a model and the activations that follow it."""

    name: str
    kind: str
    fan_in: int
    sigma_w2: float  # fan_in · mean(W²), read from the model
    sigma_b2: float  # mean(b²)
    activation: str  # "linear" when no activation follows
    q: float  # E[h²] of this layer's pre-activation
    out_var: float  # E[φ(h)²], the second moment handed to the next layer
    chi: float  # E[δ²] here / E[δ²] one layer up (nan for the last layer)
    grad_var: float  # E[δ²] here / E[δ²] at the last layer
    weight_grad_var: float  # E[(∂loss/∂W)²] here / same at the last layer
    q_rel_std: float  # std/mean of q across random networks of these widths, one input


@dataclass(frozen=True)
class ModelPrediction:
    """Mean-field predictions for every affine layer of a model, input to output."""

    layers: tuple[LayerPrediction, ...]
    input_var: float

    @property
    def q(self) -> np.ndarray:
        return np.array([layer.q for layer in self.layers])

    @property
    def grad_var(self) -> np.ndarray:
        return np.array([layer.grad_var for layer in self.layers])

    @property
    def chi(self) -> np.ndarray:
        """Expected E[δ²] ratio of each layer to the one above (nan for the last)."""
        return np.array([layer.chi for layer in self.layers])

    @property
    def gradient_ratio(self) -> float:
        """E[δ²] at the first affine layer over the last one."""
        return self.layers[0].grad_var

    def to_rows(self) -> list[dict]:
        return [dict(vars(layer)) for layer in self.layers]


def _compose(acts: list[Activation]) -> Activation:
    if not acts:
        return resolve("linear")
    if len(acts) == 1:
        return acts[0]

    def fn(x):
        for a in acts:
            x = a(x)
        return x

    return Activation("∘".join(a.name for a in reversed(acts)), fn)


def predict(model: nn.Module, input_var: float = 1.0) -> ModelPrediction:
    """Predict each layer's q and gradient variance from a model's actual weight scales.

    For plain stacks of Linear/Conv layers (conv through its fan-in C_in·Πk) and
    elementwise activations; σ_w² = fan_in · mean(W²) and σ_b² = mean(b²) are read
    from the initialised weights. ``input_var`` is the input's mean x². Conv layers
    are treated per position (exact for circular padding, borders ignored); Dropout as in
    eval mode (identity).
    """
    input_var = check_q0(input_var, "input_var", math.inf)  # huge q overflow to inf below
    steps = stack_steps(model)
    if not isinstance(steps[0], Affine):
        raise InvalidInputError(
            f"theory.predict needs the model to start with a Linear or Conv layer, it starts with"
            f" activation {steps[0].name!r}; predict the model without it and pass the input's"
            " second moment after that activation as input_var"
        )
    groups: list[tuple[Affine, list[Activation]]] = []  # (Affine, activations after it)
    for step in steps:
        if isinstance(step, Affine):
            groups.append((step, []))
        else:
            groups[-1][1].append(step)
    rows, m = [], input_var
    with torch.no_grad():
        for layer, acts in groups:
            act = _compose(acts)
            q = layer.sigma_w2 * m + layer.sigma_b2
            out = float(V(act, q)) if math.isfinite(q) else math.inf
            mu = float(D_at(act, q))
            rows.append((layer, act.name, q, out, mu, m))
            m = out
    chi = np.full(len(rows), math.nan)
    for i in range(len(rows) - 1):
        above = rows[i + 1][0]
        chi[i] = rows[i][4] * above.sigma_w2 / above.fan_in * above.fan_out
    grad = _grad_var(chi)
    wgrad = grad * np.array([r[5] for r in rows]) / rows[-1][5] if rows[-1][5] else grad * math.nan
    # finite width (Hanin & Rolnick 2018): units per position (conv: channels)
    spread_mean, spread_std = chain_spread(
        [(_compose(acts), g.sigma_w2, g.sigma_b2, g.width) for g, acts in groups], input_var
    )
    layers = []
    for i, (layer, act_name, q, out, _, _) in enumerate(rows):
        rel = float(spread_std[i] / spread_mean[i]) if spread_mean[i] > 0 else math.nan
        numbers = (q, out, float(chi[i]), float(grad[i]), float(wgrad[i]), rel)
        layers.append(
            LayerPrediction(
                layer.name,
                layer.kind,
                layer.fan_in,
                layer.sigma_w2,
                layer.sigma_b2,
                act_name,
                *numbers,
            )
        )
    return ModelPrediction(tuple(layers), input_var)
