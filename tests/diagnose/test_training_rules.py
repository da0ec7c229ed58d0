"""The training-time rules against runs written by hand: each fires where the numbers say
so, at the step they say, and stays silent on the healthy twin (issue 16)."""

import numpy as np
import pytest

from gradprobe.diagnose import Thresholds, diagnose
from gradprobe.run import Event

from ._runs import WEIGHTS, decaying, noisy, training_run, updates


def only(findings, kind):
    found = [f for f in findings if f.kind == kind]
    assert len(found) == 1, [str(f) for f in findings]
    return found[0]


def serious(findings):
    return [f for f in findings if f.severity in ("warning", "error")]


# -- the loss curve ----------------------------------------------------------------------------


def test_a_healthy_decaying_noisy_loss_has_no_symptom():
    for seed in range(5):
        run = training_run(loss=noisy(decaying(), 0.05, seed))
        assert diagnose(run, rules="loss") == []


def test_a_converged_loss_with_heavy_tailed_batch_noise_has_no_spike():
    """Regression (a healthy SGD + momentum MLP on digits was told it spiked): a converged
    batch loss scatters in proportion to its level (0.002-0.3 around 0.02: one hard example
    in a batch), so a batch at 10-40× the median is its noise, judged on log(loss)."""
    g = np.random.default_rng(0)
    for seed in range(5):
        base = decaying(300, 2.3, 0.02, rate=0.05)
        loss = base * np.exp(np.random.default_rng(seed).normal(0.0, 1.0, base.size))
        assert not [f for f in diagnose(training_run(loss=loss), rules="loss")
                    if f.kind == "loss_spike"]  # fmt: skip
    loss = noisy(decaying(300, 2.3, 0.02, rate=0.05), 0.05, int(g.integers(100)))
    loss[250:253] = 1.5  # the same level with little scatter: 75x its median is a spike
    f = only(diagnose(training_run(loss=loss), rules="loss"), "loss_spike")
    assert (f.onset, f.severity) == (250, "warning")


def test_a_flat_noisy_loss_whose_last_steps_dip_by_chance_is_not_learning():
    """Regression (an end-of-run dip hid a stall): the centred median of the last w/2 steps
    reads half a window, so it dips by chance; the best level is read where the window is
    whole, and a loss at chance level with such a dip is not learning."""
    loss = noisy(np.full(200, 2.3), 0.05, 3)
    loss[-8:] = 1.7
    f = only(diagnose(training_run(loss=loss), rules="loss"), "not_learning")
    assert f.evidence["best_step"] < 190 and f.evidence["drop"] < 0.1


def test_a_flat_loss_is_not_learning_from_step_0():
    run = training_run(loss=noisy(np.full(200, 2.3), 0.02))
    f = only(diagnose(run, rules="loss"), "not_learning")
    assert (f.severity, f.layer, f.onset, f.end) == ("warning", "(loss)", 0, 199)
    assert f.evidence["drop"] < 0.1


def test_a_plateau_high_above_the_start_is_stalled_where_it_began():
    loss = np.concatenate([np.linspace(2.3, 1.6, 60), np.full(140, 1.6)])
    f = only(diagnose(training_run(loss=noisy(loss, 0.01)), rules="loss"), "stalled")
    assert 45 <= f.onset <= 65 and f.end == 199
    assert f.evidence["plateau_steps"] >= 130


def test_a_plateau_near_zero_is_converged_not_stalled():
    loss = np.concatenate([np.linspace(2.3, 0.05, 60), np.full(140, 0.05)])
    assert diagnose(training_run(loss=noisy(loss, 0.05)), rules="loss") == []


def test_a_rise_after_learning_is_diverging_from_where_it_rose():
    loss = np.concatenate([decaying(120, 2.3, 0.5, 0.05), np.linspace(0.5, 2.4, 80)])
    f = only(diagnose(training_run(loss=noisy(loss, 0.02)), rules="loss"), "diverging")
    assert f.severity == "error" and 110 <= f.onset <= 135
    assert f.evidence["final_loss"] > 2 and f.evidence["best_loss"] < 0.6


