"""A synthetic classification task for fast checks: Gaussian inputs, a random linear teacher.

``x ~ N(0, I_32)`` and ``y = argmax(x @ T)`` over 4 classes, with the teacher ``T`` drawn
from the seed, so train and test share it. Unit-variance inputs: what init theory assumes.
"""

from __future__ import annotations

import torch

from ._common import Split, check_count, child_seeds

DIM, CLASSES = 32, 4
N_TRAIN, N_TEST = 2_000, 500


def load(n: int | None = None, n_test: int | None = None, seed: int = 0) -> Split:
    """``n`` (default 2,000) training and ``n_test`` (default 500) test points, (N, 32)."""
    n = N_TRAIN if n is None else check_count("n", n)
    n_test = N_TEST if n_test is None else check_count("n_test", n_test)
    teacher_seed, data_seed = child_seeds(seed)
    teacher = torch.randn(DIM, CLASSES, generator=torch.Generator().manual_seed(teacher_seed))
    x = torch.randn(n + n_test, DIM, generator=torch.Generator().manual_seed(data_seed))
    y = (x @ teacher).argmax(1)
    return Split(x[:n], y[:n], x[n:], y[n:])
