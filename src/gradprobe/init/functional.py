"""Tensor initialisations with torch's contract: ``name_(tensor, ..., generator=None) -> tensor``.

Each fills ``tensor`` in place under ``no_grad`` and returns it. Fan-based
schemes take the fans from the tensor's shape by torch's ``(out, in, *kernel)``
convention, or from ``fan=(fan_in, fan_out)`` when the caller knows the layer's
role better (see :mod:`gradprobe.init.fans`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..errors import InvalidInputError
from .fans import Fan, pick_fan, tensor_fans
from .gains import gain as activation_gain

FanMode = Literal["fan_in", "fan_out", "fan_avg"]
Distribution = Literal["truncated_normal", "untruncated_normal", "normal", "uniform"]

# std of a unit normal truncated to [-2, 2]: Keras divides by it so the variance is exact.
_TRUNC2_STD = 0.87962566103423978


def _check(tensor: object) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise InvalidInputError(
            f"expected a torch.Tensor to initialise, got {type(tensor).__name__}; "
            f"for a whole model use gradprobe.init.apply(model, scheme)"
        )
    return tensor


def _fans(tensor: torch.Tensor, fan: Fan | None) -> Fan:
    return tensor_fans(tensor) if fan is None else fan


@torch.no_grad()
def zeros_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """w = 0.

    >>> zeros_(torch.empty(2)).tolist()
    [0.0, 0.0]
    """
    return _check(tensor).zero_()


@torch.no_grad()
def constant_(
    tensor: torch.Tensor, val: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """w = val.

    >>> constant_(torch.empty(2), 0.5).tolist()
    [0.5, 0.5]
    """
    return _check(tensor).fill_(val)


@torch.no_grad()
def normal_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """w ~ N(mean, std²).

    >>> normal_(torch.empty(3, 3), std=0.1).shape
    torch.Size([3, 3])
    """
    return _check(tensor).normal_(mean, std, generator=generator)


@torch.no_grad()
def uniform_(
    tensor: torch.Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """w ~ U[a, b]; Var = (b − a)² / 12.

    >>> bool((uniform_(torch.empty(100), -1, 1).abs() <= 1).all())
    True
    """
    return _check(tensor).uniform_(a, b, generator=generator)


@torch.no_grad()
def trunc_normal_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """w ~ N(mean, std²) truncated to [a, b] (absolute bounds, torch's convention).

    Var = std² (1 + (α φ(α) − β φ(β)) / Z − ((φ(α) − φ(β)) / Z)²), α = (a − mean)/std,
    β = (b − mean)/std, Z = Φ(β) − Φ(α).

    >>> bool((trunc_normal_(torch.empty(1000)).abs() <= 2).all())
    True
    """
    _check(tensor)
    if not a < b:
        raise InvalidInputError(f"trunc_normal_ needs a < b, got a={a}, b={b}")
    return torch.nn.init.trunc_normal_(tensor, mean, std, a, b, generator=generator)


@torch.no_grad()
def scaled_normal_(
    tensor: torch.Tensor, scale: float = 0.01, generator: torch.Generator | None = None
) -> torch.Tensor:
    """w ~ N(0, scale²): the fixed-scale Gaussian of teaching notebooks (e.g. 0.01 · randn).

    With a fixed scale the per-layer gain is scale² · fan_in, so signals vanish when it
    is < 1 and explode when it is > 1 (the matrix-chain demo).

    >>> scaled_normal_(torch.empty(2, 2), 0.01).shape
    torch.Size([2, 2])
    """
    return _check(tensor).normal_(0.0, scale, generator=generator)


@torch.no_grad()
def standard_(
    tensor: torch.Tensor, fan: Fan | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The 2010 "standard" init: w ~ U[−1/√fan_in, 1/√fan_in], Var = 1 / (3 fan_in).

    Glorot & Bengio (2010), eq. 1: the common heuristic their normalised init replaced.

    >>> bool((standard_(torch.empty(4, 16)).abs() <= 0.25).all())
    True
    """
    fan_in, _ = _fans(_check(tensor), fan)
    bound = 1.0 / math.sqrt(fan_in)
    return tensor.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def xavier_uniform_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    fan: Fan | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Glorot & Bengio (2010), eq. 16: w ~ U[−a, a], a = gain · √(6 / (fan_in + fan_out)).

    Var = gain² · 2 / (fan_in + fan_out).

    >>> xavier_uniform_(torch.empty(3, 5), gain=5 / 3).shape
    torch.Size([3, 5])
    """
    fan_in, fan_out = _fans(_check(tensor), fan)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return tensor.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def xavier_normal_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    fan: Fan | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Glorot & Bengio (2010): w ~ N(0, gain² · 2 / (fan_in + fan_out)).

    >>> xavier_normal_(torch.empty(3, 5)).shape
    torch.Size([3, 5])
    """
    fan_in, fan_out = _fans(_check(tensor), fan)
    return tensor.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)