def test_a_nan_loss_is_diverging_at_its_step_with_the_rise_before_it():
    loss = np.concatenate([decaying(60), np.geomspace(0.5, 1e6, 20), [np.inf, np.nan]])
    f = only(diagnose(training_run(loss=loss), rules="loss"), "diverging")
    assert f.step == 80 and f.end == 80 and f.evidence["non_finite"]
    assert 55 <= f.onset <= 65  # the rise began where the loss stopped falling
    assert f.evidence["loss"] == "inf"


def test_a_nan_loss_of_a_short_run_is_judged_too():
    f = only(diagnose(training_run(loss=[2.3, 2.2, 40.0, np.nan]), rules="loss"), "diverging")
    assert f.step == 3 and f.onset == 1  # rising from the lowest value


def test_a_short_run_is_not_judged_on_its_curve():
    assert diagnose(training_run(loss=np.full(10, 2.3)), rules="loss") == []


def test_one_spike_is_found_at_its_step_and_noise_is_not():
    loss = noisy(decaying(), 0.03)
    loss[150] *= 3
    f = only(diagnose(training_run(loss=loss), rules="loss"), "loss_spike")
    assert (f.onset, f.end, f.evidence["spikes"]) == (150, 150, 1)
    assert f.evidence["largest_ratio"] == pytest.approx(3, rel=0.15)


def test_a_converged_losss_excursion_of_a_few_percent_of_its_start_was_a_spike():
    # fix_bench's healthy circles references: 0.68 -> 0.004, one batch at 0.04 (5.6 % of the start)
    loss = noisy(decaying(300, 0.68, 0.004, rate=0.05), 0.05)
    loss[219] = 0.042
    f = only(diagnose(training_run(loss=loss), rules="loss"), "loss_spike")
    assert (f.onset, f.severity) == (219, "info")
    loss[219] = 0.2  # 29 % of the start: an instability, whatever the level
    f = only(diagnose(training_run(loss=loss), rules="loss"), "loss_spike")
    assert (f.onset, f.severity) == (219, "warning")


def test_a_jump_that_stays_up_is_no_spike():
    loss = noisy(np.concatenate([decaying(150, 2.3, 0.4), np.full(50, 3.0)]), 0.02)
    kinds = {f.kind for f in diagnose(training_run(loss=loss), rules="loss")}
    assert "loss_spike" not in kinds and "diverging" in kinds


def test_a_loss_that_jumps_across_the_valley_is_oscillating():
    g = np.random.default_rng(0)
    loss = np.concatenate([decaying(100, 2.3, 1.5), 1.5 + g.uniform(-1.2, 1.2, 100)])
    f = only(diagnose(training_run(loss=loss), rules="loss"), "oscillating")
    assert f.severity == "warning" and 60 <= f.onset <= 110
    assert f.evidence["amplitude"] > 0.15 * 2.3


def test_negative_losses_are_judged_against_their_noise_not_shares():
    """A loss below 0 has no scale for shares of its start: a flat one has not fallen beyond
    its noise (not_learning); one that falls by many sigmas is learning, however little
    against its level (no "stalled" share either)."""
    flat = noisy(np.full(200, -3.0), 0.02)
    f = only(diagnose(training_run(loss=flat), rules="loss"), "not_learning")
    assert not f.evidence["beyond_noise"] and f.evidence["drop"] is None
    falling = noisy(decaying(200, -3.0, -3.5), 0.02)
    assert diagnose(training_run(loss=falling), rules="loss") == []


# -- update ratios, judged step by step early ----------------------------------------------------


def _ratios(early, late=1e-3, n=100):
    return {s: updates(early if s < 20 else late) for s in range(n) if s < 20 or s % 2 == 0}


