"""The fifth held-out batch of training-time cases (issue 16,
tests/diagnose/_training_heldout5.py): runs in none of the corpus and the four earlier
batches, watched with watch()'s DEFAULT schedule (one case without ``optimizer=``, two with
a probe closed by hand), judged on symptom, cause, onset and remedy over two seeds; the same
configuration at two widths, image sizes or loss scales on the same verdict; healthy runs —
a 2-layer LSTM with dropout, a bidirectional GRU, a gated linear recurrence, a causal
convolution LM, ConvNeXt 7×7, a Hugging Face ViT, experts in repeated blocks, Poisson and
multi-task and contrastive losses, a float16 layer, NAdam/RAdam/Adamax — on zero warnings
and errors. What each judged before the fixes it led to is in the commit messages.

No line is drawn through a trained number: the assertions are about which finding is
reported, where, and when, on runs whose failure is far from every threshold.
"""

import numpy as np
import pytest

from gradprobe.diagnose import diagnose
from gradprobe.diagnose.finding import SYMPTOMS

from ._judge import cached_runs, first, lr_in, no_reinit, serious, verdict
from ._runs import Event, decaying, noisy, training_run
from ._training_heldout5 import BROKEN, HEALTHY, PAIRS, train

SEEDS = (0, 1)
slow = pytest.mark.slow

#: what a remedy's code changes, in the order it is looked for
FAMILIES = ("clip_grad_norm_", "q_norm", "bfloat16", "swap_activations", "group['lr']")

#: broken runs whose verdict differs between the seeds for a reason of the run, not of the
#: diagnosis (judged on what both seeds share in their own test)
SEED_DEPENDENT = {
    # seed 0 stalls at 3.28 with the attention logits past 100; seed 1's loss still creeps
    # down (3.62 → 3.19) with the same logits: no symptom yet, the cause a warning
    "sdpa_lm_adam_0.1",
}

LOSSY = ("not_learning", "stalled", "diverging", "oscillating", "loss_spike")


@pytest.fixture(scope="module")
def runs():
    return cached_runs(BROKEN, HEALTHY, train)


@slow
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}~{p[1]}")
@pytest.mark.parametrize("seed", SEEDS)
def test_the_same_configuration_at_two_sizes_gets_the_same_verdict(runs, pair, seed):
    """Symptom or none, its first cause, the change its remedy makes (the third batch's
    size pairs' verdict): the width moves a warm-up's blow-up from "learnt, then lost it"
    (diverging) to "never really learnt" (not_learning) on one seed, both the same failure."""
    a, b = (verdict(runs(name, seed)[2], FAMILIES, symptom_kind=False) for name in pair)
    assert a == b, (a, b)


@slow
@pytest.mark.parametrize("name", sorted(set(BROKEN) - SEED_DEPENDENT))
def test_a_broken_run_gets_the_same_verdict_on_both_seeds(runs, name):
    a, b = (verdict(runs(name, seed)[2], FAMILIES, symptom_kind=False) for seed in SEEDS)
    assert a and a == b, (a, b)


FAST = [("nadam_0.5", 0.5), ("radam_1", 1.0), ("adamax_0.5", 0.5), ("by_hand_moe_adam_1", 1.0)]


@slow
@pytest.mark.parametrize("name, lr", FAST)
@pytest.mark.parametrize("seed", SEEDS)
def test_an_adaptive_optimiser_far_too_fast_wants_a_lower_lr(runs, name, lr, seed):
    """NAdam, RAdam, Adamax, Adam on experts: the first steps move every weight by a large
    share of its norm; the step size is the cause, from the first steps, not the init."""
    _run, _, found = runs(name, seed)
    s = first(found, LOSSY)
    assert s.causes[0].kind == "large_updates" and s.causes[0].onset <= 20, s.causes
    assert lr_in(s.remedy.code) < lr / 10
    no_reinit(found)


@slow
@pytest.mark.parametrize("name, lr", [("nadam_1e-6_convnext", 1e-6),
                                      ("adamax_1e-6_gated_lm", 1e-6),
                                      ("no_opt_sgd_1e-5", 1e-5)])  # fmt: skip
