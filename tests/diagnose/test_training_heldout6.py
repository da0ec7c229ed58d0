"""The sixth held-out batch of training-time cases (issue 16,
tests/diagnose/_training_heldout6.py): loop, optimizer and model mechanics none of the
corpus and the five earlier batches has — L-BFGS with a closure, a SAM step with two
backwards, a gradient penalty through double backward, a GAN with two models, optimizers
and probes, SparseAdam over a sparse embedding beside Adam, weight_norm and spectral_norm
parametrizations, gradient checkpointing, LoRA on a frozen base, CTC, a padded Transformer
encoder with tied embeddings (Pre-LN and Post-LN), a whole model in bfloat16, Adafactor /
Rprop / ASGD, an EMA copy, a VAE, a U-Net, a graph network — watched with watch()'s DEFAULT
schedule and judged on symptom, cause, onset and remedy over two seeds; the healthy ones on
zero warnings and errors.

No line is drawn through a trained number: the assertions are about which finding is
reported, where, and when, on runs whose failure is far from every threshold.
"""

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Thresholds, diagnose
from gradprobe.diagnose.context import Context
from gradprobe.diagnose.finding import SYMPTOMS
from gradprobe.diagnose.rules import updates as U

from ._judge import cached_runs, first, lr_in, no_reinit, serious, verdict
from ._runs import Event, decaying, noisy, training_run
from ._training_heldout6 import (
    BROKEN,
    HEALTHY,
    LOOPS,
    ckpt_sigmoid,
    gan_loop,
    train,
    weight_norm_mlp,
)

SEEDS = (0, 1)
slow = pytest.mark.slow

#: what a remedy's code changes, in the order it is looked for
FAMILIES = ("line_search_fn", "kaiming_uniform_", "zero_infinity", "swap_activations",
            "group['lr']")  # fmt: skip

LOSSY = ("not_learning", "stalled", "diverging", "oscillating", "loss_spike")

#: a GAN's losses are a game (they need not fall): judged without the learning test
GAME = {"gan_d", "gan_g"}


def _train(case, seed):
    return LOOPS.get(case.name, train)(case, seed)


@pytest.fixture(scope="module")
def runs():
    return cached_runs(BROKEN, HEALTHY, _train)


@slow
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_run_gets_the_same_verdict_on_both_seeds(runs, name):
    a, b = (verdict(runs(name, seed)[2], FAMILIES, symptom_kind=False) for seed in SEEDS)
    assert a and a == b, (a, b)


FAST = [("sam_sgd_2", 2.0), ("penalty_adam_0.3", 0.3), ("weight_norm_sgd_5", 5.0),
        ("vae_adam_0.1", 0.1), ("asgd_3", 3.0), ("unet_sgd_2", 2.0)]  # fmt: skip


@slow
@pytest.mark.parametrize("name, lr", FAST)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_mechanic_far_too_fast_wants_a_lower_lr(runs, name, lr, seed):
    """SAM's two backwards, a gradient penalty's double backward, weight_norm's
    original0/original1, a VAE, ASGD, a U-Net: the first steps move the weights by a large
    share of their norm; the step size is the cause, from the first steps, not the init."""
    _run, _, found = runs(name, seed)
    s = first(found, LOSSY)
    assert s.causes[0].kind == "large_updates" and s.causes[0].onset <= 20, s.causes
    assert lr_in(s.remedy.code) < lr / 10
    if name == "weight_norm_sgd_5":  # the parametrization's own tensors are judged
        assert ".parametrizations.weight.original" in s.causes[0].layer
    no_reinit(found)


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_lbfgs_steps_far_too_long_want_a_line_search(runs, seed):
    _run, losses, found = runs("lbfgs_lr_10", seed)
    s = first(found, ("diverging",))
    assert s.causes[0].kind == "large_updates" and s.causes[0].onset <= 1
    assert "line_search_fn='strong_wolfe'" in s.remedy.code and "LambdaLR" not in s.remedy.code
    assert not np.isfinite(losses[-1])


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_checkpointed_sigmoid_blocks_vanish_from_the_start(runs, seed):
    _run, _, found = runs("ckpt_sigmoid_sgd", seed)
    s = first(found, ("not_learning",))
    assert s.onset == 0 and s.causes[0].kind == "vanishing" and s.causes[0].onset == 0
    assert "swap_activations" in s.remedy.code and "fixup" not in s.remedy.code


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_lora_with_both_factors_zero_is_stuck_at_zero(runs, seed):
    _run, _, found = runs("lora_zero_a", seed)
    s = first(found, ("not_learning",))
    cause = s.causes[0]
    assert (cause.kind, cause.onset) == ("small_updates", 0)
    assert "stuck at 0" in cause.summary and "lora_" in cause.layer
    assert "kaiming_uniform_" in s.remedy.code and "group['lr']" not in s.remedy.code