def test_large_first_updates_are_found_although_the_median_is_healthy():
    run = training_run(loss=decaying(100), lr=np.full(100, 1e-2), logged=_ratios(0.5))
    f = only(diagnose(run, rules="updates"), "large_updates")
    assert (f.onset, f.evidence["judged_on"], f.evidence["first_over"]) == (0, "first steps", 0.5)
    assert f.evidence["median_update_ratio"] < 0.5
    assert "warm" in f.remedy.text and "LambdaLR" in f.remedy.code
    assert "group['lr'] = 0.0002" in f.remedy.code  # 1e-2 × 0.01 / 0.5


def test_first_updates_of_a_healthy_adam_lstm_are_not_large():
    run = training_run(loss=decaying(60), logged=_ratios(0.1))  # Adam lr 1e-2 on rms 0.1
    assert diagnose(run, rules="updates") == []


def test_a_warmed_up_run_gets_no_warmup_advice():
    lr = np.minimum(1.0, (np.arange(60) + 1) / 20) * 1e-2
    run = training_run(loss=decaying(60), lr=lr, logged=_ratios(0.5))
    f = only(diagnose(run, rules="updates"), "large_updates")
    assert "LambdaLR" not in (f.remedy.code or "")


def test_the_lr_factor_comes_from_the_first_crossing_not_the_blow_up():
    logged = {s: updates(0.5 * 100**s) for s in range(5)}
    run = training_run(loss=[0.2, 30, 700, 1e9, 1e20], lr=np.ones(5), logged=logged)
    f = only(diagnose(run, rules="updates"), "large_updates")
    assert f.evidence["first_over"] == 0.5 and "group['lr'] = 0.02" in f.remedy.code


# -- dead and saturated units that appear during training -----------------------------------------


def _dead(values):
    rows = {}
    for s, v in enumerate(values):
        rows[s] = [("1", "activation", "dead", v), ("1", "activation", "dead_samples", 32)]
        rows[s] += updates(0.4 if s < 3 else 1e-3)
    return rows


def test_units_that_die_during_training_blame_the_step_size():
    run = training_run(
        loss=decaying(10), lr=np.full(10, 0.05), logged=_dead([0.05] * 3 + [0.8] * 7)
    )
    f = only(diagnose(run, rules="dead_units"), "dead_units")
    assert f.onset == 3 and f.evidence["appeared"] == "during training"
    assert "kaiming" not in (f.remedy.code or "") and "learning rate" in f.remedy.text
    assert f.evidence["update_ratio_before"] == pytest.approx(0.4)


def test_units_dead_at_init_keep_the_init_remedy():
    run = training_run(loss=decaying(10), logged=_dead([0.8] * 10))
    f = only(diagnose(run, rules="dead_units"), "dead_units")
    assert f.onset == 0 and f.evidence["appeared"] == "at initialisation"
    assert "kaiming" in f.remedy.code


def test_saturation_during_training_blames_the_step_size():
    modules = [("0", "Linear", None), ("1", "Tanh", "saturating:-1,1"), ("2", "Linear", None)]
    logged = {
        s: [("1", "activation", "saturated", 0.0 if s < 4 else 0.6), *updates(0.5)]
        for s in range(8)
    }
    run = training_run(loss=decaying(8), modules=modules, logged=logged)
    f = only(diagnose(run, rules="saturated"), "saturated")
    assert f.onset == 4 and "xavier" not in (f.remedy.code or "")


# -- attention, overflow, gradient norm, through time, the optimizer step -------------------------

ATTENTION = [("attn", "MultiheadAttention", None), ("head", "Linear", None)]


def test_attention_logits_that_grow_past_100_are_found_at_their_step():
    logits = np.geomspace(5, 600, 50)
    logged = {
        s: [
            ("attn", "attention", "max_logit", logits[s]),
            ("attn", "attention", "entropy", 2.5 - s / 25),
        ]
        for s in range(50)
    }
    run = training_run(loss=decaying(50), modules=ATTENTION, params=["head.weight"], logged=logged)
    f = only(diagnose(run, rules="attention"), "attention_logits")
    assert f.onset == int(np.argmax(logits > 100)) and f.layer == "attn"
    assert f.evidence["max_logit_peak"] == pytest.approx(600)
    assert "QK-norm" in f.remedy.text and "q_norm" in f.remedy.code


