"""The fourth held-out batch of training-time cases (issue 16,
tests/diagnose/_training_heldout4.py): runs in none of the corpus and the three earlier
batches, watched with watch()'s DEFAULT schedule, judged on symptom, cause, onset and remedy
over two seeds; the same configuration at two loss scales (×1000, ×1e-3), with an offset, or
at two widths on the same verdict; healthy runs — a negative log-likelihood, zero-initialised
heads and residual branches, frozen parameters, a branch without a gradient on some steps,
gradient accumulation, schedules to 0 — on zero warnings and errors. What each judged before
the fixes they led to is in docs/DIAGNOSIS.md ("Fourth held-out training check").

No line is drawn through a trained number: the assertions are about which finding is
reported, where, and when, on runs whose failure is far from every threshold.
"""

import numpy as np
import pytest

from gradprobe.diagnose import diagnose
from gradprobe.diagnose.finding import SYMPTOMS

from ._judge import REINIT, cached_runs, first, lr_in, no_reinit, serious
from ._runs import decaying, noisy, training_run
from ._training_heldout4 import BROKEN, HEALTHY, PAIRS, train

SEEDS = (0, 1)
slow = pytest.mark.slow

#: what a remedy's code changes, in the order it is looked for
FAMILIES = ("group['weight_decay']", "clip_grad_norm_", "q_norm", "group['lr']")


@pytest.fixture(scope="module")
def runs():
    return cached_runs(BROKEN, HEALTHY, train)


def verdict(findings):
    """(the symptoms' kinds, the first symptom's first cause, what its remedy changes): the
    part of a diagnosis that must not depend on the loss's scale, an offset or the width."""
    symptoms = [f for f in serious(findings) if f.kind in SYMPTOMS]
    if not symptoms:
        return ()
    s = symptoms[0]
    cause = s.causes[0].kind if s.causes else None
    family = next((k for k in FAMILIES if k in (s.remedy.code or "")), None)
    return (s.kind, cause, family)


@slow
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}~{p[1]}")
@pytest.mark.parametrize("seed", SEEDS)
def test_the_same_configuration_at_two_loss_scales_gets_the_same_verdict(runs, pair, seed):
    a, b = (verdict(runs(name, seed)[2]) for name in pair)
    assert a == b, (a, b)


