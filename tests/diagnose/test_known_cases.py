"""Each rule against a known truth built here (issue 4's cases)."""

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import RULES, Thresholds, diagnose


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
    assert f.layer == "0" and f.severity == "error"
    assert f.evidence["ratio_lowest_to_output"] < 1e-5
    assert f.evidence["growth_per_layer"] < 0.5
    assert "sigmoid" in f.remedy.text and f.remedy.scheme == "xavier_normal"
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


def test_try_remedies_ranks_a_variance_preserving_scheme_first_and_unit_gaussian_last(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(30, 64, nn.ReLU), "normal")
    before = [p.clone() for p in model.parameters()]
    ranking = gp.diagnose.try_remedies(model, *data)
    order = [c.scheme for c in ranking.candidates]
    assert order[0] in ("kaiming_normal", "lsuv")
    assert order[-1] == "as given"
    assert kinds(ranking.best.findings) == set()
    assert ranking.best.code.startswith("gp.init.apply(model")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_tanh_weights_times_four_saturate(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(6, 128, nn.Tanh), "xavier_normal")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    findings = gp.check(model, *data).findings
    saturated = {f.layer: f for f in findings if f.kind == "saturated"}
    tanh_layers = {str(i) for i, m in enumerate(model) if isinstance(m, nn.Tanh)}
    assert set(saturated) == tanh_layers
    # reference: fraction within 1% of tanh's range (0.02) of a bound, by brute force
    with torch.no_grad():
        out = model[:4](data[0])
    expected = float((out.abs() >= 0.98).float().mean())
    assert saturated["3"].evidence["saturated_fraction"] == pytest.approx(expected, abs=1e-6)


def test_relu_bias_minus_three_dead_units_with_the_right_fraction(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(6, 128, nn.ReLU), "kaiming_normal", bias=-3.0)
    findings = gp.check(model, *data).findings
    dead = {f.layer: f for f in findings if f.kind == "dead_units"}
    with torch.no_grad():
        h = model[:2](data[0])
    expected = float((h <= 0).all(dim=0).float().mean())
    if expected > Thresholds().dead_fraction:
        assert dead["1"].evidence["dead_fraction"] == pytest.approx(expected)
    assert dead["3"].evidence["dead_fraction"] == 1.0 and dead["3"].severity == "error"


class LogAt(nn.Module):
    def forward(self, x):
        return torch.log(x)


def test_log_of_negative_names_the_module(data):
    model = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), LogAt(), nn.Linear(16, 10))
    findings = gp.check(model, *data).findings
    nf = [f for f in findings if f.kind == "non_finite" and f.evidence["phase"] == "forward"]
    assert nf[0].layer == "2" and nf[0].severity == "error"
    assert "log" in nf[0].remedy.text


def test_nan_in_the_data_is_reported_as_the_data(data):
    x = data[0].clone()
    x[3, 5] = float("nan")
    model = mlp(3, 16, nn.ReLU)
    findings = gp.check(model, x, data[1]).findings
    first = next(f for f in findings if f.kind == "non_finite")
    assert first.layer == "(input)"
    assert "data" in first.remedy.text


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


@pytest.mark.parametrize("name", RULES.names())
def test_every_rule_runs_through_the_registry_on_a_healthy_and_a_broken_run(name, data):
    torch.manual_seed(0)
    healthy = gp.check(gp.init.apply(mlp(5, 32, nn.Tanh), "xavier_normal"), *data).run
    assert RULES.get(name).__call__ is not None
    assert [f for f in diagnose(healthy, rules=[name]) if f.severity != "info"] == []
    broken = gp.init.apply(mlp(12, 32, nn.Tanh), "normal", std=3.0)
    found = diagnose(gp.check(broken, *data).run, rules=[name])
    for f in found:
        assert f.evidence and f.message and f.remedy.text


def test_diagnose_rejects_what_is_not_a_run():
    with pytest.raises(gp.GradprobeError, match="Run"):
        gp.diagnose({"not": "a run"})


def test_check_try_remedies_attaches_the_ranking(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(6, 32, nn.Sigmoid), "standard")
    result = gp.check(model, *data, try_remedies=True)
    assert result.ranking is not None
    assert result.ranking.best.score <= result.ranking.candidates[-1].score
    assert "as given" in {c.scheme for c in result.ranking.candidates}
