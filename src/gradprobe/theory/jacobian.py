"""The input–output Jacobian's singular values: measured on a network, and predicted.

J = ∂x^L/∂x^0 = D^L W^L ··· D^1 W^1 with D^l = diag φ′(h^l). Its squared singular
values (eigenvalues λ of JᵀJ) decide whether every input direction is passed on
alike (dynamical isometry, Saxe et al. 2014) or a few directions dominate.

Prediction (Pennington, Schoenholz & Ganguli 2017): W and D are asymptotically
free, so S-transforms multiply and, to second order, relative variances add:

    mean λ = Π_l σ_w² μ₁(q^l)                  μ_k(q) = E[φ′(√q z)^{2k}]
    Var λ / (mean λ)² = Σ_l (μ₂/μ₁² − 1 + s)   s = 1 Gaussian W, 0 orthogonal W

Critical ReLU with Gaussian weights: Var λ = 2L (linear growth with depth);
orthogonal tanh with q* → 0: μ₂/μ₁² → 1, so the spread stays near 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from ._activations import Activation, resolve
from ._checks import MAX_VARIANCE, check_depth, check_q0, check_variances
from .kernels import D2, D
from .meanfield import q_star
from .trajectory import propagate

Weights = Literal["gaussian", "orthogonal"]


@dataclass(frozen=True)
class Spectrum:
    """Mean and variance of λ = σ², the eigenvalues of JᵀJ (over the n_in input directions)."""

    mean_sq: float
    var_sq: float
    method: str  # "exact", "projections" or "free probability"
    singular_values: np.ndarray | None = None  # only when measured exactly

    @property
    def rel_var(self) -> float:
        return self.var_sq / self.mean_sq**2


def _check_weights(weights: str) -> Weights:
    if weights in ("gaussian", "orthogonal"):
        return cast(Weights, weights)
    raise InvalidInputError(f"weights must be 'gaussian' or 'orthogonal', got {weights!r}")


class _Act(nn.Module):
    def __init__(self, act: Activation):
        super().__init__()
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x)


def random_mlp(
    activation,
    width: int,
    depth: int,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    weights: Weights = "gaussian",
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """depth × (Linear(width, width), φ) with W ~ N(0, σ_w²/n) or √σ_w² · Haar orthogonal."""
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    depth, weights = check_depth(depth), _check_weights(weights)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InvalidInputError(f"width must be an integer >= 1, got {width!r}")
    layers: list[nn.Module] = []
    with torch.no_grad():
        for _ in range(depth):
            lin = nn.Linear(width, width)
            if weights == "gaussian":
                lin.weight.normal_(0, math.sqrt(sigma_w2 / width), generator=generator)
            else:
                nn.init.orthogonal_(lin.weight, gain=math.sqrt(sigma_w2), generator=generator)
            lin.bias.normal_(0, math.sqrt(sigma_b2), generator=generator)
            layers += [lin, _Act(act)]
    return nn.Sequential(*layers)


def _as_vector_fn(model: nn.Module, x: Tensor):
    if not isinstance(x, Tensor) or x.dim() != 1:
        raise InvalidInputError(
            "pass one input as a 1-D tensor (the Jacobian is per input); for images flatten it"
            " and wrap the model, e.g. lambda v: model(v.view(1, 3, 32, 32)).flatten()"
        )
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise InvalidInputError("the input contains NaN/Inf: the Jacobian there is not defined")

    def f(v: Tensor) -> Tensor:
        return model(v.unsqueeze(0)).reshape(-1)

    return f


def jacobian_spectrum(
    model: nn.Module,
    x: Tensor,
    method: Literal["auto", "exact", "projections"] = "auto",
    probes: int = 32,
    generator: torch.Generator | None = None,
) -> Spectrum:
    """Measure mean and variance of the squared singular values of ∂model(x)/∂x.

    ``exact``: the full Jacobian by ``torch.func.jacrev`` and its SVD (n_in <= ~1024).
    ``projections``: Hutchinson estimates with ``probes`` Gaussian vectors v,
    mean λ ≈ E‖Jv‖²/n and Var λ ≈ E‖(JᵀJ − mean λ)v‖²/n, one jvp and one vjp per probe.
    ``auto`` is exact up to 512 inputs.
    """
    if method not in ("auto", "exact", "projections"):
        raise InvalidInputError(f"method must be 'auto', 'exact' or 'projections', got {method!r}")
    f = _as_vector_fn(model, x)
    x = x.detach()
    n = x.numel()
    if method == "exact" or (method == "auto" and n <= 512):
        jac = torch.func.jacrev(f)(x).detach()
        if not torch.isfinite(jac).all():
            raise InvalidInputError(
                "the Jacobian has NaN/Inf entries (the model overflows at this input): check"
                " it with gp.check, or scale the weights down"
            )
        sv = torch.linalg.svdvals(jac.double())
        lam = torch.cat([sv**2, sv.new_zeros(max(0, n - sv.numel()))])  # JᵀJ has n eigenvalues
        return Spectrum(float(lam.mean()), float(lam.var(unbiased=False)), "exact", sv.numpy())
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 2:
        raise InvalidInputError(f"probes must be an integer >= 2, got {probes!r}")
    v = torch.randn(probes, n, generator=generator, dtype=x.dtype)
    vjp = torch.func.vjp(f, x)[1]  # (output, vjp_fn); has_aux=False

    def jvp(t):
        return torch.func.jvp(f, (x,), (t,))[1]

    jv = torch.func.vmap(jvp)(v).detach()  # (probes, n_out)
    jtjv = torch.func.vmap(vjp)(jv)[0].detach()  # (probes, n)
    m1 = float(jv.double().pow(2).sum(1).mean()) / n
    # Var λ = tr((JᵀJ − m₁I)²)/n: estimated around m₁, so a small spread is not lost in
    # the difference of two large numbers m₂ − m₁²
    var = float((jtjv.double() - m1 * v.double()).pow(2).sum(1).mean()) / n
    return Spectrum(m1, var, "projections")


def spectrum_prediction(
    activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    weights: Weights = "gaussian",
    q0: float | None = None,
) -> Spectrum:
    """Free-probability prediction of mean and variance of λ for :func:`random_mlp`.

    ``q0`` is the input's mean square; by default the one that puts every layer at q*.
    """
    act = resolve(activation)
    sigma_w2, sigma_b2 = check_variances(sigma_w2, sigma_b2)
    depth, weights = check_depth(depth), _check_weights(weights)
    if q0 is None:
        qs = q_star(act, sigma_w2, sigma_b2)
        q0 = max(qs - sigma_b2, 0.0) / sigma_w2 if math.isfinite(qs) and sigma_w2 > 0 else 1.0
        q0 = min(q0, MAX_VARIANCE)  # σ_w² q0 is then far below σ_b² ≈ q*: no change
    else:
        q0 = check_q0(q0)
    q = propagate(act, sigma_w2, sigma_b2, depth, q0).q
    with torch.no_grad():
        mu1, mu2 = D(act, q).numpy(), D2(act, q).numpy()
    s = 1.0 if weights == "gaussian" else 0.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # 0, ∞ are true here
        mean = np.prod(sigma_w2 * mu1)
        rel = np.sum(mu2 / mu1**2 - 1 + s)
        var = float(rel * mean**2)
    return Spectrum(float(mean), var, "free probability")