def test_a_sharp_healthy_head_is_no_attention_finding():
    logged = {
        s: [("attn", "attention", "max_logit", 25.0), ("attn", "attention", "entropy", 0.01)]
        for s in range(30)
    }
    run = training_run(loss=decaying(30), modules=ATTENTION, params=["head.weight"], logged=logged)
    assert diagnose(run, rules="attention") == []


def _attention_run(logits):
    logged = {s: [("attn", "attention", "max_logit", v)] for s, v in enumerate(logits)}
    n = len(logits)
    return training_run(loss=decaying(n), modules=ATTENTION, params=["head.weight"], logged=logged)


def test_a_fixed_bias_over_100_from_the_start_is_info_not_logit_growth_regression():
    """Bloom's ALiBi in softmax's input: 127.5 from step 0, q·k small and not growing.
    Regression: read as an attention_logits warning on a healthy model."""
    found = diagnose(_attention_run(np.full(30, 127.5) + np.linspace(0, 3, 30)), rules="attention")
    f = only(found, "attention_logits")
    assert (f.severity, f.onset) == ("info", 0)
    assert f.evidence["max_logit_first"] == pytest.approx(127.5)


def test_logits_that_grow_from_a_large_start_are_still_found_when_they_double():
    logits = np.concatenate([np.full(10, 127.5), np.geomspace(127.5, 2000, 20)])
    f = only(diagnose(_attention_run(logits), rules="attention"), "attention_logits")
    assert f.severity == "warning" and f.onset == int(np.argmax(logits >= 255))
    assert (
        diagnose(_attention_run(logits), Thresholds(attention_growth=1), rules="attention")[0].onset
        == 0
    )  # growth not required: over 100 at the first step


def test_float16_near_its_limit_is_overflow_before_the_first_nan():
    logged = {
        s: [
            ("2", "activation", "range_used", 0.01 * 2**s),
            ("2", "activation", "max_abs", 655.04 * 2**s),
        ]
        for s in range(7)
    }
    events = (Event(7, "forward", "2", "the output of 2 contained NaN/Inf (0.01 of its values)"),)
    logged[7] = []
    run = training_run(loss=decaying(8), logged=logged, events=events)
    found = diagnose(run)
    f = only(found, "overflow")
    assert (f.onset, f.layer, f.evidence["dtype"], f.evidence["nonfinite_step"]) == (
        4,
        "2",
        "float16",
        7,
    )
    assert "GradScaler" in f.remedy.text or "bfloat16" in f.remedy.text
    nan = only(found, "non_finite")
    assert "bfloat16" in nan.remedy.text and "65504" in nan.remedy.text  # not log/sqrt/exp


def test_bfloat16_near_its_limit_is_exploding_not_precision():
    logged = {0: [("2", "activation", "range_used", 0.5), ("2", "activation", "max_abs", 1.7e38)]}
    f = only(diagnose(training_run(loss=[1.0], logged=logged), rules="overflow"), "overflow")
    assert f.evidence["dtype"] == "bfloat16" and "clip" in f.remedy.code


def test_a_gradient_norm_that_explodes_gets_clipping_at_the_recorded_norm():
    norm = np.concatenate([np.full(15, 2.0), 2.0 * 3.0 ** np.arange(1, 15)])
    f = only(
        diagnose(training_run(loss=decaying(29), grad_norm=norm), rules="grad_norm"), "exploding"
    )
    assert f.layer is None and f.onset == 15 + int(np.argmax(3.0 ** np.arange(1, 15) > 100))
    assert "max_norm=2" in f.remedy.code


def test_a_healthy_gradient_norm_that_grows_a_few_times_is_not_exploding():
    norm = np.linspace(1, 8, 200)
    assert diagnose(training_run(loss=decaying(), grad_norm=norm), rules="grad_norm") == []


