"""Regression: a loss with a large constant offset that trains fine read ``not_learning``.

Cross-entropy + 100 under Adam learns as plain cross-entropy does (2.3 → 0.15 above the
offset), but it falls 2 % of its start (102.3 → 100.2), and the loss rule judged progress
as a share of the loss's absolute value: ``not_learning`` (warning) on both seeds. The
rule now judges the fall against the loss's own step-to-step noise first: a loss that
never fell beyond its noise is not learning whatever its level or sign; one that fell far
beyond it but little against its level is ambiguous from the loss alone (a classifier stuck
near chance, or a loss whose floor is far from 0), and the layers decide — without a cause
in them it is information.
"""

import dataclasses

import numpy as np
import pytest

from gradprobe.diagnose import diagnose

from ._judge import serious
from ._runs import decaying, training_run
from ._training_heldout4 import BROKEN, DROPPED, HEALTHY, train


def _noisy_add(values, sigma, seed=0):
    return values + sigma * np.random.default_rng(seed).standard_normal(values.size)


@pytest.mark.parametrize("seed", (0, 1))
def test_cross_entropy_plus_100_that_learns_is_not_not_learning(seed):
    run, losses = train(DROPPED["adam_ce_plus_100"], seed)
    assert losses[0] > 100 and min(losses) < 100.5  # it learnt: 2.3 → < 0.5 above the offset
    found = diagnose(run)
    assert serious(found) == [], [(f.kind, f.severity, f.message) for f in serious(found)]
    plain = {f.kind for f in serious(diagnose(train(HEALTHY["adam_ce"], seed)[0]))}
    assert plain == set()  # the same verdict as the loss without the offset


def test_an_offset_run_that_does_not_learn_is_still_not_learning():
    # StepLR(step_size=1) collapses the lr within a few steps: the loss stays at its start
    case = dataclasses.replace(BROKEN["steplr_collapse"], loss_offset=100.0)
    f = next(f for f in serious(diagnose(train(case, 0)[0])) if f.kind == "not_learning")
    assert f.severity == "warning" and not f.evidence["beyond_noise"]


def test_the_loss_rule_judges_the_fall_against_its_noise_not_its_level():
    fell = _noisy_add(decaying(200, 2.3, 0.2), 0.05)
    flat = _noisy_add(np.full(200, 2.3), 0.05)
    for offset in (0.0, 100.0, -50.0):
        kinds = {f.kind for f in diagnose(training_run(loss=fell + offset), rules="loss")}
        assert "not_learning" not in kinds or offset == 100.0, (offset, kinds)
        got = [
            f
            for f in diagnose(training_run(loss=flat + offset), rules="loss")
            if f.kind == "not_learning"
        ]
        assert got and got[0].severity == "warning", offset  # flat: not learning, any offset
        assert not got[0].evidence["beyond_noise"]
    # + 100: a 2 % fall, 40 sigmas: beyond the noise, with no cause in the layers -> info
    (f,) = [f for f in diagnose(training_run(loss=fell + 100.0)) if f.kind == "not_learning"]
    assert f.evidence["beyond_noise"] and f.evidence["fall_in_noise"] > 10
    assert f.severity == "info" and "offset" in f.message
