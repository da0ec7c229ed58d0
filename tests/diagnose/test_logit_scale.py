"""rules/logit_scale.py: logits so large at initialisation that the softmax starts one-hot.

Regression: a GPT whose head is tied to an nn.Embedding left at its default N(0, 1) init
(each logit a dot product of 64 unit-variance values: rms 14) started at a loss of 63 —
18x ln 32, a uniform guess — and 120 steps of AdamW later was still above that guess, with
no finding at all (gp.check said nothing either). The same model drawn with std 0.02
(GPT-2's) has nothing to say."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Thresholds

from ._runs import _logits, decaying, noisy, training_run
from ._training import TinyGPT, token_batches


def _tied_gpt(std):
    torch.manual_seed(0)
    m = TinyGPT(d=64, layers=2)
    m.lm_head.weight = m.wte.weight
    nn.init.normal_(m.wte.weight, 0.0, std)
    return m


def _train(model, steps=60):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = token_batches(16, torch.Generator().manual_seed(0))
    losses = []
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(steps):
            x, y = next(batches)
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
            losses.append(float(loss.detach()))
    return probe.run, losses


def test_a_head_tied_to_a_unit_variance_embedding_is_told_to_init_it_small_regression():
    run, losses = _train(_tied_gpt(1.0))
    assert losses[0] > 5 * math.log(32) and np.median(losses[-10:]) > math.log(32)
    [f] = [f for f in gp.diagnose(run) if f.kind == "saturated" and f.layer == "lm_head"]
    assert f.severity == "warning" and f.onset == 0
    assert f.evidence["classes"] == 32 and f.evidence["logit_rms"] > 4
    assert "tied" in f.message and "model.wte.weight, std=0.02" in f.remedy.code


def test_the_same_model_drawn_at_std_002_has_no_logit_finding():
    run, _ = _train(_tied_gpt(0.02), steps=25)
    assert not [f for f in gp.diagnose(run) if f.kind == "saturated"]


def test_a_run_that_learnt_through_large_initial_logits_is_info():
    [f] = gp.diagnose(_logits(10.0, end=0.2), rules=["logit_scale"])
    assert f.severity == "info" and "learnt through it" in f.message


def test_large_logits_from_a_large_input_are_told_to_normalise_it():
    """A head whose rows have a small gain (‖W‖_F/√K ≤ 2) gets its large logits from its
    input: the remedy is a norm before the head, not its init."""
    [f] = gp.diagnose(_logits(10.0), rules=["logit_scale"])
    assert "std=0.02" in f.remedy.code and f.evidence["head_gain"] > 2  # 20: the weights
    rows = [("2", "activation", "rms", 10.0), ("2", "activation", "max_abs", 30.0),
            ("2.weight", "weight", "norm", 3.0)]  # fmt: skip
    loss = noisy(decaying(100, start=21.0, end=3.0, rate=0.05), 0.01)
    small = training_run(loss=loss, logged={s: rows for s in range(0, 100, 10)},
                         shapes={"2.weight": (10, 64)})  # fmt: skip
    [g] = gp.diagnose(small, rules=["logit_scale"])
    assert "LayerNorm" in g.remedy.code and g.evidence["head_gain"] < 2


def test_the_logit_line_is_a_threshold():
    assert gp.diagnose(_logits(10.0), Thresholds(logit_rms=20.0), rules=["logit_scale"]) == []
