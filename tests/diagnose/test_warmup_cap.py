"""Regression: the step-size remedy's warm-up had no cap. Its length was the first update
ratio over TARGET_EARLY_RATIO, so SGD at lr 1.0 (ratios of ~14) was told to warm up over
1,400 steps of a 200-step run, and a 60-step run over 200. It is now capped at the run's
length and, under Adam and its kin, at 2/(1 − β₂) steps (Ma & Yarats 2021)."""

import re

import pytest

from gradprobe.diagnose import diagnose
from gradprobe.diagnose.training import warmup_steps

from ._training import BROKEN, train


def _warmups(found):
    return [
        int(m.group(1))
        for f in found
        if f.remedy is not None and f.remedy.code
        for m in [re.search(r"/ (\d+)\)\)", f.remedy.code)]
        if m
    ]


@pytest.mark.parametrize("name", ["sgd_lr_1_nan", "fp16_overflow"])
def test_the_warm_up_is_never_longer_than_the_run(name):
    run = train(BROKEN[name], 0)[0]
    steps = run.meta["closed_at_step"]
    found = _warmups(diagnose(run))
    assert found, "no warm-up was proposed"
    assert max(found) <= steps, (found, steps)


def test_adam_warm_up_is_capped_at_two_over_one_minus_beta2():
    assert warmup_steps(1e3) == 100_000  # uncapped: the ratio over the target
    assert warmup_steps(1e3, beta2=0.999) == 2000
    assert warmup_steps(1e3, beta2=0.99) == 200
    assert warmup_steps(1e3, run_steps=300, beta2=0.999) == 300
    assert warmup_steps(0.5) == 100  # small ratios keep the 100-step floor