@slow
@pytest.mark.parametrize("name, lr", [("bf16_sgd_1e-3", 1e-3), ("sparse_emb_1e-6", 1e-6)])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_learning_rate_far_too_small_is_told_to_rise(runs, name, lr, seed):
    """A whole bfloat16 model under SGD 1e-3; SparseAdam + Adam at 1e-6 (the sparse
    embedding's own optimizer stepped beside the watched one)."""
    _run, _, found = runs(name, seed)
    s = first(found, ("not_learning",))
    assert s.onset == 0 and s.causes[0].kind == "small_updates" and s.causes[0].onset == 0
    assert lr_in(s.remedy.code) > 30 * lr


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_a_ctc_loss_turned_inf_by_a_length_bug_is_named_where_and_when(runs, seed):
    _run, losses, found = runs("ctc_impossible_at_50", seed)
    s = first(found, ("diverging",))
    assert s.onset == 50 == int(np.argmax(~np.isfinite(losses))) and losses[50] == np.inf
    cause = s.causes[0]
    assert (cause.kind, cause.layer, cause.onset) == ("non_finite", "(loss)", 50)
    assert "zero_infinity=True" in s.remedy.code
    no_reinit(found)


@slow
@pytest.mark.parametrize("name", sorted(HEALTHY))
@pytest.mark.parametrize("seed", SEEDS)
def test_healthy_heldout6_runs_have_no_warning_or_error(runs, name, seed):
    run, losses, found = runs(name, seed)
    assert not serious(found), [str(f) for f in found]
    losses = np.asarray(losses)
    assert np.isfinite(losses).all()
    assert len(run.steps) < len(losses)  # watch()'s default: not every step logged
    if name in GAME:  # one side of a game: its loss need not fall
        assert run.meta["trained_with"] == ["Sequential"]
        assert "grads_not_zeroed" not in run.meta
        return
    start, end = np.median(losses[:3]), np.median(losses[-20:])
    assert end < 0.9 * start


@slow
@pytest.mark.parametrize("seed", SEEDS)
def test_parametrized_weights_are_watched(runs, seed):
    """weight_norm's g and v (``original0``/``original1``): gradients and update ratios."""
    run, _, _ = runs("weight_norm_adam", seed)
    frame = run.to_pandas()
    for q in ("param_grad", "update"):
        names = set(frame[frame.quantity == q].layer)
        assert {
            "0.parametrizations.weight.original0",
            "4.parametrizations.weight.original1",
        } <= names


# -- regressions, on runs written by hand or a few steps of a tiny model ------------------------

_W = ["0.weight", "2.weight"]
_LOGGED = [*range(20), *range(20, 200, 10)]
_ADAM = {"type": "Adam", "groups": 1, "weight_decay": 0.0}
_LBFGS = {"type": "LBFGS", "groups": 1}


