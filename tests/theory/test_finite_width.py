"""The finite-width spread of ‖h^l‖²/n across random networks: closed forms and bad input
(the Monte-Carlo comparison is in tests/reference/test_finite_width_mc.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradprobe.errors import InvalidInputError
from gradprobe.theory import norm_spread


def test_relu_spread_is_hanin_rolnick_exactly():
    # He-initialised ReLU: Var[p^L]/E[p^L]² = (1 + 2/n_L) Π_{l<L} (1 + 5/n_l) − 1 ≈ e^{5β} − 1
    widths = [64, 128, 512, 32, 256]
    s = norm_spread("relu", 2.0, 0.0, widths)
    factors = np.cumprod([1.0, *[1 + 5 / n for n in widths[:-1]]])
    exact = np.sqrt(factors * (1 + 2 / np.array(widths)) - 1)
    np.testing.assert_allclose(s.rel_std, exact, rtol=1e-6)
    np.testing.assert_allclose(s.mean, 1.0 * 2.0, rtol=1e-12)
    np.testing.assert_allclose(s.beta, np.cumsum(1 / np.array(widths)))


def test_spread_of_a_vanishing_linear_chain_is_scale_free():
    # regression: a second difference with an absolute step zeroed the curvature for q < 1e-8
    tiny = norm_spread("linear", 0.01, 0.0, 100, depth=50)  # q^50 = 1e-100
    flat = norm_spread("linear", 1.0, 0.0, 100, depth=50)
    np.testing.assert_allclose(tiny.rel_std, flat.rel_std, rtol=1e-6)


@pytest.mark.parametrize("widths", [[], [0, 3], [float("nan")], "wide"])
def test_bad_widths_are_refused(widths):
    with pytest.raises(InvalidInputError, match="widths"):
        norm_spread("relu", 2.0, 0.0, widths)