def _rnn(norms_t, grad_norm=None):
    modules = [("rnn", "GRU", None), ("head", "Linear", None)]
    series = {0: [("rnn", "rnn_grad_input_t", list(norms_t))]}
    return training_run(
        loss=decaying(30),
        grad_norm=grad_norm,
        modules=modules,
        params=["head.weight"],
        logged={0: []},
        series=series,
    )


def test_a_gradient_that_grows_back_through_time_is_exploding_with_clipping():
    run = _rnn(np.geomspace(1e4, 1.0, 40), grad_norm=np.full(30, 0.5))
    f = only(diagnose(run, rules="through_time"), "exploding")
    assert (f.layer, f.time_step, f.onset) == ("rnn", 0, 0)
    assert f.evidence["ratio_first_to_last"] == pytest.approx(1e4)
    assert "clip_grad_norm_" in f.remedy.code and "max_norm=0.5" in f.remedy.code


def test_through_time_vanishing_is_still_vanishing():
    # ×0.1 per step: only the last 2 of 40 steps get 1 % of the gradient (through_time judges
    # the gradient's reach since f8378b3)
    f = only(diagnose(_rnn(np.geomspace(1e-39, 1.0, 40)), rules="through_time"), "vanishing")
    assert f.time_step == 0


UPDATE = "the weights of parameter 0.weight became NaN/Inf in the optimizer step"


def test_weights_made_nan_by_the_optimizer_step_are_the_origin():
    events = (
        Event(5, "update", "0.weight", UPDATE + " (the step's gradients were finite)"),
        Event(6, "forward", "0", "the output of 0 contained NaN/Inf (1 of its values)"),
    )
    logged = {s: updates(0.6) for s in range(5)}
    run = training_run(
        loss=[2.3, 3, 9, 90, 1e4, 1e8, np.nan], lr=np.ones(7), logged=logged, events=events
    )
    found = [f for f in diagnose(run) if f.kind == "non_finite"]
    origin = [f for f in found if f.severity == "error"]
    assert [f.layer for f in origin] == ["0.weight"] and origin[0].evidence["phase"] == "update"
    assert "optimizer step" in origin[0].message
    assert "clip_grad_norm_" in origin[0].remedy.code and "group['lr']" in origin[0].remedy.code
    forward = [f for f in found if f.evidence["phase"] == "forward"]
    assert forward and forward[0].severity == "info" and "optimizer step" in forward[0].message


def test_a_residual_stream_grown_a_thousandfold_is_exploding_at_its_step():
    from ._runs import _stream

    f = only(diagnose(_stream(5e3), rules="stream"), "exploding")
    assert f.layer == "h.0" and f.evidence["measured_on"] == "residual stream over training"
    assert f.onset == int(np.argmax(5e3 ** (np.arange(30) / 29) > 1e3))
    assert "learning rate" in f.remedy.text
    assert diagnose(_stream(20.0), rules="stream") == []  # healthy runs grow it 10-22x


# -- links ----------------------------------------------------------------------------------------


def test_a_symptom_names_its_causes_and_takes_the_first_ones_remedy():
    loss = noisy(np.full(60, 2.3), 0.01)
    run = training_run(loss=loss, lr=np.full(60, 1e-2), logged=_ratios(0.5))
    found = diagnose(run)
    symptom = only(found, "not_learning")
    assert [c.kind for c in symptom.causes] == ["large_updates"]
    assert symptom.causes[0].onset == 0 and "update ratios of 0.5" in symptom.message
    assert symptom.remedy.code == only(found, "large_updates").remedy.code


def test_a_cause_without_a_symptom_is_a_warning_with_its_onset():
    logged = {s: updates(5.0 if s < 3 else 1e-3) for s in range(40)}
    run = training_run(loss=noisy(decaying(40), 0.01), logged=logged)
    f = only(diagnose(run), "large_updates")
    assert f.severity == "warning" and f.onset == 0  # an error line (> 1) without a symptom
    assert f.evidence["symptom"] == "none in the loss yet"


def test_a_stall_without_a_cause_is_information():
    loss = np.concatenate([np.linspace(2.3, 1.6, 60), np.full(140, 1.6)])
    f = only(diagnose(training_run(loss=noisy(loss, 0.01))), "stalled")
    assert f.severity == "info" and f.causes == ()


