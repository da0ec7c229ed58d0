"""The matrix chain: ``x = x @ W`` fifty times, for several scales of ``W``.

The seed lesson in one screen: a random matrix of std ``s`` multiplies the std of
``x`` by about ``s * sqrt(n)`` per layer, so a chain of them shrinks or grows
geometrically unless ``s = sqrt(1/n)`` (or ``sqrt(2/n)`` before a ReLU, which zeroes
half the signal: He et al. 2015).

Every setting uses the *same* input and the *same* N(0, 1) draws, only scaled
differently, so the settings differ by their scale and nothing else. The chain runs
in float32 (where ``0.1**46`` underflows to exactly 0 and ``10**39`` overflows to
Inf); its statistics are taken in float64 so that they do not underflow themselves.

>>> r = matrix_chain(depth=50, width=100, seed=0)
>>> r["small"].first_zero, r["normal"].first_inf
(46, 38)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import InvalidInputError


@dataclass(frozen=True)
class Setting:
    """How ``W`` is drawn: ``N(0, 1) * scale(n)``, optionally followed by a ReLU."""

    name: str
    label: str
    short: str  # for narrow table headers: the factor only
    scale: str  # "0.01", "1", "sqrt(1/n)" or "sqrt(2/n)"
    relu: bool = False

    def factor(self, n: int) -> float:
        return _FACTORS[self.scale](n)


_FACTORS = {
    "0.01": lambda n: 0.01,
    "1": lambda n: 1.0,
    "sqrt(1/n)": lambda n: math.sqrt(1 / n),
    "sqrt(2/n)": lambda n: math.sqrt(2 / n),
}


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("small", "N(0,1)·0.01", "×0.01", "0.01"),
        Setting("normal", "N(0,1)", "×1", "1"),
        Setting("xavier", "N(0,1)·√(1/n)", "×√(1/n)", "sqrt(1/n)"),
        Setting("he_relu", "N(0,1)·√(2/n) + ReLU", "×√(2/n) + ReLU", "sqrt(2/n)", relu=True),
        Setting("xavier_relu", "N(0,1)·√(1/n) + ReLU", "×√(1/n) + ReLU", "sqrt(1/n)", relu=True),
    )
}


@dataclass(frozen=True)
class ChainResult:
    """Per-layer statistics of one chain; index 0 is the input, index ``l`` after layer ``l``.

    ``first_zero`` is the first layer where every entry is exactly 0, ``first_inf`` /
    ``first_nan`` the first layer with any Inf / NaN entry; None when it never happens.
    """

    setting: Setting
    mean: torch.Tensor  # float64, shape (depth + 1,)
    std: torch.Tensor  # float64, shape (depth + 1,)
    first_zero: int | None
    first_inf: int | None
    first_nan: int | None

    @property
    def depth(self) -> int:
        return len(self.std) - 1

    @property
    def event(self) -> str | None:
        """The first of 0, Inf, NaN that the chain hit, as ``"Inf at layer 38"``; else None."""
        hits = [(layer, what) for what, layer in self.events() if layer is not None]
        return None if not hits else "{1} at layer {0}".format(*min(hits))

    def events(self) -> list[tuple[str, int | None]]:
        """``[("0", first_zero), ("Inf", first_inf), ("NaN", first_nan)]``."""
        return [("0", self.first_zero), ("Inf", self.first_inf), ("NaN", self.first_nan)]


def _check(depth: int, width: int, names: Sequence[str], seed: int = 0) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise InvalidInputError(f"depth must be a positive integer, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 2:
        raise InvalidInputError(f"width must be an integer >= 2, got {width!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InvalidInputError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        raise InvalidInputError(
            f"unknown matrix-chain setting(s) {unknown}; choose from {list(SETTINGS)}"
        )


def matrix_chain(
    settings: Sequence[str] | None = None, depth: int = 50, width: int = 100, seed: int = 0
) -> dict[str, ChainResult]:
    """Run ``x = x @ W_l`` (then ReLU where the setting says) for ``l = 1..depth``.

    ``x`` is ``randn(width, width)``; all settings share it and the same N(0, 1) draws
    (seeded with a ``torch.Generator``), so results are reproducible and comparable.
    """
    names = list(SETTINGS) if settings is None else list(settings)
    _check(depth, width, names, seed)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(width, width, generator=gen)
    draws = [torch.randn(width, width, generator=gen) for _ in range(depth)]
    results = {}
    for name in names:
        setting = SETTINGS[name]
        factor = setting.factor(width)
        mean = torch.empty(depth + 1, dtype=torch.float64)
        std = torch.empty(depth + 1, dtype=torch.float64)
        zero = inf = nan = None
        x = x0
        for layer in range(depth + 1):
            if layer:
                x = x @ (draws[layer - 1] * factor)
                if setting.relu:
                    x = torch.relu(x)  # relu(NaN) is NaN: NaN stays visible
            x64 = x.double()
            mean[layer], std[layer] = x64.mean(), x64.std()
            if zero is None and not x.any():
                zero = layer
            if inf is None and torch.isinf(x).any():
                inf = layer
            if nan is None and torch.isnan(x).any():
                nan = layer
        results[name] = ChainResult(setting, mean, std, zero, inf, nan)
    return results


def std_over_seeds(
    settings: Sequence[str] | None = None,
    depth: int = 50,
    width: int = 100,
    seeds: int = 10,
    on_seed: Callable[[int], object] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-layer std for seeds ``0..seeds-1``, shape ``(seeds, depth + 1)``: finite-width spread.

    At width ``n`` each layer multiplies the squared norm by a chi-squared(n)/n-like factor,
    so log(std) does a random walk: even the "right" scale drifts away from 1 at finite
    width, by a different amount for every seed. ``on_seed(seed)`` is called after each
    seed (for a progress bar).
    """
    names = list(SETTINGS) if settings is None else list(settings)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInputError(f"seeds must be a positive integer, got {seeds!r}")
    runs = []
    for seed in range(seeds):
        runs.append(matrix_chain(names, depth, width, seed))
        if on_seed is not None:
            on_seed(seed)
    return {n: torch.stack([r[n].std for r in runs]) for n in names}
