"""Fixed points, χ₁, depth scales and the critical line against literature values and
against iterating the maps themselves (an independent route to the same numbers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradprobe.errors import InvalidInputError
from gradprobe.theory import (
    c_star,
    chi_1,
    correlation_map,
    critical_sigma_w2,
    length_map,
    mean_field,
    q_star,
    xi_c,
    xi_q,
)


def test_relu_critical_point_is_exactly_he():
    # χ₁ = σ_w²/2 for ReLU: the He et al. 2015 point (2, 0), for any σ_b²
    assert critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, abs=1e-10)
    mf = mean_field("relu", 2.0, 0.0)
    assert mf.chi_1 == 2.0 * 0.5 and mf.phase == "critical"
    assert mf.xi_q == math.inf and mf.xi_c == math.inf
    assert mean_field("relu", 1.9, 0.0).phase == "ordered"
    assert mean_field("relu", 2.1, 0.0).phase == "chaotic"


def test_tanh_critical_line_through_one_zero_and_rising():
    assert critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-8)
    line = [critical_sigma_w2("tanh", b) for b in (0.0, 0.01, 0.05, 0.2, 0.5)]
    assert all(np.diff(line) > 0)
    # Schoenholz et al. 2017 use the critical tanh point (σ_w², σ_b²) = (1.76, 0.05)
    assert line[2] == pytest.approx(1.76, abs=0.005)


@pytest.mark.parametrize(
    ("act", "w", "b"),
    [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.3), ("gelu", 1.5, 0.05), ("erf", 2.0, 0.1)],
)
def test_q_star_is_the_limit_of_iterating_the_length_map(act, w, b):
    q = 1.0
    for _ in range(400):
        q = float(length_map(act, q, w, b))
    assert q_star(act, w, b) == pytest.approx(q, rel=1e-9)


def test_fixed_points_in_closed_form():
    # ReLU below criticality: q* = σ_b² / (1 − σ_w²/2); above it the length diverges
    assert q_star("relu", 1.5, 0.1) == pytest.approx(0.1 / 0.25, rel=1e-12)
    assert q_star("relu", 2.5, 0.0) == math.inf
    # tanh without bias in the ordered phase: the signal dies, q* = 0
    assert q_star("tanh", 0.8, 0.0) == 0.0
    # odd φ without bias in the chaotic phase decorrelates completely: c* = 0
    assert c_star("tanh", 2.0, 0.0) == pytest.approx(0.0, abs=1e-9)
    assert c_star("erf", 1.0, 0.05) == 1.0  # ordered: inputs converge


def _decay_length(seq, target):
    """-1/slope of log|x_l − target| over the tail of a sequence (what ξ means)."""
    err = np.abs(np.asarray(seq) - target)
    keep = err > 1e-11
    idx = np.arange(len(seq))[keep][5:]
    slope = np.polyfit(idx, np.log(err[keep][5:]), 1)[0]
    return -1 / slope


@pytest.mark.parametrize(("act", "w", "b"), [("tanh", 1.2, 0.05), ("erf", 1.5, 0.2)])
def test_xi_q_is_the_decay_length_of_the_length_map(act, w, b):
    qs, q = [], 3.0
    for _ in range(40):
        q = float(length_map(act, q, w, b))
        qs.append(q)
    assert _decay_length(qs, q_star(act, w, b)) == pytest.approx(xi_q(act, w, b), rel=0.02)


@pytest.mark.parametrize(("act", "w", "b"), [("tanh", 1.2, 0.05), ("erf", 2.5, 0.05)])
def test_xi_c_is_the_decay_length_of_the_correlation_map(act, w, b):
    target = c_star(act, w, b)
    cs, c = [], target - 0.2
    for _ in range(40):
        c = float(correlation_map(act, c, w, b))
        cs.append(c)
    assert _decay_length(cs, target) == pytest.approx(xi_c(act, w, b), rel=0.03)


def test_chi_1_derivative_by_autograd_matches_closed_form():
    # GELU has no closed-form kernel; a plain callable has no closed-form derivative either
    gelu_fn = lambda x: torch.nn.functional.gelu(x)  # noqa: E731
    assert chi_1(gelu_fn, 1.7, 0.1) == pytest.approx(chi_1("gelu", 1.7, 0.1), rel=1e-10)
    assert chi_1(torch.nn.Tanh(), 1.3, 0.0) == pytest.approx(chi_1("tanh", 1.3, 0.0), rel=1e-12)


def test_phase_labels_follow_chi_1():
    w_crit = critical_sigma_w2("tanh", 0.05)
    assert mean_field("tanh", w_crit, 0.05).phase == "critical"
    assert mean_field("tanh", 1.0, 0.05).phase == "ordered"
    assert mean_field("tanh", 2.5, 0.05).phase == "chaotic"
    assert mean_field("tanh", w_crit, 0.05).xi_c > 100


@pytest.mark.parametrize(("w", "b"), [(-1.0, 0.0), (1.0, -0.1), (math.nan, 0.0), ("1", 0.0)])
def test_bad_variances_are_refused(w, b):
    with pytest.raises(InvalidInputError, match="sigma_"):
        mean_field("tanh", w, b)