@pytest.mark.parametrize("seed", SEEDS)
def test_a_learning_rate_far_too_small_is_told_to_rise(runs, name, lr, seed):
    run, _, found = runs(name, seed)
    s = first(found, ("not_learning",))
    assert s.onset == 0 and s.causes[0].kind == "small_updates" and s.causes[0].onset == 0
    assert lr_in(s.remedy.code) > 30 * lr
    if BROKEN[name].no_optimizer:  # the lr came from probe.step(lr=)
        assert not run.meta.get("optimizer")
        assert len(run.to_pandas().query("quantity == 'lr'")) == BROKEN[name].steps


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_twelve_sigmoid_layers_vanish_from_the_start(runs, seed):
    _run, _, found = runs("deep_sigmoid_momentum", seed)
    s = first(found, ("not_learning",))
    assert s.onset == 0 and s.causes[0].kind == "vanishing" and s.causes[0].onset == 0
    assert "swap_activations" in s.remedy.code


@slow
@pytest.mark.parametrize("name", ["lstm2_sgd_no_clip", "bigru_sgd_no_clip"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_recurrent_net_without_clipping_explodes_and_wants_a_clip(runs, name, seed):
    _run, _, found = runs(name, seed)
    s = first(found, ("diverging",))
    assert s.onset <= 10 and s.causes[0].kind == "exploding" and s.causes[0].onset <= 10
    assert "clip_grad_norm_" in s.remedy.code
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_a_log_of_a_negative_value_mid_run_is_named_where_and_when(runs, seed):
    _run, losses, found = runs("log_negative_at_120", seed)
    s = first(found, ("diverging",))
    assert s.onset == 120 == int(np.argmax(~np.isfinite(losses)))
    cause = s.causes[0]
    assert (cause.kind, cause.layer, cause.onset) == ("non_finite", "3", 120)
    assert "log" in s.remedy.text and "clamp" in s.remedy.text
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_a_float16_layer_that_overflows_is_told_its_range(runs, seed):
    _run, _, found = runs("half_overflow_at_100", seed)
    s = first(found, ("diverging",))
    assert s.onset == 100
    assert (s.causes[0].kind, s.causes[0].layer, s.causes[0].onset) == ("non_finite", "2", 100)
    assert "65504" in s.remedy.text and "bfloat16" in s.remedy.text
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_relus_killed_by_a_bias_shift_at_step_100_are_dated(runs, seed):
    _run, _, found = runs("bias_shift_dead_at_100", seed)
    s = first(found, LOSSY)
    assert 90 <= s.onset <= 100
    dead = s.causes[0]
    assert dead.kind == "dead_units" and dead.onset == 100
    # no optimizer step moved the biases 0.8 -> 226: it is not the learning rate
    assert "outside opt.step()" in s.remedy.text and "group['lr']" not in (s.remedy.code or "")
    no_reinit(found)


@slow
@pytest.mark.parametrize("name", ["warmup_to_0.3", "warmup_to_0.3_w256"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_warmup_to_a_far_too_high_peak_wants_a_lower_peak(runs, name, seed):
    """A linear warm-up from 1e-3 to 0.3 over 50 steps (LinearLR's shape with a small
    start_factor): the run learns, then blows up as the lr rises. It is a ramp, not a jump
    to undo at its first step: lower the peak it climbs to."""
    _run, _, found = runs(name, seed)
    s = first(found, ("diverging", "not_learning"))
    assert "jumped" not in s.remedy.text and "warm-up" in s.remedy.text
    assert s.causes[0].kind == "large_updates" and s.causes[0].onset <= 20
    assert 1e-4 <= lr_in(s.remedy.code) <= 0.3 / 10  # under the peak, not training stopped
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_onecycle_to_a_far_too_high_peak_wants_a_lower_peak(runs, seed):
    """OneCycleLR(max_lr=2) under SGD momentum: its cosine ramp takes the lr from 0.08 to 2
    by step 59; the updates are large from step ~18 on the way up."""
    _run, _, found = runs("onecycle_peak_2", seed)
    s = first(found, LOSSY)
    assert s.causes[0].kind == "large_updates" and s.causes[0].onset <= 30
    assert "warm-up raises the lr" in s.remedy.text and lr_in(s.remedy.code) < 2.0 / 10
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_a_3_layer_lstm_at_adam_0_1_wants_a_lower_lr_before_a_clip(runs, seed):
    """Adam's first step moves each weight by ≈ lr per element: 1.4× the LSTM's weights'
    norm. The gradient explodes through time after it, but clipping its norm would not
    shrink Adam's step: the learning rate first, the clip as well."""
    _run, _, found = runs("lstm3_adam_0.1", seed)
    s = first(found, ("not_learning", "diverging"))
    assert s.causes[0].kind == "large_updates" and s.causes[0].onset == 0
    assert "exploding" in [c.kind for c in s.causes] and lr_in(s.remedy.code) < 0.01
    assert s.remedy.code.index("group['lr']") < s.remedy.code.index("clip_grad_norm_")
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_an_exp_output_overflowing_in_the_loss_is_the_step_size(runs, seed):
    """Poisson regression on a log-rate at Adam 0.3: the first step sends the output to
    ~1e2-1e3 and the loss's exp(output) to Inf. The loss is where it turned Inf; the step
    size is what to change."""
    _run, _, found = runs("poisson_adam_0.3", seed)
    s = first(found, ("diverging",))
    assert s.onset == 1 and s.evidence.get("non_finite")
    assert [c.kind for c in s.causes][:2] == ["non_finite", "large_updates"]
    assert "exp" in s.remedy.text and lr_in(s.remedy.code) < 0.03


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_attention_logits_without_qk_norm_are_found_in_handwritten_sdpa(runs, seed):
    _run, _, found = runs("sdpa_lm_adam_0.1", seed)
    logits = first(found, ("attention_logits",))
    assert logits.layer.endswith(".attn") and "q_norm" in logits.remedy.code
    symptoms = [f for f in serious(found) if f.kind in SYMPTOMS]
    for s in symptoms:
        assert s.causes[0].kind == "attention_logits" and "q_norm" in s.remedy.code


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_a_deep_post_ln_vit_at_1e_2_wants_pre_ln_or_warmup(runs, seed):
    _run, _, found = runs("postln_vit6_adam_1e-2", seed)
    s = first(found, ("not_learning", "stalled"))
    assert "norm_first=True" in s.remedy.code and "LambdaLR" in s.remedy.code
    assert lr_in(s.remedy.code) < 1e-2
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_a_clip_by_value_far_below_the_gradient_is_named(runs, seed):
    _run, _, found = runs("clip_value_1e-6", seed)
    s = first(found, ("not_learning",))
    assert s.onset == 0 and s.causes[0].kind == "small_updates"
    assert "clip_grad_value_" in s.remedy.text and "group['lr']" not in s.remedy.code


@slow
@pytest.mark.parametrize("name", sorted(HEALTHY))
@pytest.mark.parametrize("seed", SEEDS)
def test_healthy_heldout5_runs_have_no_warning_or_error(runs, name, seed):
    run, losses, found = runs(name, seed)
    assert not serious(found), [str(f) for f in found]
    losses = np.asarray(losses)
    assert np.isfinite(losses).all()
    start, end = np.median(losses[:3]), np.median(losses[-20:])
    # it learned: 0.9× its start, or by a tenth of its start's size for a loss below 0
    assert end < 0.9 * start if end > 0 else end < start - 0.1 * abs(start)
    assert len(run.steps) < len(losses)  # watch()'s default: not every step logged


# -- regressions, on runs written by hand (one per wrong verdict the held-out runs found) --------

_W = ["0.weight", "2.weight"]
_LOGGED = [*range(20), *range(20, 200, 10)]
_ADAM = {"type": "Adam", "groups": 1, "weight_decay": 0.0}


def _run(loss, lr, ratio, extra=None, events=(), meta=_ADAM):
    """A run of 200 steps: the loss and lr given per step, both weights moving ``ratio(s)``
    of their norm at each logged step ``s``, ``extra(s)`` more rows."""
    logged = {
        s: [
            *(row for w in _W for row in [(w, "update", "ratio", ratio(s)),
                                          (w, "weight", "norm", 4.0),
                                          (w, "param_grad", "rms", 0.1)]),
            *((extra or (lambda s: []))(s)),
        ]
        for s in _LOGGED
    }  # fmt: skip
    return training_run(
        loss=loss, lr=lr, grad_norm=np.full(len(loss), 0.5), logged=logged, params=_W,
        events=events, meta={"optimizer": meta},
    )  # fmt: skip


def _learnt_then_lost(n=200, best=40):
    """A loss that falls 2.3 → 0.4 by step ``best``, then rises back to 2.3 for good."""
    steps = np.arange(n)
    down = 0.4 + 1.9 * np.exp(-steps / 10)
    up = 2.3 - 1.9 * np.exp(-(steps - best) / 5)
    return noisy(np.where(steps < best, down, up), 0.02)


def _ramp(n=200, start=1e-3, peak=0.3, warm=50):
    return start + (peak - start) * np.minimum(1.0, np.arange(n) / warm)


def test_a_warmup_from_a_small_start_was_read_as_an_lr_jump_regression():
    """LinearLR-like warm-up 1e-3 → 0.3 over 50 steps: ×7 at its first step. It was "the
    learning rate jumped 6.98× at step 1: keep it near 0.001", as if a schedule bug had
    raised it once; the rise goes on, so it is a ramp, whose peak is what to lower."""
    from gradprobe.diagnose.context import Context
    from gradprobe.diagnose.thresholds import Thresholds
    from gradprobe.diagnose.training import lr_jumps

    run = _run(_learnt_then_lost(), _ramp(), lambda s: 0.15 if s < 40 else 0.05)
    assert lr_jumps(Context(run, Thresholds())) == []
    s = first(diagnose(run), ("diverging",))
    assert "jumped" not in s.remedy.text and "warm-up raises the lr" in s.remedy.text
    assert lr_in(s.remedy.code) < 0.3 / 10 and s.remedy.code.count("group['lr']") == 1
    # a jump that stays (×30 at step 150, flat before and after) is still a jump
    jump = np.where(np.arange(200) < 150, 0.05, 1.5)
    assert lr_jumps(Context(_run(_learnt_then_lost(), jump, lambda s: 1e-3), Thresholds())) == [
        (150, 0.05, 1.5)
    ]


def test_updates_held_at_a_tenth_of_the_norm_were_no_large_updates_regression():
    """RAdam at lr 1: no first step over 0.25 of a weight's norm, but every one of the first
    20 moved 10-20 % (100× the usual): the run diverged and its causes were only the dead
    units 30-60 steps later. Held large early steps are large updates."""
    run = _run(_learnt_then_lost(), np.full(200, 1.0), lambda s: 0.15 if 5 <= s < 20 else 0.02)
    s = first(diagnose(run), ("diverging",))
    big = s.causes[0]
    assert big.kind == "large_updates" and big.onset == 5
    assert lr_in(s.remedy.code) < 0.1
    # Adam's usual first steps (0.05 falling to 1e-3) on a loss that falls: nothing
    calm = _run(noisy(decaying(), 0.02), np.full(200, 1e-3), lambda s: 0.05 / (1 + s))
    assert not [f for f in diagnose(calm) if f.kind == "large_updates"]


def test_two_learning_rates_in_one_remedy_regression():
    """The first cause's remedy set the lr read at its step, the second cause's (units that
    died at step 50) the lr read at its own, later step of a rising schedule: both lines
    were in the code (``group['lr'] = 0.001`` and ``= 0.1``)."""

    def dead(s):
        return [("1", "activation", "dead", 0.9 if s >= 50 else 0.02),
                ("1", "activation", "dead_samples", 32.0)]  # fmt: skip

    run = _run(_learnt_then_lost(), _ramp(), lambda s: 0.15 if s < 40 else 0.05, dead)
    s = first(diagnose(run), ("diverging",))
    assert [c.kind for c in s.causes][:2] == ["large_updates", "dead_units"]
    assert "Also:" in s.remedy.text and s.remedy.code.count("group['lr']") == 1


_FP_MODULES = [("0", "Linear", None), ("1", "ReLU", "relu"), ("2", "HalfLayer", None),
               ("2.lin", "Linear", None), ("3", "Linear", None)]  # fmt: skip


def _inf_at_100(entering):
    """A HalfLayer "2" whose output holds Inf at step 100, its sub-module "2.lin" having
    given it finite values up to ``entering``."""
    event = Event(100, "forward", "2", "the output of 2 contained NaN/Inf (0.7 of its values)")
    loss = np.concatenate([decaying(100), np.full(100, np.nan)])

    def extra(s):
        return [("2.lin", "activation", "max_abs", entering if s == 100 else 5.0),
                ("2", "activation", "max_abs", np.inf if s >= 100 else 5.0)]  # fmt: skip

    return training_run(
        loss=loss, lr=np.full(200, 1e-3), grad_norm=np.full(200, 0.5),
        logged={s: [*extra(s), *((w, "update", "ratio", 1e-3) for w in _W)] for s in _LOGGED},
        modules=_FP_MODULES, params=_W, events=[event], meta={"optimizer": _ADAM},
    )  # fmt: skip


def test_a_float16_cast_inside_a_module_was_blamed_on_log_sqrt_regression():
    """A layer that computes in float16 (``.half()`` inside its forward) turned values up to
    5.9e5 into Inf: the remedy was "a log or sqrt of a value ≤ 0 ... or compute in float32
    under autocast". Finite values past 65504 going in, ±Inf out: float16's range."""
    (nan,) = [f for f in diagnose(_inf_at_100(5.9e5)) if f.kind == "non_finite"]
    assert "65504" in nan.remedy.text and "bfloat16" in nan.remedy.code
    # the same Inf from values float16 holds (a log of a value <= 0): not its range
    (log,) = [f for f in diagnose(_inf_at_100(30.0)) if f.kind == "non_finite"]
    assert "65504" not in log.remedy.text and "log" in log.remedy.text


def _loss_inf_at_1(output):
    """The loss Inf at step 1 while the model's output (module "2") was finite: ``output``."""
    detail = ("the gradient w.r.t. the output of 2 was already NaN/Inf (1 of its values) when "
              "it arrived (from the loss or an operation outside any module)")  # fmt: skip
    loss = np.concatenate([[1.0], np.full(199, np.nan)])
    logged = {
        s: [("2", "activation", "max_abs", output if s == 1 else 1.0 if s == 0 else np.nan),
            *((w, "update", "ratio", 1e-3) for w in _W)]
        for s in _LOGGED
    }  # fmt: skip
    return training_run(
        loss=loss, lr=np.full(200, 1e-3), grad_norm=np.full(200, 0.5), logged=logged,
        params=_W, events=[Event(1, "backward", "2", detail)], meta={"optimizer": _ADAM},
    )  # fmt: skip


def test_exp_of_a_huge_output_in_the_loss_was_not_named_regression():
    """A Poisson NLL on a log-rate: the output reached 4e3 and exp(4e3) is Inf; the remedy
    named a log of 0, a division by 0 and cross-entropy on logits, never the exp."""
    (nan,) = [f for f in diagnose(_loss_inf_at_1(4035.0)) if f.kind == "non_finite"]
    assert nan.layer == "(loss)" and "exp" in nan.remedy.text and "clamp" in nan.remedy.code
    (small,) = [f for f in diagnose(_loss_inf_at_1(3.0)) if f.kind == "non_finite"]
    assert "exp of anything" not in small.remedy.text


def test_a_clip_by_value_was_not_named_regression():
    """clip_grad_value_(1e-6) shrinks the step as a tiny max_norm does; the remedy named
    only clip_grad_norm_'s max_norm, which the loop does not call."""
    from gradprobe.diagnose.context import Context
    from gradprobe.diagnose.thresholds import Thresholds
    from gradprobe.diagnose.training import unclip

    ctx = Context(_run(noisy(np.full(200, 2.3), 0.01), np.full(200, 0.1), lambda s: 1e-6),
                  Thresholds())  # fmt: skip
    remedy = unclip(ctx, 1e-6, 1e-4, 0.6)
    assert "clip_grad_value_" in remedy.text and "clip_grad_norm_" in remedy.code


def test_a_cause_long_after_the_symptom_added_its_remedy_regression():
    """A loss that never fell from step 0 after large first updates, and a gradient spike
    at step 150: the spike's clip was added to the not_learning's remedy ("Also: clip"), so
    one width of a warm-up run was told to clip and the other not. A cause that began long
    after the symptom stays in its list, but its change is not the symptom's."""
    norms = np.where(np.arange(200) >= 150, 500.0, 0.5)
    loss = noisy(np.full(200, 2.3), 0.01)
    logged = {
        s: [(w, "update", "ratio", 0.5 if s < 5 else 1e-3) for w in _W]
        + [(w, "weight", "norm", 4.0) for w in _W]
        for s in _LOGGED
    }
    run = training_run(
        loss=loss, lr=np.full(200, 1e-2), grad_norm=norms, logged=logged, params=_W,
        meta={"optimizer": _ADAM},
    )  # fmt: skip
    s = first(diagnose(run), ("not_learning",))
    kinds = [c.kind for c in s.causes]
    assert kinds[0] == "large_updates" and "exploding" in kinds
    assert "clip_grad_norm_" not in s.remedy.code and lr_in(s.remedy.code) < 1e-2


def _recurrent_run(meta):
    """An LSTM LM whose first step moves its weights by 1.4× their norm and whose gradient
    norm grows 1000× from step 5, the loss flat at ln 32."""
    modules = [("emb", "Embedding", None), ("rnn", "LSTM", None), ("head", "Linear", None)]
    params = ["rnn.weight_ih_l0", "head.weight"]
    logged = {
        s: [(w, "update", "ratio", 1.4 if s == 0 else 1e-3) for w in params]
        + [(w, "weight", "norm", 4.0) for w in params]
        for s in _LOGGED
    }
    return training_run(
        loss=noisy(np.full(200, 3.47), 0.01), lr=np.full(200, 0.1),
        grad_norm=np.where(np.arange(200) >= 5, 500.0, 0.5), logged=logged, modules=modules,
        params=params, meta={"optimizer": meta},
    )  # fmt: skip


def test_adam_s_large_first_steps_were_told_to_clip_first_regression():
    """A 3-layer LSTM at Adam 0.1: its first step moved every weight by 1.4× its norm, then
    the gradient exploded; the remedy led with clipping, which does not shrink Adam's step
    (≈ lr per element whatever the gradient's norm). Under SGD the clip still leads."""
    s = first(diagnose(_recurrent_run(_ADAM)), ("not_learning",))
    assert [c.kind for c in s.causes][:2] == ["large_updates", "exploding"]
    assert s.remedy.code.index("group['lr']") < s.remedy.code.index("clip_grad_norm_")
    sgd = {"type": "SGD", "groups": 1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0}
    s = first(diagnose(_recurrent_run(sgd)), ("not_learning",))
    assert s.causes[0].kind == "exploding" and s.remedy.code.startswith("torch.nn.utils.clip")


def _biases_moved(jump):
    """A ReLU MLP learning until step 100, where all of layer 1's units die and ``0.bias``'s
    norm goes from 0.8 to 0.8·``jump``; update ratios of 1e-2 throughout."""
    steps = np.arange(200)
    loss = noisy(np.where(steps < 100, decaying(200, 2.3, 0.2), 2.3), 0.02)
    logged = {
        s: [
            ("1", "activation", "dead", 1.0 if s >= 100 else 0.03),
            ("1", "activation", "dead_samples", 32.0),
            ("0.bias", "weight", "norm", 0.8 * (jump if s >= 100 else 1.0)),
            ("0.bias", "update", "ratio", 1e-2),
            *((w, "update", "ratio", 1e-2) for w in _W),
            *((w, "weight", "norm", 4.0) for w in _W),
        ]
        for s in _LOGGED
    }
    return training_run(
        loss=loss, lr=np.full(200, 0.05), grad_norm=np.full(200, 0.5), logged=logged,
        params=[*_W, "0.bias"], meta={"optimizer": _ADAM},
    )  # fmt: skip


def test_units_killed_by_a_write_outside_the_optimizer_were_the_step_size_regression():
    """Every hidden bias shifted by −20 under no_grad at step 100: the units all died, and
    the remedy said "after update ratios of up to 0.021: the step size is too large ...
    lower the learning rate". A bias whose norm went 0.8 → 226 in ten steps of ratio 1e-2
    was moved by something else than opt.step(), and that is what it now says."""
    s = first(diagnose(_biases_moved(280.0)), ("diverging",))
    assert s.causes[0].kind == "dead_units" and "outside opt.step()" in s.remedy.text
    assert "group['lr']" not in (s.remedy.code or "")
    # the same death with the bias moved only as far as its updates can: the step size
    s = first(diagnose(_biases_moved(1.1)), ("diverging",))
    assert "outside opt.step()" not in s.remedy.text
