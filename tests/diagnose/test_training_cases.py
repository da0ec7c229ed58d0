"""The training-time corpus of issue 16, rebuilt small (tests/diagnose/_training.py): each
broken run, trained under gp.watch with its loss, over three seeds, must get the right
symptom in the loss, the right cause in the layers with its onset, and the remedy that
fits the cause — never a re-initialisation for a problem that began during training.

No line is drawn through a trained number: every assertion is about which finding the
diagnosis reports, where, and when, on runs whose failures are far from every threshold
(the measured spread is in docs/DIAGNOSIS.md, "Training-time").
"""

import math
import re

import numpy as np
import pytest

from gradprobe.diagnose import diagnose
from gradprobe.diagnose.finding import SYMPTOMS

from ._training import BROKEN, train

SEEDS = (0, 1, 2)
pytestmark = pytest.mark.slow


def serious(findings):
    return [f for f in findings if f.severity in ("warning", "error")]


def symptoms(findings, kinds):
    found = [f for f in serious(findings) if f.kind in kinds]
    assert found, [str(f) for f in findings]
    return found


def kind(findings, name):
    found = [f for f in serious(findings) if f.kind == name]
    assert found, f"no {name} in " + str([str(f) for f in findings])
    return found[0]


def no_reinit_for_training_problems(findings, first_step=0):
    """Re-initialising is the remedy only for what was there at the first step."""
    for f in serious(findings):
        if (f.onset or 0) > first_step:
            assert "gp.init.apply" not in (f.remedy.code or ""), str(f)


@pytest.fixture(scope="module")
def corpus():
    cache: dict = {}

    def get(name, seed):
        if (name, seed) not in cache:
            run, losses = train(BROKEN[name], seed)
            cache[name, seed] = (run, losses, diagnose(run))
        return cache[name, seed]

    return get


@pytest.mark.parametrize("seed", SEEDS)
def test_post_ln_without_warmup_needs_warmup_or_pre_ln(corpus, seed):
    _run, _, found = corpus("postln_no_warmup", seed)
    s = symptoms(found, ("not_learning", "stalled"))[0]
    assert s.causes[0].kind == "large_updates" and s.causes[0].onset == 0
    big = kind(found, "large_updates")
    assert big.onset == 0 and big.evidence["judged_on"] == "first steps"
    assert "warm" in s.remedy.text and "Pre-LN" in s.remedy.text
    assert "norm_first=True" in s.remedy.code and "LambdaLR" in s.remedy.code
    no_reinit_for_training_problems(found)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_qk_norm_at_a_high_lr_grows_the_attention_logits(corpus, seed):
    _run, _, found = corpus("no_qk_norm_high_lr", seed)
    s = symptoms(found, ("not_learning", "stalled"))[0]
    att = kind(found, "attention_logits")
    assert att.evidence["max_logit"] > 100 and att.onset > 0
    assert s.causes[0].kind == "attention_logits"
    assert "large_updates" in {c.kind for c in s.causes}
    assert "QK-norm" in s.remedy.text and "q_norm" in s.remedy.code
    assert "learning rate" in s.remedy.text
    no_reinit_for_training_problems(found)


@pytest.mark.parametrize("seed", SEEDS)
def test_gpt2_at_lr_3e_2_stalls_after_large_first_updates(corpus, seed):
    _run, _, found = corpus("gpt2_lr_3e-2", seed)
    s = symptoms(found, ("not_learning", "stalled"))[0]
    big = kind(found, "large_updates")
    assert big.onset == 0 and big.evidence["judged_on"] == "first steps"
    assert big.evidence["update_ratio"] > 4 * big.evidence["threshold"]
    assert "large_updates" in {c.kind for c in s.causes}
    assert "lower the learning rate" in s.remedy.text and "warm" in s.remedy.text
    no_reinit_for_training_problems(found)


@pytest.mark.parametrize("seed", SEEDS)
def test_fp16_overflow_is_named_before_the_first_nan(corpus, seed):
    run, _, found = corpus("fp16_overflow", seed)
    over = kind(found, "overflow")
    assert over.evidence["dtype"] == "float16" and over.onset <= 5
    assert "bfloat16" in over.remedy.text and "bfloat16" in over.remedy.code
    events = [e for e in run.events() if e.phase in ("forward", "backward")]
    if events:  # on some seeds the values overflow, on others they only come close
        assert over.onset <= events[0].step
    for f in found:
        if f.kind == "non_finite" and f.severity == "error":
            assert "65504" in f.remedy.text, str(f)  # not "log/sqrt/division/exp"


