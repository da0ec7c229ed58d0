"""Loss-curve symptoms on synthetic curves whose answer is known by construction: the
diagnosis's judgement of the loss (``judge_losses``), and what gp.fix adds with the constant
prediction's loss (``loss_symptoms``), never the same kind twice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradprobe.fix.symptoms import judge_losses, loss_symptoms

REF = math.log(2)  # cross-entropy of the constant prediction on two balanced classes


def kinds(curve, ref=REF):
    """Every kind said of the curve: the diagnosis's warnings/errors, then gp.fix's own."""
    said = [f.kind for f in judge_losses(curve) if f.severity != "info"]
    return said + [s.kind for s in loss_symptoms(list(curve), ref) if s.kind not in said]


def test_a_healthy_curve_has_no_symptom():
    steps = np.arange(300)
    noise = np.random.default_rng(0).normal(0, 0.01, 300)
    assert kinds(0.69 * np.exp(-steps / 40) + 0.02 + np.abs(noise)) == []


def test_a_flat_curve_is_not_learning():
    assert kinds(np.full(300, 0.693)) == ["not_learning"]


def test_a_non_finite_loss_is_diverging_at_its_step():
    curve = [0.7] * 20 + [float("nan")]
    (f,) = judge_losses(curve)
    assert f.kind == "diverging" and f.step == 20 and f.severity == "error"
    assert loss_symptoms(curve, REF) == []  # said once, by the diagnosis


def test_a_rising_curve_is_diverging():
    assert kinds(np.linspace(0.7, 3.0, 300)) == ["diverging"]


def test_a_jumping_curve_is_oscillating():
    curve = np.where(np.arange(300) % 2 == 0, 0.2, 1.0)  # mean 0.6 < ref: learning, barely
    assert "oscillating" in kinds(curve)


def test_a_curve_still_falling_far_from_good_is_slow():
    steps = np.arange(300)
    assert kinds(0.69 - 0.25 * steps / 300) == ["slow_convergence"]


def test_a_short_curve_says_nothing():
    assert kinds([0.7, 0.7, 0.7]) == []


def test_without_a_reference_the_start_is_the_scale():
    assert kinds(np.full(300, 5.0), ref=None) == ["not_learning"]
    assert kinds(5.0 * np.exp(-np.arange(300) / 30), ref=None) == []
    assert kinds(5.0 - 2.0 * np.arange(300) / 300, ref=None) == ["slow_convergence"]


@pytest.mark.parametrize(
    ("curve", "kind"),
    [
        (np.full(300, 0.693), "not_learning"),
        (np.linspace(0.7, 3.0, 300), "diverging"),
        (np.where(np.arange(300) % 2 == 0, 0.2, 1.0), "oscillating"),
        ([0.7] * 20 + [float("nan")], "diverging"),
    ],
)
def test_fix_symptoms_duplicated_the_diagnosis_of_the_loss(curve, kind):
    """fix/symptoms.py had its own diverging, not_learning and oscillating beside those of
    diagnose/rules/loss.py: a trial's curve now gets the diagnosis's, and fix adds only what
    needs the constant prediction's loss, never a kind the diagnosis said."""
    said = {f.kind for f in judge_losses(curve)}
    assert kind in said
    own = {s.kind for s in loss_symptoms(list(curve), REF, judged=judge_losses(curve))}
    assert not own & said and own <= {"not_learning", "slow_convergence", "initial_loss"}


def test_a_plateau_just_below_the_prior_is_not_learning():
    """slow/circles-sgd-1e-3: the loss settled at 0.62 (ref 0.69, 50 % accuracy) and was
    called healthy when the threshold was 10 % below the constant prediction."""
    curve = np.concatenate([np.linspace(1.1, 0.63, 60), np.full(240, 0.62)])
    assert kinds(curve) == ["stalled", "not_learning"]  # the diagnosis's, then the prior's


def test_a_first_loss_far_above_the_prior_is_an_initial_loss_problem():
    """exploding/digitsimg-cnn-relu-std1: N(0, 1) conv weights start the cross-entropy at 90
    (ln 10 = 2.3 for the constant prediction); no layer finding fired at init, so no re-init
    was tried."""
    curve = np.concatenate([[90.0, 40.0, 10.0], np.linspace(3.0, 0.1, 297)])
    assert kinds(curve, ref=math.log(10)) == ["initial_loss"]
    assert kinds(np.linspace(1.1, 0.05, 300)) == []  # He init on 2 classes starts at ~1.6×


def test_a_high_first_loss_that_then_trains_well_is_only_a_note():
    """Healthy He-init nets on unscaled inputs (|x| up to 16) start above 3× the prior's loss
    and train well with Adam: three of them were flagged as unhealthy."""
    curve = np.concatenate([[9.0], np.linspace(2.0, 0.05, 299)])
    (s,) = loss_symptoms(list(curve), REF)
    assert s.kind == "initial_loss" and s.severity == "info"


def test_a_nan_loss_at_the_first_step_was_judged_by_nobody():
    """exploding/circles-exp5-sgd (5 exponential layers, SGD): the loss is NaN at step 0, the
    trial stops there, the diagnosis has one step (no curve) and no event (a trial's probe
    does not search): with fix's own diverging gone the baseline looked healthy and no remedy
    was tried. gp.fix says it when nothing else did, and only then."""
    (s,) = loss_symptoms([float("nan")], REF, judged=[])
    assert s.kind == "diverging" and s.step == 0 and s.severity == "error"
    (s,) = loss_symptoms([0.7, 0.6, float("inf")], REF, judged=[])
    assert s.kind == "diverging" and s.step == 2
    said = judge_losses([0.7] * 20 + [float("nan")])
    assert loss_symptoms([0.7] * 20 + [float("nan")], REF, judged=said) == []
