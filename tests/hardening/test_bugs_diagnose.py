"""Regression tests for diagnosis bugs found by trying unusual inputs (issue 14)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import gradprobe as gp
from diagnose._synthetic import Event, linear_stack, synthetic_run  # tests/diagnose
from gradprobe.diagnose import Finding, Thresholds, diagnose
from gradprobe.errors import GradprobeError, GradprobeWarning, InvalidInputError, UnknownNameError


def _errors(findings, kind="non_finite"):
    return [f for f in findings if f.kind == kind and f.severity == "error"]


# -- Thresholds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vanishing_ratio": -0.01}, r"vanishing_ratio = -0.01 is outside its range \(0, 1\]"),
        ({"dead_fraction": 1.5}, r"dead_fraction = 1.5 is outside its range \[0, 1\)"),
        ({"exploding_ratio": 0.5}, r"exploding_ratio = 0.5 is outside"),
        ({"small_update_ratio": 0.0}, "small_update_ratio"),
        ({"vanishing_ratio": math.nan}, "vanishing_ratio must be finite"),
        ({"large_update_ratio": math.inf}, "large_update_ratio must be finite"),
        ({"saturated_fraction": "0.2"}, "saturated_fraction must be a number"),
        ({"dead_fraction": True}, "dead_fraction must be a number"),
        ({"min_layers": 2.5}, "min_layers must be an integer"),
        ({"min_layers": 1}, "min_layers = 1 is outside"),
        ({"min_dead_batch": 0}, "min_dead_batch = 0 is outside"),
        ({"vanishing_ratio": 1e-6}, "vanishing_error_ratio = 1e-05 is above vanishing_ratio"),
        ({"exploding_error_ratio": 50.0}, "exploding_ratio = 100 is above exploding_error_ratio"),
        ({"dead_error_fraction": 0.5}, "dead_fraction = 0.6 is above dead_error_fraction"),
        ({"small_update_ratio": 0.5}, "small_update_ratio = 0.5 is above large_update_ratio"),
    ],
)
def test_nonsense_thresholds_were_accepted(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        Thresholds(**kwargs)


def test_thresholds_replace_is_validated_too():
    assert dataclasses.replace(Thresholds(), vanishing_ratio=0.1).vanishing_ratio == 0.1
    with pytest.raises(InvalidInputError, match="vanishing_ratio"):
        dataclasses.replace(Thresholds(), vanishing_ratio=5.0)


def test_a_typo_in_a_thresholds_keyword_gave_a_plain_type_error():
    with pytest.raises(InvalidInputError) as info:
        Thresholds(dead_fractoin=0.5)
    text = str(info.value)
    assert "'dead_fractoin'" in text and "did you mean 'dead_fraction'" in text
    for f in dataclasses.fields(Thresholds):
        assert f.name in text  # every valid name is listed
    with pytest.raises(InvalidInputError, match="by name"):
        Thresholds(*range(1, len(dataclasses.fields(Thresholds)) + 2))


def test_diagnose_took_a_dict_of_thresholds_or_one_rule_name_as_garbage():
    run = synthetic_run(*_stack({0: _profile(0.1)}))
    strict = {"vanishing_ratio": 1e-5, "vanishing_error_ratio": 1e-6}
    assert diagnose(run, strict, rules=["depth_profile"]) == []
    assert [f.kind for f in diagnose(run, rules="depth_profile")] == ["vanishing"]
    with pytest.raises(InvalidInputError, match="Thresholds"):
        diagnose(run, thresholds="strict")
    with pytest.raises(InvalidInputError, match="valid names"):
        diagnose(run, thresholds={"vanishing": 0.1})
    with pytest.raises(InvalidInputError, match="list of rule names"):
        diagnose(run, rules=3)
    with pytest.raises(UnknownNameError, match="Did you mean 'depth_profile'"):
        diagnose(run, rules=["depth_profle"])


# -- non-finite values: name the origin -----------------------------------------------------


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_inf_in_an_mse_target_blamed_a_linear_layer():
    x, y = torch.randn(32, 8), torch.randn(32, 4)
    y[0, 0] = math.inf
    findings = gp.check(_mlp(), x, y).findings
    errors = _errors(findings)
    assert [f.layer for f in errors] == ["(target)"]
    assert "the target contains NaN/Inf" in errors[0].message
    assert errors[0].evidence["target_nonfinite_fraction"] == pytest.approx(1 / 128)
    assert not any("turned finite inputs" in str(f) for f in findings)
    consequence = [f for f in findings if f.kind == "non_finite" and f.severity == "info"]
    assert consequence and "a consequence of the NaN/Inf in the target" in consequence[0].message


def test_backward_remedy_said_a_module_turned_finite_inputs_into_nan_when_it_arrived_nan():
    """The loss itself is NaN (log of a negative number) while the output is finite: the
    gradient arrives NaN at the last module, which did nothing wrong."""

    def loss_fn(out, target):
        return torch.log(out - 100.0).mean()  # every out < 100: log of a negative number

    findings = gp.check(_mlp(), torch.randn(32, 8), torch.randn(32, 4), loss_fn=loss_fn).findings
    errors = _errors(findings)  # d log(x)/dx = 1/x is finite: only the loss is NaN
    assert [f.layer for f in errors] == ["(loss)"]
    assert "the loss is nan although the model's output was finite" in errors[0].message
    assert "turned finite inputs" not in errors[0].remedy.text
    # the gradient itself arrives NaN at the last module (a loss of 0·log 0): the same origin
    modules, _ = linear_stack(3)
    detail = (
        "the gradient w.r.t. the output of 4 was already NaN/Inf (1 of its values) when it "
        "arrived (from the loss or an operation outside any module)"
    )
    run = synthetic_run(modules, {0: []}, events=[Event(0, "backward", "4", detail)])
    (f,) = diagnose(run, rules=["non_finite"])
    assert (f.layer, f.severity) == ("(loss)", "error")
    assert "the gradient reaching 4 (the module nearest the loss) was already NaN/Inf" in f.message
    assert "turned finite inputs" not in f.remedy.text
    assert "loss is NaN/Inf although the model's output was finite" in f.remedy.text


def test_two_sentences_ran_together_for_nan_in_the_input():
    x = torch.randn(32, 8)
    x[0, 0] = math.nan
    findings = gp.check(_mlp(), x, torch.randn(32, 4)).findings
    errors = _errors(findings)
    assert [f.layer for f in errors] == ["(input)"]
    assert "produced NaN/Inf the model input" not in errors[0].message
    assert errors[0].message.endswith("the model input contains NaN/Inf (0.00391 of its values)")
    assert all("turned finite" not in f.remedy.text for f in findings)


@pytest.mark.parametrize(
    ("detail", "words"),
    [
        (
            "the gradient w.r.t. the output of 2 became NaN/Inf in the backward of 4",
            "turned a finite gradient into NaN/Inf in its backward",
        ),
        ("the gradient of parameter 2.weight was NaN/Inf", "weight gradient became NaN/Inf"),
    ],
)
def test_backward_events_of_each_origin_are_worded_for_that_origin(detail, words):
    modules, _ = linear_stack(3)
    layer = "4" if "backward of" in detail else "2"
    run = synthetic_run(modules, {0: []}, events=[Event(0, "backward", layer, detail)])
    (f,) = diagnose(run, rules=["non_finite"])
    assert f.severity == "error" and words in f.message and f.layer == layer
    assert "turned finite inputs" not in f.remedy.text


# -- dead units need a batch ------------------------------------------------------------------


def _dead_model():
    torch.manual_seed(0)
    return gp.init.apply(
        nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)),
        "kaiming_normal",
        bias=-3.0,
    )


def test_a_batch_of_one_gave_a_dead_units_warning():
    """On one example a healthy unit is ≤ 0 half the time, so "dead over the batch" means
    nothing (a Kaiming net showed 62% and a warning). Units with bias −3 are ≤ 0 on ~98% of
    examples: at batch 1 nothing is judged; at batch 256 the deep layer is 100% dead."""
    one = gp.check(_dead_model(), torch.randn(1, 32))
    assert one.run.matrix("activation", "dead_samples")[2].max() == 1
    assert [f for f in one.findings if f.kind == "dead_units"] == []
    many = gp.check(_dead_model(), torch.randn(256, 32)).findings
    dead = [f for f in many if f.kind == "dead_units"]
    assert dead and dead[0].evidence["examples"] == 256 and dead[0].severity == "error"


def test_dead_units_judged_only_from_min_dead_batch_examples():
    modules, _ = linear_stack(3, ("ReLU", "relu"))

    def run(samples):
        rows = [("1", "activation", "dead", 0.62), ("1", "activation", "dead_samples", samples)]
        return synthetic_run(modules, {0: rows})

    assert diagnose(run(15), rules=["dead_units"]) == []
    (f,) = diagnose(run(16), rules=["dead_units"])
    assert f.evidence["examples"] == 16
    assert diagnose(run(8), Thresholds(min_dead_batch=8), rules=["dead_units"])


# -- frozen layers ------------------------------------------------------------------------------


def test_fine_tuning_with_frozen_layers_warned_of_small_updates():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)
    )
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with gp.watch(model, optimizer=opt, updates=1) as probe:
        for _ in range(4):
            model(torch.randn(16, 8)).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    findings = diagnose(probe.run)
    assert not [f for f in findings if f.kind == "small_updates"], findings
    # a trainable layer whose weights do not move is still reported (over 3 measured steps:
    # a single step with an update of exactly 0 is a skipped step, rules/updates.py)
    modules, linears = linear_stack(2)
    weights = [f"{n}.weight" for n in linears]
    rows = [(w, "update", "ratio", 0.0) for w in weights] + [
        (w, "param_grad", "rms", 1e-3) for w in weights
    ]
    steps = {s: rows for s in range(3)}
    frozen = synthetic_run(modules, steps, weights, meta={"frozen_params": [weights[0]]})
    assert [f.layer for f in diagnose(frozen, rules=["updates"])] == [weights[1]]


# -- underflowed rms ----------------------------------------------------------------------------


MODULES, LINEARS = linear_stack(5)


def _profile(ratio: float):
    top = len(LINEARS) - 1
    return [(n, "grad_output", "rms", ratio ** (top - i)) for i, n in enumerate(LINEARS)]


def _stack(steps):
    return MODULES, steps, [f"{n}.weight" for n in LINEARS]


def test_layers_whose_rms_underflowed_to_zero_were_dropped():
    """A sum of squares in float32 underflows to 0 below ~1e-23 although max|x| is not 0:
    the vanishing finding named a higher layer instead of the lowest one."""
    rows = _profile(0.1)
    rows[0] = ("0", "grad_output", "rms", 0.0)
    rows.append(("0", "grad_output", "max_abs", 1e-25))
    (f,) = diagnose(synthetic_run(*_stack({0: rows})), rules=["depth_profile"])
    assert f.layer == "0" and f.evidence["layers"] == 5
    assert f.evidence["ratio_lowest_to_output"] == pytest.approx(1e-25)
    assert f.severity == "error"


# -- a run with nothing in it --------------------------------------------------------------------


def test_a_zero_step_run_was_healthy():
    model = _mlp()
    with pytest.warns(GradprobeWarning), gp.watch(model) as probe:
        model(torch.randn(4, 8)).sum().backward()  # no optimizer=, no probe.step()
    findings = diagnose(probe.run)
    assert [(f.kind, f.severity) for f in findings] == [("no_steps", "warning")]
    assert "probe.step()" in findings[0].remedy.text


# -- Finding.onset --------------------------------------------------------------------------------


def test_findings_had_no_onset():
    f = Finding("vanishing", "0", "warning", 7)
    assert f.onset == 7 and f.to_dict()["onset"] == 7
    assert Finding("vanishing", "0", "warning", 7, onset=0).onset == 0
    assert Finding("no_steps", None, "warning", None).onset is None
    steps = {0: _profile(1.0), 3: _profile(0.1)}
    (found,) = diagnose(synthetic_run(*_stack(steps)), rules=["depth_profile"])
    assert (found.step, found.onset) == (3, 3)


def test_every_finding_of_a_check_is_a_gradprobe_error_free_diagnosis_of_garbage_runs():
    with pytest.raises(GradprobeError, match="Run"):
        diagnose(42)
