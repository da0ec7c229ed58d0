"""What every data set shares: the Split tuple, argument checks, seeds for train and test."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ...errors import InvalidInputError


class Split(NamedTuple):
    """Train and test tensors: ``x`` float32, ``y`` int64 class labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def check_count(what: str, value: object, maximum: int | None = None) -> int:
    """``value`` as a positive int, else an InvalidInputError that says what to pass."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"{what}={value} is more than the {maximum} available; pass less")
    return int(value)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def child_seeds(seed: int, count: int = 2) -> list[int]:
    """Independent 63-bit seeds (train, test, ...) derived from one user seed.

    ``seed + 1`` would make seed 0's test set seed 1's training set; a SeedSequence
    does not.
    """
    state = np.random.SeedSequence([check_seed(seed), 0x67726164]).generate_state(count, np.uint64)
    return [int(s) >> 1 for s in state]


def balanced_labels(n: int, classes: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` labels, each class ``n // classes`` or one more times, in random order."""
    return (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