def test_a_symptom_without_cause_falls_back_on_small_update_ratios():
    logged = {s: updates(5e-6) for s in range(0, 200, 10)}
    run = training_run(loss=noisy(np.full(200, 2.3), 0.01), lr=np.full(200, 1e-4), logged=logged)
    f = only(diagnose(run), "not_learning")
    assert [c.kind for c in f.causes] == ["small_updates"] and "0.02" in f.remedy.code


def test_vanishing_that_appears_during_training_gets_no_init_remedy():
    modules = [(str(i), "Linear", None) for i in range(4)]
    weights = [f"{i}.weight" for i in range(4)]
    logged = {}
    for s in range(10):
        fall = 1.0 if s < 5 else 1e-3
        logged[s] = [(str(i), "grad_output", "rms", fall ** (3 - i)) for i in range(4)]
        logged[s] += updates(0.5 if s < 3 else 1e-3, weights)
    run = training_run(loss=decaying(10), modules=modules, params=weights, logged=logged)
    f = only(diagnose(run, rules="depth_profile"), "vanishing")
    assert f.onset == 5 and f.evidence["appeared"] == "during training"
    assert not (f.remedy.code or "").startswith("gp.init")


def test_causes_and_step_range_are_in_to_dict():
    loss = noisy(np.full(60, 2.3), 0.01)
    run = training_run(loss=loss, lr=np.full(60, 1e-2), logged=_ratios(0.5))
    d = only(diagnose(run), "not_learning").to_dict()
    assert d["end"] == 59 and d["causes"][0]["kind"] == "large_updates"


def test_new_thresholds_are_checked():
    from gradprobe.errors import GradprobeError

    with pytest.raises(GradprobeError, match="not_learning_drop"):
        Thresholds(not_learning_drop=1.5)
    with pytest.raises(GradprobeError, match="min_loss_steps"):
        Thresholds(min_loss_steps=2)
    assert Thresholds(spike_mads=5).spike_mads == 5


assert WEIGHTS  # the two weights every hand-written run has


# -- regression tests for what went wrong while building these rules ------------------------------


def test_an_explosion_from_step_3_set_its_own_clipping_norm():
    """The clipping norm was the median of the first ten norms, most of them the explosion's."""
    norm = np.concatenate([[1.9, 3.4, 5.3], 20 * 8.0 ** np.arange(17)])
    f = only(
        diagnose(training_run(loss=decaying(20), grad_norm=norm), rules="grad_norm"), "exploding"
    )
    assert "max_norm=3.4" in f.remedy.code  # the steps before it rose 10x above its first


def test_gradients_never_zeroed_are_the_first_cause_and_the_remedy_is_zero_grad():
    """Regression (fourth held-out check): a forgotten ``zero_grad()`` diverged after it
    learnt, blamed on the units that died after the summed gradients grew ("lower the lr").
    The probe's ``meta["grads_not_zeroed"]`` names it; the same run without it does not."""
    loss = np.concatenate([decaying(80, 2.3, 0.3), np.linspace(0.3, 2.6, 120)])
    norms = np.linspace(1.0, 90.0, 200)  # .grad summed over steps: grows with the step count
    kept = {"grads_not_zeroed": {"step": 1, "param": WEIGHTS[0]}}
    found = diagnose(training_run(loss=noisy(loss), grad_norm=norms, lr=[0.05] * 200, meta=kept))
    s = only(found, "diverging")
    assert s.causes[0].kind == "exploding" and s.causes[0].onset == 1
    assert "zero_grad()" in s.remedy.code and "never zeroed" in s.causes[0].summary
    cause = only(found, "exploding")
    assert cause.severity == "error" and cause.evidence["grads_not_zeroed"] == 1
    plain = diagnose(training_run(loss=noisy(loss), grad_norm=norms, lr=[0.05] * 200))
    assert not any("zero_grad()" in (f.remedy.code or "") for f in plain)