@slow
@pytest.mark.parametrize("name", ["no_zero_grad_sgd", "no_zero_grad_sgd_x1e-3"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_forgotten_zero_grad_diverges_after_it_learnt(runs, name, seed):
    """Gradients summed over every step so far: the loss falls, then rises for good. (Its
    cause is not named: the probe cannot tell p.grad summed over steps from one step's.)"""
    _run, _, found = runs(name, seed)
    s = first(found, ("diverging",))
    assert s.onset > 20 and "non_finite" not in s.evidence
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_random_labels_are_not_blamed_on_the_layers(runs, seed):
    """Labels drawn at random: nothing to learn; the honest answer is that the layers look
    healthy — no cause invented, no init blamed."""
    _run, _, found = runs("random_labels_cnn", seed)
    s = first(found, ("not_learning",))
    assert s.onset == 0 and not s.causes
    assert "layers look healthy" in s.remedy.text and "labels" in s.remedy.text
    assert not any(r in (s.remedy.code or "") for r in REINIT) and not s.remedy.scheme
    assert not [f for f in serious(found) if f.kind not in SYMPTOMS]


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_sgd_5_on_a_batchnorm_cnn_wants_a_lower_lr(runs, seed):
    _run, _, found = runs("bn_cnn_sgd_5", seed)
    s = first(found, ("not_learning", "stalled", "oscillating", "loss_spike"))
    assert s.causes[0].kind == "large_updates" and s.causes[0].onset == 0
    assert lr_in(s.remedy.code) < 5.0
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_an_hf_gpt2_at_adam_3e_2_wants_warmup_and_a_lower_lr(runs, seed):
    _run, _, found = runs("gpt2_64_adam_3e-2", seed)
    s = first(found, ("not_learning", "stalled"))
    kinds = [c.kind for c in s.causes]
    assert "large_updates" in kinds
    assert next(c for c in s.causes if c.kind == "large_updates").onset == 0
    assert "LambdaLR" in s.remedy.code and lr_in(s.remedy.code) < 3e-2
    no_reinit(found)


@slow
@pytest.mark.parametrize("name", sorted(HEALTHY))
@pytest.mark.parametrize("seed", SEEDS)
def test_healthy_heldout4_runs_have_no_warning_or_error(runs, name, seed):
    run, losses, found = runs(name, seed)
    assert not serious(found), [str(f) for f in found]
    losses = np.asarray(losses)
    assert np.isfinite(losses).all()
    start, end = np.median(losses[:3]), np.median(losses[-20:])
    # it learned: 0.9× its start for a positive loss (of what it can lose: minus the offset),
    # and by a tenth of its start's size for a log-likelihood that goes below 0
    offset = HEALTHY[name].loss_offset
    assert end - offset < 0.9 * (start - offset) if end > 0 else end < start - 0.1 * abs(start)
    assert len(run.steps) < len(losses)  # watch()'s default: not every step logged


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_accumulation_over_4_micro_batches_is_the_32_batch_run(runs, seed):
    """Four backward passes of 8, one step: the same numbers as one batch of 32 (the same
    examples drawn), so the same verdict — the probe reads the summed gradient once."""
    a, b = runs("grad_accum_4", seed)[1], runs("sgd_ce", seed)[1]
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5)


# -- regressions, on runs written by hand (one per wrong verdict the held-out runs found) --------

_W = ["0.weight", "2.weight"]
_MODULES = [("0", "Linear", None), ("1", "ReLU", "relu"), ("2", "Linear", None)]
_LOGGED = [*range(20), *range(20, 200, 10)]


_SGD = {"type": "SGD", "groups": 1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0}


def _from_zero_run(first_norm):
    """SGD momentum on a falling loss; ``2.weight`` starts with norm ``first_norm`` and moves
    1/k of its norm at step k (a weight growing from 0: 1.7, 0.8, 0.5, ...), 1e-3 later;
    ``0.weight`` at the usual 1e-3 throughout."""
    logged = {}
    for s in _LOGGED:
        grown = 1.7 / s if 0 < s < 20 else 1e-3
        logged[s] = [
            ("0.weight", "update", "ratio", 1e-3),
            ("0.weight", "weight", "norm", 4.0),
            ("2.weight", "weight", "norm", first_norm if s == 0 else 0.01 * s),
            ("0.weight", "param_grad", "rms", 0.1),
            ("2.weight", "param_grad", "rms", 0.1),
        ] + ([("2.weight", "update", "ratio", grown)] if s > 0 else [])
    return training_run(
        loss=noisy(decaying(200, 2.3, 0.2), 0.02), lr=np.full(200, 0.05), logged=logged,
        modules=_MODULES, params=_W, meta={"optimizer": _SGD},
    )  # fmt: skip


def test_a_zero_initialised_weight_growing_from_0_was_large_updates():
    """A ResNet's zero-γ BatchNorm (Goyal et al. 2017) under SGD momentum: its norm is 0 at
    init, so step k moves it ~1/k of its norm — 1.7 at step 1 — and, logged on every one of
    the first 20 steps, those set its median too (0.11 > 0.1): a warning on a healthy run."""
    assert not [f for f in diagnose(_from_zero_run(0.0)) if f.kind == "large_updates"]
    # the same ratios on a weight that did not start at 0: its first step is too large
    (f,) = [f for f in diagnose(_from_zero_run(1e-3)) if f.kind == "large_updates"]
    assert f.layer == "2.weight" and f.severity in ("warning", "error")