@pytest.mark.parametrize("seed", SEEDS)
def test_dying_relu_at_adam_lr_0_05_is_the_step_size(corpus, seed):
    _run, _, found = corpus("dying_relu", seed)
    dead = kind(found, "dead_units")
    assert dead.evidence["appeared"] == "during training" and dead.onset > 0
    assert dead.evidence["dead_fraction_at_first_step"] < 0.2
    assert "kaiming" not in (dead.remedy.code or "")
    assert "learning rate" in dead.remedy.text and "LeakyReLU" in dead.remedy.text
    assert kind(found, "large_updates").onset == 0
    no_reinit_for_training_problems(found)


@pytest.mark.parametrize("seed", SEEDS)
def test_sgd_lr_1_goes_nan_from_the_step_size(corpus, seed):
    _run, losses, found = corpus("sgd_lr_1_nan", seed)
    bad = int(np.argmax(~np.isfinite(losses)))
    s = symptoms(found, ("diverging",))[0]
    assert s.severity == "error" and s.evidence["non_finite"] and s.step == bad
    assert s.causes[0].kind in ("large_updates", "non_finite") and s.causes[0].onset == 0
    assert kind(found, "large_updates").onset == 0
    lr = re.search(r"group\['lr'\] = ([0-9.e-]+)", s.remedy.code)
    assert lr and float(lr.group(1)) < 0.1  # lower than the 1.0 it trained with
    no_reinit_for_training_problems(found)


@pytest.mark.parametrize("name", ["lstm_no_clip", "gru_no_clip"])
@pytest.mark.parametrize("seed", SEEDS)
def test_recurrent_nets_at_a_huge_lr_need_clipping_at_the_recorded_norm(corpus, name, seed):
    run, _losses, found = corpus(name, seed)
    s = symptoms(found, ("diverging",))[0]
    assert s.evidence["non_finite"]
    boom = next(f for f in serious(found) if f.kind == "exploding" and f.layer is None)
    assert boom.onset < s.step
    assert "exploding" in {c.kind for c in s.causes}
    norm = re.search(r"max_norm=([0-9.e+-]+)", s.remedy.code)
    assert norm and "clip_grad_norm_" in s.remedy.code
    # the norm of the healthy steps: the first ten, or those before it rose 10x its first
    norms = run.matrix("grad_norm", "global")[2][0]
    rose = int(np.argmax(~(norms <= 10 * norms[0])))
    healthy = norms[: min(rose, 10)]
    assert float(norm.group(1)) == pytest.approx(np.median(healthy), rel=0.05)
    no_reinit_for_training_problems(found)


@pytest.mark.parametrize("seed", SEEDS)
def test_sgd_at_a_too_high_lr_oscillates(corpus, seed):
    _run, _, found = corpus("sgd_oscillating", seed)
    s = symptoms(found, ("oscillating",))[0]
    assert s.evidence["amplitude"] > 1.5 * s.evidence["threshold"] * s.evidence["start_loss"]
    assert "large_updates" in {c.kind for c in s.causes}
    assert "learning rate" in s.remedy.text
    no_reinit_for_training_problems(found)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_too_small_lr_learns_too_slowly_and_is_told_to_raise_it(corpus, seed):
    _run, _, found = corpus("lr_too_small", seed)
    s = symptoms(found, ("not_learning",))[0]
    assert s.onset == 0 and s.causes[0].kind == "small_updates"
    new = re.search(r"group\['lr'\] = ([0-9.e-]+)", s.remedy.code)
    assert new and float(new.group(1)) > 10 * 1e-4


def test_every_symptom_kind_is_reached_by_the_corpus(corpus):
    seen = set()
    for name in BROKEN:
        seen |= {f.kind for f in serious(corpus(name, 0)[2]) if f.kind in SYMPTOMS}
    assert {"not_learning", "diverging", "oscillating"} <= seen, seen


def test_onsets_are_steps_of_the_run(corpus):
    for name in BROKEN:
        _run, losses, found = corpus(name, 0)
        for f in found:
            if f.onset is not None:
                assert 0 <= f.onset < len(losses) and not math.isnan(f.onset)
