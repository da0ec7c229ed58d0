import math

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import InvalidInputError
from gradprobe.experiments.data import load


@pytest.fixture(scope="module")
def digits():
    split = load("digits", seed=0, flatten=True)
    return split.x_train[:512], split.y_train[:512]


def make(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def train(model, opt, digits, poison=(), skip=(), steps=30, batch=64):
    x, y = digits
    for step in range(steps):
        i = (step * batch) % len(x)
        xb, yb = x[i : i + batch].clone(), y[i : i + batch]
        if step in skip:
            continue
        if step in poison:
            xb[0, 0] = float("nan")
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_nan_step_is_skipped_exactly_like_skipping_it_by_hand(digits):
    guarded, opt = make()
    with gp.guard(guarded, opt) as g:
        train(guarded, opt, digits, poison={7})
    by_hand, opt2 = make()
    train(by_hand, opt2, digits, skip={7})
    for a, b in zip(guarded.parameters(), by_hand.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [(s.step, s.reason) for s in g.skipped] == [(7, "non_finite")]
    assert g.skipped[0].origin == "0.weight"  # NaN input reaches the first layer's weight grad
    assert "step" not in opt.__dict__  # the optimizer has its own step back


def test_guard_changes_nothing_on_a_clean_run(digits):
    guarded, opt = make()
    with gp.guard(guarded, opt):
        train(guarded, opt, digits)
    plain, opt2 = make()
    train(plain, opt2, digits)
    assert all(
        torch.equal(a, b) for a, b in zip(guarded.parameters(), plain.parameters(), strict=True)
    )


def test_exploding_step_is_skipped_after_warmup(digits):
    model, opt = make()
    x, y = digits
    with gp.guard(model, opt, warmup=5, explode_factor=100) as g:
        for step in range(12):
            loss = nn.functional.cross_entropy(model(x[:64]), y[:64])
            (loss * (1e6 if step == 9 else 1.0)).backward()
            opt.step()
            opt.zero_grad()
    assert [(s.step, s.reason) for s in g.skipped] == [(9, "exploding")]
    assert g.skipped[0].norm > 100 * math.exp(g.typical_log_norm)


def test_consecutive_bad_steps_restore_the_last_snapshot(digits):
    model, opt = make()
    restored = []
    with gp.guard(model, opt, max_bad=2, snapshot_every=5, on_restore=restored.append) as g:
        train(model, opt, digits, steps=10)  # snapshots at 0, 5 and 10 good steps
        snapshot = [p.detach().clone() for p in model.parameters()]
        train(model, opt, digits, steps=3, poison={0, 1, 2})
    assert len(restored) == 1 and restored[0].snapshot_step == 10 and restored[0].bad_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), snapshot, strict=True))
    assert len(g.skipped) == 3


def test_close_is_idempotent_and_bad_options_are_explained():
    model, opt = make()
    g = gp.guard(model, opt)
    g.close()
    g.close()
    assert "step" not in opt.__dict__
    with pytest.raises(InvalidInputError, match="Optimizer"):
        gp.guard(model, "sgd")
    with pytest.raises(InvalidInputError, match=r"nn\.Module"):
        gp.guard(object(), opt)
    with pytest.raises(InvalidInputError, match="explode_factor"):
        gp.guard(model, opt, explode_factor=0.5)


def test_guard_as_an_option_of_watch_skips_and_records(digits):
    guarded, opt = make()
    with gp.watch(guarded, optimizer=opt, guard=True) as probe:
        train(guarded, opt, digits, poison={7}, steps=12)
    by_hand, opt2 = make()
    train(by_hand, opt2, digits, skip={7}, steps=12)
    assert all(
        torch.equal(a, b) for a, b in zip(guarded.parameters(), by_hand.parameters(), strict=True)
    )
    assert probe.run.meta["guard_skipped"] == [
        {"step": 7, "reason": "non_finite", "origin": "0.weight"}
    ]
    assert probe.run.steps == list(range(12))  # the skipped step still ended the probe's step
    assert probe.run.first_nonfinite("forward").step == 7
    assert "step" not in opt.__dict__
    with pytest.raises(InvalidInputError, match="optimizer"):
        gp.watch(guarded, guard=True)