def _kaiming_std(tensor, a, mode, nonlinearity, gain, fan) -> float:
    if gain is None:
        gain = activation_gain(nonlinearity, a)
    return gain / math.sqrt(pick_fan(_fans(_check(tensor), fan), mode))


@torch.no_grad()
def kaiming_uniform_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    gain: float | None = None,
    fan: Fan | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """He et al. (2015), eq. 10: w ~ U[−b, b], b = gain · √(3 / fan), Var = gain² / fan.

    ``gain`` defaults to ``gain(nonlinearity, a)`` (√2 for ReLU); pass it for any other
    activation (``gradprobe.init.gain(nn.GELU())``).

    >>> kaiming_uniform_(torch.empty(3, 5), nonlinearity="relu").shape
    torch.Size([3, 5])
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, gain, fan)
    bound = math.sqrt(3.0) * std
    return tensor.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def kaiming_normal_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    gain: float | None = None,
    fan: Fan | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """He et al. (2015), eq. 10: w ~ N(0, gain² / fan) with fan = fan_in (or fan_out).

    >>> kaiming_normal_(torch.empty(3, 5), nonlinearity="relu").shape
    torch.Size([3, 5])
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, gain, fan)
    return tensor.normal_(0.0, std, generator=generator)


@torch.no_grad()
def lecun_uniform_(
    tensor: torch.Tensor, fan: Fan | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """LeCun et al. (1998), Efficient BackProp: w ~ U[−√(3/fan_in), √(3/fan_in)], Var = 1/fan_in.

    >>> lecun_uniform_(torch.empty(3, 5)).shape
    torch.Size([3, 5])
    """
    fan_in, _ = _fans(_check(tensor), fan)
    bound = math.sqrt(3.0 / fan_in)
    return tensor.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def lecun_normal_(
    tensor: torch.Tensor, fan: Fan | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """LeCun et al. (1998); Klambauer et al. (2017) for SELU: w ~ N(0, 1/fan_in).

    >>> lecun_normal_(torch.empty(3, 5)).shape
    torch.Size([3, 5])
    """
    fan_in, _ = _fans(_check(tensor), fan)
    return tensor.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)


@torch.no_grad()
def variance_scaling_(
    tensor: torch.Tensor,
    scale: float = 1.0,
    mode: FanMode = "fan_in",
    distribution: Distribution = "truncated_normal",
    fan: Fan | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keras' VarianceScaling: Var(w) = scale / fan, fan per ``mode``.

    ``truncated_normal`` draws N(0, σ²) truncated at ±2σ with σ = √(scale/fan) / 0.8796
    (so the variance is exact); ``untruncated_normal``/``normal`` draw N(0, scale/fan);
    ``uniform`` draws U[−√(3 scale/fan), √(3 scale/fan)].

    >>> variance_scaling_(torch.empty(3, 5), 2.0, "fan_in", "uniform").shape
    torch.Size([3, 5])
    """
    if scale <= 0:
        raise InvalidInputError(f"variance_scaling_ needs scale > 0, got {scale}")
    variance = scale / pick_fan(_fans(_check(tensor), fan), mode)
    if distribution == "truncated_normal":
        std = math.sqrt(variance) / _TRUNC2_STD
        return torch.nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std, generator=generator)
    if distribution in ("untruncated_normal", "normal"):
        return tensor.normal_(0.0, math.sqrt(variance), generator=generator)
    if distribution == "uniform":
        bound = math.sqrt(3.0 * variance)
        return tensor.uniform_(-bound, bound, generator=generator)
    raise InvalidInputError(
        f"distribution must be one of 'truncated_normal', 'untruncated_normal', 'normal', "
        f"'uniform', got {distribution!r}"
    )


def _orthogonal_matrix(rows: int, cols: int, generator, dtype, device) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal columns (rows ≥ cols) or rows, Haar-distributed.

    QR of a Gaussian matrix with the signs of R's diagonal folded into Q (Mezzadri 2007).
    """
    flat = torch.empty(max(rows, cols), min(rows, cols), dtype=torch.float64, device=device)
    flat.normal_(0.0, 1.0, generator=generator)
    q, r = torch.linalg.qr(flat)
    q = q * torch.where(torch.diagonal(r) >= 0, 1.0, -1.0)
    if rows < cols:
        q = q.T
    return q.to(dtype)


@torch.no_grad()
def orthogonal_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Saxe et al. (2014): w = gain · Q, Q with orthonormal rows or columns.

    The tensor is viewed as (shape[0], prod(shape[1:])); Var(w) = gain² / max(rows, cols).

    >>> w = orthogonal_(torch.empty(4, 4))
    >>> torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)
    True
    """
    _check(tensor)
    if tensor.dim() < 2:
        raise InvalidInputError(
            f"orthogonal_ needs a tensor with at least 2 dimensions, got shape "
            f"{tuple(tensor.shape)}; use zeros_ or normal_ for 1-D tensors"
        )
    rows, cols = tensor.shape[0], tensor[0].numel()
    q = _orthogonal_matrix(rows, cols, generator, tensor.dtype, tensor.device)
    return tensor.copy_(q.reshape(tensor.shape).mul_(gain))


@torch.no_grad()
def delta_orthogonal_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Xiao et al. (2018): a conv kernel that is zero except for an orthogonal centre tap.

    w[:, :, centre] = gain · Q (out × in, orthonormal columns when out ≥ in), 0 elsewhere,
    so the convolution is norm-preserving at initialisation ("dynamical isometry").
    Var(w) = gain² / (max(out, in) · prod(kernel)).

    >>> w = delta_orthogonal_(torch.empty(8, 8, 3, 3))
    >>> int((w != 0).sum())
    64
    """
    _check(tensor)
    if tensor.dim() < 3:
        raise InvalidInputError(
            f"delta_orthogonal_ is for conv kernels (out, in, *kernel), got shape "
            f"{tuple(tensor.shape)}; use orthogonal_ for a matrix"
        )
    q = _orthogonal_matrix(tensor.shape[0], tensor.shape[1], generator, tensor.dtype, tensor.device)
    tensor.zero_()
    centre = tuple(k // 2 for k in tensor.shape[2:])
    tensor[(slice(None), slice(None), *centre)] = q * gain
    return tensor


@torch.no_grad()
def identity_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Identity for a matrix (w = I, rectangular allowed), Dirac delta for a conv kernel.

    Le et al. (2015, IRNN) for recurrent weights; Var(w) = min(out, in) / (out · in · k).

    >>> identity_(torch.empty(2, 2)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    _check(tensor)
    if tensor.dim() == 2:
        return torch.nn.init.eye_(tensor)
    if tensor.dim() in (3, 4, 5):
        return torch.nn.init.dirac_(tensor)
    raise InvalidInputError(
        f"identity_ needs a 2-D matrix or a 3-5-D conv kernel, got shape {tuple(tensor.shape)}"
    )
