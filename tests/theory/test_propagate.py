"""propagate(): shapes, the ReLU closed form, and bad input (the Monte-Carlo comparison is in
tests/reference/test_propagate_mc.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradprobe.errors import InvalidInputError
from gradprobe.theory import propagate


def test_propagate_shapes_and_closed_form():
    p = propagate("relu", 1.5, 0.1, depth=30, q0=2.0)
    assert p.depth == 30 and p.q.shape == p.chi.shape == p.grad_var.shape == (30,)
    # ReLU: q^l = 0.75 q^{l−1} + 0.1 from q^1 = 1.5·2 + 0.1; χ = 0.75 in every layer
    expect = [3.1]
    for _ in range(29):
        expect.append(0.75 * expect[-1] + 0.1)
    np.testing.assert_allclose(p.q, expect, rtol=1e-12)
    assert p.gradient_ratio == pytest.approx(0.75**29, rel=1e-12)
    assert p.grad_var[-1] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"depth": 0}, "depth"), ({"depth": 2.5}, "depth"), ({"q0": -1.0}, "q0")],
)
def test_propagate_refuses_bad_input(kwargs, match):
    args = {"activation": "tanh", "sigma_w2": 1.0, "sigma_b2": 0.0, "depth": 10, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        propagate(**args)
