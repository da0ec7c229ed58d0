"""Offline data sets, all generated or shipped with a dependency: nothing is downloaded.

>>> from gradprobe.experiments import data
>>> x_train, y_train, x_test, y_test = data.load("shapeset", n=90, n_test=18, seed=0)
>>> x_train.shape, data.names()
(torch.Size([90, 1, 32, 32]), ['shapeset', 'digits', 'mnist1d', 'synthetic'])
"""

from __future__ import annotations

from collections.abc import Callable

from ..._registry import Registry
from . import digits, mnist1d, shapeset, synthetic
from ._common import Split, check_count, check_seed

DATASETS: Registry[Callable[..., Split]] = Registry("dataset")
DATASETS.register("shapeset", shapeset.load)
DATASETS.register("digits", digits.load)
DATASETS.register("mnist1d", mnist1d.load)
DATASETS.register("synthetic", synthetic.load)
_TRAIN_SIZES = {
    "shapeset": shapeset.N_TRAIN, "digits": digits.N_TRAIN, "mnist1d": mnist1d.N_TRAIN,
    "synthetic": synthetic.N_TRAIN,
}  # fmt: skip


def load(
    name: str,
    n: int | None = None,
    *,
    n_test: int | None = None,
    seed: int = 0,
    flatten: bool = False,
) -> Split:
    """Training and test tensors of the data set ``name`` (see :func:`names`).

    ``n`` / ``n_test``: how many training / test examples (None: the data set's default).
    ``flatten``: inputs as (N, features), as an MLP wants them.
    """
    loader = DATASETS.get(name)
    if n is not None:
        check_count("n", n)
    if n_test is not None:
        check_count("n_test", n_test)
    split = loader(n=n, n_test=n_test, seed=check_seed(seed))
    if flatten:
        split = Split(*(t.flatten(1) if t.is_floating_point() else t for t in split))
    return split


def train_size(name: str) -> int | None:
    """How many training examples ``load(name)`` returns by default, without loading them
    (None for a data set registered elsewhere, whose size is known only once loaded)."""
    DATASETS.get(name)  # an unknown name: the registry's error, with the close matches
    return _TRAIN_SIZES.get(name)


def names(pattern: str | None = None) -> list[str]:
    """Registered data sets, filtered by a glob ``pattern``."""
    return DATASETS.names(pattern)


__all__ = ["DATASETS", "Split", "load", "names", "train_size"]
