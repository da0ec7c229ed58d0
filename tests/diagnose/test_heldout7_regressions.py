"""Regressions from the seventh held-out training check (tests/diagnose/_training_heldout7.py),
on runs written by hand."""

import numpy as np

from gradprobe.diagnose import diagnose

from ._judge import first, lr_in, serious
from ._runs import decaying, noisy, training_run

_W = ["0.weight", "2.weight"]
_LOGGED = [*range(20), *range(20, 200, 10)]
_ADAM = {"type": "Adam", "groups": 1, "weight_decay": 0.0}


def _run(loss, lr, ratio, grad, optimizer=_ADAM):
    """200 steps: per logged step each weight's update ratio ``ratio(s)`` and gradient rms
    ``grad(w, s)``, its norm 4."""
    logged = {s: [r for w in _W for r in ((w, "update", "ratio", ratio(s)),
                                          (w, "weight", "norm", 4.0),
                                          (w, "param_grad", "rms", grad(w, s)))]
              for s in _LOGGED}  # fmt: skip
    return training_run(loss=loss, lr=lr, grad_norm=np.full(200, 0.5), logged=logged,
                        params=_W, meta={"optimizer": optimizer})  # fmt: skip


def test_a_warmup_whose_schedule_returns_0_after_it_had_no_finding_regression():
    """LambdaLR(lambda s: (s + 1) / 20 if s < 20 else 0): the lr is 0 from step 20, the loss
    flat from there. Steps with lr 0 are left out of the update ratios (a warm-up's first
    moves nothing by design), so only the 20 moving steps were judged: no small_updates, and
    the stall was info ("no cause in the layers"). A schedule decaying to 0 at the end stays
    silent."""
    lr = np.where(np.arange(200) < 20, 3e-3 * (np.arange(200) + 1) / 20, 0.0)
    loss = noisy(np.concatenate([np.linspace(2.3, 1.7, 20), np.full(180, 1.7)]), 0.01)
    run = _run(loss, lr, lambda s: 1e-3 if s < 20 else 0.0, lambda w, s: 0.01)
    s = first(diagnose(run), ("stalled",))
    assert s.causes[0].kind == "small_updates" and s.causes[0].onset == 20
    assert lr_in(s.remedy.code) == 3e-3 and "set the lr from 0.003 to exactly 0" in s.remedy.text
    decay = np.linspace(3e-3, 0.0, 200)
    quiet = _run(noisy(decaying(200), 0.01), decay, lambda s: 1e-3, lambda w, s: 0.01)
    assert not [f for f in serious(diagnose(quiet)) if f.kind == "small_updates"]


def test_weights_below_a_round_with_a_zero_gradient_had_no_finding_regression():
    """torch.round between two layers: the lower layer's gradient is exactly 0 on every step
    (it never moves) while the head learns — no finding at all (a zero update was read as a
    skipped step, a zero gradient as nothing). A weight whose gradient is 0 only later (a
    layer that died during training) is not this."""
    loss = noisy(decaying(200, 2.3, 1.8), 0.01)
    lr = np.full(200, 1e-3)
    blocked = _run(loss, lr, lambda s: 0.0, lambda w, s: 0.0 if w == "0.weight" else 0.01)
    f = first(diagnose(blocked), ("small_updates",))
    assert f.layer == "0.weight" and f.onset == 0 and f.evidence["never_updated"] == ["0.weight"]
    assert "(torch.round(x) - x).detach()" in f.remedy.code
    later = _run(loss, lr, lambda s: 0.0, lambda w, s: 0.0 if w == "0.weight" and s > 5 else 0.01)
    assert not any("gradient exactly 0" in str(g.evidence.get("updated")) for g in diagnose(later))


def test_adam_with_eps_1_was_told_to_raise_the_lr_regression():
    """Adam(lr=1e-3, eps=1.0): the gradients' rms is 1e-2, so each step is lr·g/eps ≈ 1e-5 —
    "the learning rate 0.001 is too low, try 0.02". The eps is what to change; Adam's
    default eps keeps the lr remedy."""
    loss = noisy(np.full(200, 2.3), 0.01)
    lr = np.full(200, 1e-3)

    def remedy(eps):
        opt = {**_ADAM, "eps": eps}
        run = _run(loss, lr, lambda s: 4e-5, lambda w, s: 0.01, optimizer=opt)
        return first(diagnose(run), ("not_learning",)).remedy

    big = remedy(1.0)
    assert "group['eps'] = 1e-8" in big.code and lr_in(big.code) is None
    usual = remedy(1e-8)
    assert "eps" not in usual.code and lr_in(usual.code) > 1e-3