def _run(loss, ratio, meta=_ADAM, lr=1.0, extra=None, events=(), names=_W, **kw):
    """200 steps (or len(loss)): both weights moving ``ratio(s)`` of their norm at each
    logged step, ``extra(s)`` more rows."""
    logged = {
        s: [*(row for w in names for row in [(w, "update", "ratio", ratio(s)),
                                             (w, "weight", "norm", 4.0),
                                             (w, "param_grad", "rms", 0.1)]),
            *((extra or (lambda s: []))(s))]
        for s in _LOGGED if s < len(loss)
    }  # fmt: skip
    return training_run(
        loss=loss, lr=np.full(len(loss), lr), grad_norm=np.full(len(loss), 0.5),
        logged=logged, params=names, events=events, meta={"optimizer": meta, **kw},
    )  # fmt: skip


def _gan_loop(steps, zero_d=True, joint=False, lockstep=False):
    """A tiny GAN (``gan_loop``); ``zero_d=False``: D's gradients never zeroed. ``joint``:
    one loss and one backward, each model stepped by its optimizer (no game); ``lockstep``:
    two models trained one after the other on their own data (no game either)."""
    torch.manual_seed(0)
    g_net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    d_net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    d_opt = torch.optim.Adam(d_net.parameters(), lr=1e-3)
    g_opt = torch.optim.Adam(g_net.parameters(), lr=1e-3)
    batches = iter(lambda: (torch.randn(16, 2), torch.randn(16, 4)), None)
    if not (joint or lockstep):
        d_run, _, g_run, _ = gan_loop(g_net, d_net, d_opt, g_opt, batches, steps, zero_d)
        return d_run, g_run
    with gp.watch(d_net, optimizer=d_opt) as d_probe, gp.watch(g_net, optimizer=g_opt) as g_probe:
        for _ in range(steps):
            real, z = next(batches)
            if joint:  # an encoder/decoder pair: one loss, two optimizers
                loss = d_net(g_net(z)).pow(2).mean()
                loss.backward()
                d_opt.step(), g_opt.step(), d_opt.zero_grad(), g_opt.zero_grad()
                d_probe.step(loss=loss), g_probe.step(loss=loss)
                continue
            for net, opt, probe, x in ((d_net, d_opt, d_probe, real), (g_net, g_opt, g_probe, z)):
                loss = net(x).pow(2).mean()  # two unrelated models, one after the other
                loss.backward(), opt.step(), opt.zero_grad(), probe.step(loss=loss)
    return d_probe.run, g_probe.run


def test_a_gan_discriminator_was_told_it_never_zeroes_its_gradients_regression():
    """G's backward runs through D and adds to the .grad D's step left, which D's
    zero_grad() clears before its own backward: the probe read "never zeroed" (an error,
    and a "diverging" blamed on it) at the first backward after D's step. It is noted only
    when the next optimizer step still finds that .grad."""
    d_run, g_run = _gan_loop(4)
    assert "grads_not_zeroed" not in d_run.meta and "grads_not_zeroed" not in g_run.meta
    d_run, _ = _gan_loop(4, zero_d=False)
    assert d_run.meta["grads_not_zeroed"]["step"] == 1


def test_a_gan_s_losses_were_read_as_not_learning_regression():
    """A healthy GAN: D's loss rises 1.4 → 1.5 as G improves ("diverging", an error) and G's
    stays near 0.6-0.7 ("not_learning ... look at the labels"). Two probes whose models are
    each mid-step at the other's step ends are one game (``meta["trained_with"]``), and its
    loss symptoms are information; one backward for two optimizers, or two models trained
    one after the other, is no game."""
    d_run, g_run = _gan_loop(24)
    assert d_run.meta["trained_with"] == g_run.meta["trained_with"] == ["Sequential"]
    for kw in ({"joint": True}, {"lockstep": True}):
        d_run, g_run = _gan_loop(24, **kw)
        assert "trained_with" not in d_run.meta and "trained_with" not in g_run.meta
    flat = noisy(np.full(200, 0.69), 0.02)
    game = _run(flat, lambda s: 1e-3, lr=2e-4, trained_with=["Generator"])
    symptoms = [f for f in diagnose(game) if f.kind in SYMPTOMS]
    assert symptoms and all(f.severity == "info" for f in symptoms)
    assert not serious(diagnose(game))
    assert first(diagnose(_run(flat, lambda s: 1e-3, lr=2e-4)), ("not_learning",))
    nan = np.concatenate([decaying(100), np.full(100, np.nan)])
    assert first(diagnose(_run(nan, lambda s: 1e-3, trained_with=["G"])), ("diverging",))


