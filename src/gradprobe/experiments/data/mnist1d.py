"""MNIST-1D (Greydanus 2020, arXiv:2011.14439), generated from its published recipe.

Ten 12-point templates of "digits" (the values of the reference package ``mnist1d``,
Apache-2.0) are padded with 36-60 zeros, stretched to 72 points, scaled by
1 +/- 0.2, shifted circularly by 0-47 points; the zero padding gets correlated noise
(Gaussian-filtered, sigma 2, scale 0.25), everything gets iid noise (0.02) and a random
linear shear (+/- 0.375), and the result is resampled to 40 points. Vectorised in
numpy: the same distribution as the reference generator, not the same numbers (it uses
numpy's global seed and its own loop order). Nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from ._common import Split, check_count, check_seed, child_seeds

LENGTH = 40
TEMPLATE_LEN, PADDING, STRETCHED = 12, (36, 60), 72
SCALE_COEFF, MAX_TRANSLATION = 0.4, 48
CORR_NOISE, IID_NOISE, SHEAR = 0.25, 2e-2, 0.75
N_TRAIN, N_TEST = 4_000, 1_000  # the reference split
_DIGITS = [
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
]


def templates() -> np.ndarray:
    """The 10 templates (10, 12): whitened, starting and ending at 0, divided by 6."""
    x = np.asarray(_DIGITS, dtype=np.float64)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return (x - x[:, :1]) / 6.0


def _resample(x: np.ndarray, lengths: np.ndarray, points: int) -> np.ndarray:
    """Linear interpolation of each row's first ``lengths[i]`` values onto ``points`` points."""
    pos = np.linspace(0, 1, points)[None, :] * (lengths[:, None] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, lengths[:, None] - 1)
    frac = pos - lo
    return np.take_along_axis(x, lo, 1) * (1 - frac) + np.take_along_axis(x, hi, 1) * frac


def generate(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` raw signals ``x`` (N, 40) float32 (not normalised) and labels ``y`` (N,), balanced."""
    n, seed = check_count("n", n), check_seed(seed)
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 10)
    x = np.zeros((n, STRETCHED))
    x[:, :TEMPLATE_LEN] = templates()[y] + 1e-8  # + eps: the template is never "padding"
    pad = rng.integers(PADDING[0], PADDING[1] + 1, n)
    x = _resample(x, TEMPLATE_LEN + pad, STRETCHED)
    x *= 1 + SCALE_COEFF * (rng.random((n, 1)) - 0.5)
    shift = rng.integers(0, MAX_TRANSLATION, n)
    x = np.take_along_axis(x, (np.arange(STRETCHED)[None, :] - shift[:, None]) % STRETCHED, 1)
    corr = gaussian_filter1d(CORR_NOISE * rng.standard_normal(x.shape), 2, axis=1)
    x = np.where(x != 0, x, corr) + IID_NOISE * rng.standard_normal(x.shape)
    x -= SHEAR * (rng.random((n, 1)) - 0.5) * np.linspace(-0.5, 0.5, STRETCHED)[None, :]
    x = _resample(x, np.full(n, STRETCHED), LENGTH)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


def load(n: int | None = None, n_test: int | None = None, seed: int = 0) -> Split:
    """4,000 training and 1,000 test signals by default (the reference split), both
    centred and scaled with the training set's mean and std."""
    train_seed, test_seed = child_seeds(seed)
    x, y = generate(N_TRAIN if n is None else n, train_seed)
    x_test, y_test = generate(N_TEST if n_test is None else n_test, test_seed)
    mean, std = x.mean(), x.std()
    return Split((x - mean) / std, y, (x_test - mean) / std, y_test)
