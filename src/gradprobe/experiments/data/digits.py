"""scikit-learn's digits: 1,797 8x8 images of handwritten digits, shipped inside scikit-learn.

``load_digits`` reads a file from scikit-learn's own package, so this works offline.
A seeded, stratified 80/20 split (1,437 train, 360 test); pixels (0-16) are centred and
scaled with the training set's global mean and std, so the images keep their contrast.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ._common import Split, check_count, check_seed

TOTAL, TEST = 1797, 360
N_TRAIN = TOTAL - TEST


@functools.cache
def _arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    # cached and never written to: every load indexes (copies) out of these arrays

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def load(n: int | None = None, n_test: int | None = None, seed: int = 0) -> Split:
    """Images (N, 1, 8, 8) float32, labels 0-9; ``n`` / ``n_test`` take the first of the
    shuffled training / test examples (at most 1,437 / 360)."""
    seed = check_seed(seed)
    n = TOTAL - TEST if n is None else check_count("n", n, TOTAL - TEST)
    n_test = TEST if n_test is None else check_count("n_test", n_test, TEST)
    images, labels = _arrays()
    rng = np.random.default_rng(seed)
    test_idx = np.concatenate(  # stratified: 36 test images of every digit
        [rng.permutation(np.flatnonzero(labels == c))[: TEST // 10] for c in range(10)]
    )
    train_idx = np.setdiff1d(np.arange(TOTAL), test_idx)
    train_idx, test_idx = rng.permutation(train_idx)[:n], rng.permutation(test_idx)[:n_test]
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    mean, std = x[train_idx].mean(), x[train_idx].std()
    return Split((x[train_idx] - mean) / std, y[train_idx], (x[test_idx] - mean) / std, y[test_idx])