def test_parametrized_weights_had_no_gradient_or_update_regression():
    """torch.nn.utils.parametrizations keeps a weight's ``original0``/``original1`` in a
    ParametrizationList (a ModuleList, which is not watched): no gradient, no update ratio
    was recorded for them, and the diagnosis skipped their names; weight_norm at SGD 5 had
    no large updates to blame, only the gradient norm 'to clip'."""
    torch.manual_seed(0)
    model = weight_norm_mlp((8, 16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(3):
            model(torch.randn(8, 8)).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    frame = probe.run.to_pandas()
    for q in ("param_grad", "update"):
        assert "0.parametrizations.weight.original1" in set(frame[frame.quantity == q].layer)
    names = ["0.parametrizations.weight.original0", "0.parametrizations.weight.original1"]
    run = _run(noisy(np.full(200, 2.3), 0.01), lambda s: 2.0 if s < 5 else 1e-3, names=names)
    big = first(diagnose(run), ("large_updates",))
    assert big.layer in names and big.onset == 0


def test_lora_factors_both_zero_had_no_cause_regression():
    """LoRA's A and B both zero: every trained weight stays 0 with a gradient of exactly 0
    (their update ratio is 0/0), and the not_learning said "no cause was seen in the
    layers". A zero-initialised head whose gradient is not 0 is not stuck."""
    names = ["a.weight", "b.weight"]

    def run(grad):
        logged = {s: [(w, q, st, v) for w in names
                      for q, st, v in (("weight", "norm", 0.0), ("param_grad", "rms", grad),
                                       ("update", "ratio", np.nan))]
                  for s in _LOGGED}  # fmt: skip
        return training_run(loss=noisy(np.full(200, 2.3), 0.01), lr=np.full(200, 1e-3),
                            grad_norm=np.full(200, grad), logged=logged, params=names,
                            meta={"optimizer": _ADAM})  # fmt: skip

    s = first(diagnose(run(0.0)), ("not_learning",))
    assert "stuck at 0" in s.causes[0].summary and s.causes[0].kind == "small_updates"
    assert "kaiming_uniform_" in s.remedy.code
    assert all(f.evidence.get("updated") != "never (stuck at 0)" for f in diagnose(run(0.1)))


def test_stuck_at_zero_read_the_frozen_parameters_once_per_weight_regression(monkeypatch):
    """rules/updates._stuck_at_zero called _frozen (a read of every parameter's gradient
    series) once per weight inside its filter: quadratic in the number of parameters (a
    36-layer nn.Transformer diagnosed in 3.4 s, 0.5 s with one call)."""
    calls = []
    frozen = U._frozen
    monkeypatch.setattr(U, "_frozen", lambda ctx, params: calls.append(1) or frozen(ctx, params))
    names = [f"{i}.weight" for i in range(12)]
    logged = {s: [(w, q, st, 0.1) for w in names
                  for q, st in (("weight", "norm"), ("param_grad", "rms"), ("update", "ratio"))]
              for s in _LOGGED}  # fmt: skip
    run = training_run(loss=noisy(decaying(200), 0.01), logged=logged, params=names)
    assert U._stuck_at_zero(Context(run, Thresholds())) is None
    assert len(calls) == 1


def test_lbfgs_first_step_the_size_of_the_weight_was_large_updates_regression():
    """L-BFGS with a line search converged to 1e-8 and warned "the first updates moved
    4.weight by 1.09 of its norm: lower the learning rate to 0.02, warm it up": a
    quasi-Newton step is as long as it needs to be. Under Adam the same numbers warn."""
    loss = noisy(decaying(60, 2.3, 1e-3, 0.2), 0.02)
    first_big = lambda s: 1.1 if s == 1 else 1e-3  # noqa: E731
    assert not serious(diagnose(_run(loss, first_big, meta=_LBFGS)))
    assert first(diagnose(_run(loss, first_big)), ("large_updates",))


def test_lbfgs_steps_far_too_long_were_told_to_warm_up_regression():
    """L-BFGS at lr 10 without a line search: "lower the lr, warm it up over the first
    65400 steps". Its step is the quasi-Newton direction × lr: a line search sets its
    length."""
    loss = np.concatenate([[2.3, 1e6, 1e9], np.full(57, np.nan)])
    run = _run(loss, lambda s: 1e4 if s == 1 else 1e-3, meta=_LBFGS, lr=10.0)
    s = first(diagnose(run), ("diverging",))
    assert "line_search_fn='strong_wolfe'" in s.remedy.code and "LambdaLR" not in s.remedy.code


def test_a_forward_nan_after_huge_updates_was_blamed_on_a_log_regression():
    """weight_norm at SGD 5: update ratios of 1e14, then a Linear's output Inf at step 7 —
    "a log or sqrt of a value ≤ 0 ... clamp the input". A Linear fed values past float32's
    range after such steps is the step size; the same NaN after usual steps keeps its text."""
    loss = np.concatenate([decaying(7), np.full(53, np.nan)])
    event = Event(7, "forward", "2", "the output of 2 contained NaN/Inf (0.1 of its values)")

    def nan_of(ratio):
        found = diagnose(_run(loss, ratio, meta={"type": "SGD", "groups": 1}, events=[event]))
        return next(f for f in found if f.kind == "non_finite" and f.layer == "2")

    grown = nan_of(lambda s: 1e3 if s < 7 else np.nan)
    assert "log or sqrt" not in grown.remedy.text and lr_in(grown.remedy.code) < 1.0
    # Adam's usual first steps (a few hundredths) before a log of a negative value: its own
    assert "log or sqrt" in nan_of(lambda s: 0.05 if s < 3 else 1e-3).remedy.text


def test_sigmoid_blocks_were_told_to_use_fixup_regression():
    """12 sigmoid layers in blocks of Sequential(Linear, Sigmoid) pairs (checkpointed): the
    vanishing was "12 residual blocks without normalisation: ... Fixup", though no block is
    residual and the sigmoid is what starves the gradient."""
    torch.manual_seed(0)
    result = gp.check(ckpt_sigmoid(), torch.randn(64, 64), torch.randint(0, 10, (64,)))
    vanishing = first(result.findings, ("vanishing",))
    assert "swap_activations" in vanishing.remedy.code and "fixup" not in vanishing.remedy.code


def test_an_inf_ctc_loss_was_told_to_use_logits_regression():
    """CTC with an input length shorter than its target: the loss is +Inf from step 50, and
    the remedy said "use the stable losses on logits (F.cross_entropy, ...)", never the
    alignment nor zero_infinity. A NaN loss keeps the general text."""

    def loss_nan(value):
        loss = np.concatenate([decaying(50), np.full(50, value)])
        detail = "the gradient w.r.t. the output of 2 was already NaN/Inf (1 of its values)"
        return _run(loss, lambda s: 1e-3, lr=1e-3, events=[Event(50, "backward", "2", detail)])

    (inf,) = [f for f in diagnose(loss_nan(np.inf)) if f.kind == "non_finite"]
    assert inf.layer == "(loss)" and "zero_infinity=True" in inf.remedy.code
    (nan,) = [f for f in diagnose(loss_nan(np.nan)) if f.kind == "non_finite"]
    assert "zero_infinity" not in (nan.remedy.code or "")
