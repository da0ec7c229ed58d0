"""``gradprobe check``: exit 0 healthy, 1 with findings, 2 on bad usage (one line)."""

import json
import sys
import textwrap

import pytest
import torch

from gradprobe.cli import main

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def deep(depth=20, act="tanh", std=None):
        A = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[act]
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(32, 32), A()]
        model = nn.Sequential(*layers, nn.Linear(32, 4))
        for p in model.parameters():
            if p.dim() == 2 and std is None:
                nn.init.xavier_normal_(p, gain=5 / 3)
            elif p.dim() == 2:
                nn.init.normal_(p, std=std)
        return model

    class Tiny(nn.Sequential):
        def __init__(self):
            super().__init__(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))

    def boom():
        raise RuntimeError("factory failed")
    """
)


@pytest.fixture
def models(tmp_path, monkeypatch):
    (tmp_path / "cli_models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("cli_models", None)


def run(args):
    try:
        main(args)
    except SystemExit as done:
        return done.code or 0
    return 0


def test_healthy_model_exits_0_and_prints_the_table(models, capsys):
    assert run(["check", "cli_models:deep", "--input-shape", "64,32"]) == 0
    out = capsys.readouterr().out
    assert "No findings" in out and "Linear" in out


def test_vanishing_model_exits_1_with_json_findings(models, capsys):
    args = ["check", "cli_models:deep", "--input-shape", "64,32", "--json"]
    assert run([*args, "--kwargs", '{"act": "sigmoid", "std": 0.05}']) == 1
    payload = json.loads(capsys.readouterr().out)
    assert not payload["healthy"]
    assert "vanishing" in {f["kind"] for f in payload["findings"]}


def test_class_factory_input_file_and_try_inits(models, capsys):
    torch.save(torch.randn(16, 8), models / "x.pt")
    args = ["check", "cli_models:Tiny", "--input", "x.pt", "--try-inits", "--json"]
    assert run(args) == 0
    ranking = json.loads(capsys.readouterr().out)["ranking"]
    assert {r["scheme"] for r in ranking} >= {"kaiming_normal", "lsuv", "as given"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cli_models:boom", "--input-shape", "2,32"], "factory failed"),
        (["cli_models:deep", "--input-shape", "2,31"], "forward failed"),
        (["no_such_module:deep", "--input-shape", "2,32"], "cannot import"),
        (["cli_models:nothing", "--input-shape", "2,32"], "no attribute"),
        (["cli_models", "--input-shape", "2,32"], "MODULE:FACTORY"),
        (["cli_models:deep", "--input-shape", "2,32", "--kwargs", "{bad"], "not valid JSON"),
        (["cli_models:deep", "--input-shape", "two"], "positive integers"),
        (["cli_models:deep", "--input", "missing.pt"], "does not exist"),
        (["cli_models:deep"], "exactly one of"),
        (["cli_models:deep", "--input-shape", "2,32", "--loss", "hinge"], "--loss"),
    ],
)
def test_bad_usage_exits_2_with_one_line(models, capsys, args, message):
    assert run(["check", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_untrusted_pickle_is_refused(models, capsys):
    import pickle

    (models / "evil.pt").write_bytes(pickle.dumps({"a": object()}, protocol=2))
    assert run(["check", "cli_models:Tiny", "--input", "evil.pt"]) == 2
    assert "weights_only" in capsys.readouterr().err
