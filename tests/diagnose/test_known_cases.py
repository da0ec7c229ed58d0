"""Each rule against a known truth built here (issue 4's cases): the rule must fire where the
truth says so, with the truth's numbers, and stay silent where it does not.

Every registered rule has a case in ``BROKEN`` (a test fails when a rule is added without
one), run both through gp.check on a real model and on a run written by hand.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import RULES, Thresholds, diagnose

from ._runs import KNOWN as TRAINING
from ._synthetic import Event, linear_stack, synthetic_run


def mlp(depth, width, act, d_in=32, d_out=10):
    layers = [nn.Linear(d_in, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(128, 32, generator=g), torch.randint(0, 10, (128,), generator=g)


def kinds(findings, severities=("warning", "error")):
    return {f.kind for f in findings if f.severity in severities}


def test_sigmoid_standard_init_vanishes_at_the_lowest_layers(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(20, 128, nn.Sigmoid), "standard")
    findings = gp.check(model, *data).findings
    vanishing = [f for f in findings if f.kind == "vanishing"]
    assert len(vanishing) == 1
    f = vanishing[0]
    assert f.layer == "0" and f.severity == "error" and f.onset == 0
    assert f.evidence["ratio_lowest_to_output"] < 1e-5
    assert f.evidence["growth_per_layer"] < 0.5
    # no init fixes sigmoid's slope ≤ 1/4 (Xavier still vanishes ×16 per layer): the swap
    assert "sigmoid" in f.remedy.text and "swap_activations" in f.remedy.code
    assert f.remedy.scheme == "kaiming_normal"
    assert "plain stack" in f.remedy.text  # 20 layers, no normalisation


def test_tanh_xavier_is_healthy(data):
    torch.manual_seed(0)
    result = gp.check(gp.init.apply(mlp(20, 128, nn.Tanh), "xavier_normal"), *data)
    assert result.healthy, [str(f) for f in result.findings]


def test_relu_unit_gaussian_explodes_kaiming_is_healthy(data):
    torch.manual_seed(0)
    bad = gp.check(gp.init.apply(mlp(30, 64, nn.ReLU), "normal"), *data).findings
    exploding = [f for f in bad if f.kind == "exploding"]
    assert exploding and exploding[0].evidence["growth_per_layer"] > 3  # ~ sqrt(64/2)
    assert exploding[0].remedy.scheme == "kaiming_normal"
    good = gp.check(gp.init.apply(mlp(30, 64, nn.ReLU), "kaiming_normal"), *data)
    assert good.healthy, [str(f) for f in good.findings]


def test_tanh_weights_times_four_saturate(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(6, 128, nn.Tanh), "xavier_normal")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    findings = gp.check(model, *data).findings
    logits = [f for f in findings if "logits" in str(f.evidence.get("measured_on"))]
    saturated = {f.layer: f for f in findings if f.kind == "saturated" and f not in logits}
    tanh_layers = {str(i) for i, m in enumerate(model) if isinstance(m, nn.Tanh)}
    assert set(saturated) == tanh_layers
    assert not logits  # rules/logit_scale.py judges training runs, not one init check
    # reference: fraction within 1% of tanh's range (0.02) of a bound, by brute force
    with torch.no_grad():
        out = model[:4](data[0])
    expected = float((out.abs() >= 0.98).float().mean())
    assert saturated["3"].evidence["saturated_fraction"] == pytest.approx(expected, abs=1e-6)


def test_relu_bias_minus_three_dead_units_exactly_where_brute_force_says(data):
    """Every ReLU layer is judged: the finding set is the set of layers whose brute-force
    dead fraction (≤ 0 on all 128 examples) is over the threshold, with that fraction."""
    torch.manual_seed(0)
    model = gp.init.apply(mlp(6, 128, nn.ReLU), "kaiming_normal", bias=-3.0)
    findings = gp.check(model, *data).findings
    dead = {f.layer: f for f in findings if f.kind == "dead_units"}
    expected = {}
    with torch.no_grad():
        h = data[0]
        for i, m in enumerate(model):
            h = m(h)
            if isinstance(m, nn.ReLU):
                expected[str(i)] = float((h <= 0).all(dim=0).float().mean())
    over = {k for k, v in expected.items() if v > Thresholds().dead_fraction}
    assert over and set(dead) == over  # layer 1 (11% dead) is not flagged, deeper ones are
    for name in over:
        assert dead[name].evidence["dead_fraction"] == pytest.approx(expected[name])
    assert dead["3"].evidence["dead_fraction"] == 1.0 and dead["3"].severity == "error"


class LogAt(nn.Module):
    def forward(self, x):
        return torch.log(x)


def test_log_of_negative_names_the_module(data):
    model = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), LogAt(), nn.Linear(16, 10))
    findings = gp.check(model, *data).findings
    errors = [f for f in findings if f.kind == "non_finite" and f.severity == "error"]
    assert [f.layer for f in errors] == ["2"]  # the backward NaN is its consequence
    assert errors[0].evidence["phase"] == "forward"
    assert "LogAt turned finite inputs into NaN/Inf" in errors[0].remedy.text
    assert "2 turned finite inputs into NaN/Inf" in errors[0].message


def test_nan_in_the_data_is_reported_as_the_data(data):
    x = data[0].clone()
    x[3, 5] = float("nan")
    model = mlp(3, 16, nn.ReLU)
    findings = gp.check(model, x, data[1]).findings
    errors = [f for f in findings if f.kind == "non_finite" and f.severity == "error"]
    assert [f.layer for f in errors] == ["(input)"]
    assert "data" in errors[0].remedy.text
    assert "the model input contains NaN/Inf" in errors[0].message


def test_vanilla_rnn_vanishes_through_time_and_lstm_forget_bias_helps():
    torch.manual_seed(0)
    x = torch.randn(8, 200, 16)

    class Seq(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.rnn = cell
            self.head = nn.Linear(32, 1)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    rnn = gp.check(Seq(nn.RNN(16, 32, batch_first=True)), x).findings
    through = [f for f in rnn if f.kind == "vanishing" and f.time_step is not None]
    assert through and through[0].layer == "rnn"
    assert through[0].evidence["ratio_first_to_max"] < 1e-2
    assert "LSTM" in through[0].remedy.text

    def first_over_last(model):
        run = gp.check(model, x).run
        norms = run.series("rnn", "rnn_grad_input_t", run.steps[0])
        return norms[0] / norms[-1]

    torch.manual_seed(0)
    default = Seq(nn.LSTM(16, 32, batch_first=True))
    torch.manual_seed(0)
    biased = Seq(nn.LSTM(16, 32, batch_first=True))
    for name, p in biased.rnn.named_parameters():
        if name.startswith("bias_ih"):
            with torch.no_grad():
                p.chunk(4)[1].fill_(3.0)
    assert first_over_last(biased) > 100 * first_over_last(default)
    lstm_findings = gp.check(default, x).findings
    lstm_time = [f for f in lstm_findings if f.time_step is not None]
    assert lstm_time and "forget-gate bias" in lstm_time[0].remedy.text


def test_thresholds_are_overridable(data):
    torch.manual_seed(0)
    run = gp.check(gp.init.apply(mlp(20, 128, nn.Tanh), "xavier_normal"), *data).run
    assert not kinds(diagnose(run))
    strict = diagnose(run, Thresholds(vanishing_ratio=0.999, exploding_ratio=1.001))
    assert kinds(strict) & {"vanishing", "exploding"}


# -- every rule: a run written by hand where it must fire, and one where it must not ------

MODULES, LINEARS = linear_stack(5)
WEIGHTS = [f"{n}.weight" for n in LINEARS]


def _profile(ratio_per_layer: float, step: int = 0):
    """grad_output rms falling by ``ratio_per_layer`` per layer towards the input."""
    top = len(LINEARS) - 1
    return [(n, "grad_output", "rms", ratio_per_layer ** (top - i)) for i, n in enumerate(LINEARS)]


def _acts(stat, value):
    return [(m, "activation", stat, value) for m, t, _ in MODULES if t != "Linear"]


def _updates(value):
    return [(w, "update", "ratio", value) for w in WEIGHTS] + [
        (w, "param_grad", "rms", 1.0) for w in WEIGHTS
    ]


def _stack_run(steps, events=(), modules=MODULES):
    return synthetic_run(modules, steps, params=WEIGHTS, events=events)


def _rnn_run(decay, cell="RNN"):
    run = synthetic_run([("rnn", cell, None), ("head", "Linear", None)], {0: []})
    run.write_step(0, [], series=[("rnn", "rnn_grad_input_t", list(decay))], mark_step=False)
    return run


RELU_MODULES = linear_stack(5, ("ReLU", "relu"))[0]


def _narrow_run(width, depth=8):
    modules, linears = linear_stack(depth, ("ReLU", "relu"))
    shapes = {f"{n}.weight": (width, 16 if i == 0 else width) for i, n in enumerate(linears)}
    shapes[f"{linears[-1]}.weight"] = (10, width)
    rows = [(n, "grad_output", "rms", 1.0) for n in linears]
    return synthetic_run(modules, {0: rows}, params=list(shapes), shapes=shapes)


NAN_AT_4 = (Event(0, "forward", "4", "the output of 4 contained NaN/Inf (0.5 of its values)"),)

# rule -> (a run where it must fire, one where it must not, the kind, its severities)
BROKEN = {
    "depth_profile": (
        lambda: _stack_run({0: _profile(0.1)}),
        lambda: _stack_run({0: _profile(1.0)}),
        "vanishing",
        {"warning"},
    ),
    "fluctuation": (  # 7 hidden ReLU layers of width 5: Σ 1/width = 1.4; of 64: 0.11
        lambda: _narrow_run(5),
        lambda: _narrow_run(64),
        "fluctuation",
        {"warning"},
    ),
    "saturated": (
        lambda: _stack_run({0: _acts("saturated", 0.7)}),
        lambda: _stack_run({0: _acts("saturated", 0.05)}),
        "saturated",
        {"error"},
    ),
    "dead_units": (
        lambda: _stack_run({0: [(m, "activation", "dead", 0.95) for m in "13"]}, (), RELU_MODULES),
        lambda: _stack_run({0: [(m, "activation", "dead", 0.3) for m in "13"]}, (), RELU_MODULES),
        "dead_units",
        {"error"},
    ),
    "non_finite": (
        lambda: _stack_run({0: _profile(1.0)}, NAN_AT_4),
        lambda: _stack_run({0: _profile(1.0)}),
        "non_finite",
        {"error"},
    ),
    "updates": (
        lambda: _stack_run({0: _updates(0.5), 1: _updates(0.5)}),
        lambda: _stack_run({0: _updates(1e-3), 1: _updates(1e-3)}),
        "large_updates",
        {"warning"},
    ),
    "through_time": (  # only the last 3 of 50 steps within 1% of the largest
        lambda: _rnn_run(np.r_[np.full(47, 1e-3), 0.02, 0.2, 1.0]),
        lambda: _rnn_run(np.ones(50)),
        "vanishing",
        {"warning"},
    ),
    "recorded": (
        lambda: _stack_run({}),
        lambda: _stack_run({0: _profile(1.0)}),
        "no_steps",
        {"warning"},
    ),
}


BROKEN.update(TRAINING)  # the training-time rules' cases (tests/diagnose/_runs.py)


def test_every_registered_rule_has_a_known_case():
    assert set(RULES.names()) == set(BROKEN)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_rule_fires_on_its_broken_run_and_not_on_the_healthy_one(name):
    broken, healthy, kind, severities = BROKEN[name]
    found = diagnose(broken(), rules=[name])
    assert found and {f.kind for f in found} == {kind}, found
    assert {f.severity for f in found} == severities
    for f in found:
        assert f.message and f.remedy.text and f.evidence
        assert all(isinstance(v, (int, float, str, list, dict)) for v in f.evidence.values())
    assert diagnose(healthy(), rules=[name]) == []


def test_the_evidence_carries_the_numbers_that_were_written():
    f = diagnose(_stack_run({0: _profile(0.1)}), rules=["depth_profile"])[0]
    assert f.evidence["ratio_lowest_to_output"] == pytest.approx(1e-4)
    assert f.evidence["growth_per_layer"] == pytest.approx(0.1)
    assert f.severity == "warning"  # 1e-4 is above the 1e-5 error line
    f = diagnose(_stack_run({0: _profile(0.01)}), rules=["depth_profile"])[0]
    assert f.severity == "error" and f.evidence["ratio_lowest_to_output"] == pytest.approx(1e-8)
    # reported at the first step that crossed, with how many did
    steps = {0: _profile(1.0), 5: _profile(0.1), 9: _profile(0.1)}
    f = diagnose(_stack_run(steps), rules=["depth_profile"])[0]
    assert (f.step, f.onset, f.evidence["steps_affected"]) == (5, 5, 2)
    assert not math.isnan(f.evidence["worst_ratio"])


def test_diagnose_rejects_what_is_not_a_run():
    with pytest.raises(gp.GradprobeError, match="Run"):
        gp.diagnose({"not": "a run"})
