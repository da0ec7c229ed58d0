"""``gradprobe fix``: exit 0 when the best trial is healthy and beats the model as given, 1
when no remedy helps, 2 on bad usage (one line on stderr)."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from _factories import run_cli as run
from _factories import user_module

from .conftest import circle_data

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def sigmoid_stack(depth=6):
        layers = []
        for i in range(depth):
            layers += [nn.Linear(2 if i == 0 else 16, 16), nn.Sigmoid()]
        return nn.Sequential(*layers, nn.Linear(16, 2))

    def small(n_in=2):
        return nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, 2))
    """
)


@pytest.fixture
def models(tmp_path, monkeypatch):
    with user_module(tmp_path, monkeypatch, "cli_fix_models", MODELS) as folder:
        torch.save(circle_data(), folder / "circle.pt")
        yield folder


def test_a_repaired_model_exits_0_with_the_code_to_apply(models, capsys):
    args = ["fix", "cli_fix_models:sigmoid_stack", "--data", "circle.pt", "--steps", "60"]
    args += ["--optimizer", "sgd", "--lr", "0.1", "--candidates", "activation", "--html", "f.html"]
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "activation → ReLU, He init" in out and "gp.fix.swap_activations" in out
    assert (models / "f.html").is_file()


def test_no_remedy_helps_a_healthy_model_exit_1(models, capsys):
    args = ["fix", "cli_fix_models:small", "--data", "circle.pt", "--steps", "100", "--lr", "0.01"]
    assert run([*args, "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert not payload["improved"] and payload["best"]["name"] == "baseline (as given)"


def test_input_shape_with_a_teacher_task(models, capsys):
    args = ["fix", "cli_fix_models:small", "--input-shape", "256,8", "--kwargs", '{"n_in": 8}']
    assert run([*args, "--steps", "40", "--candidates", "lr", "--json"]) in (0, 1)
    assert "trials" in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "exactly one of --data and --input-shape"),
        (["--data", "missing.pt"], "does not exist"),
        (["--data", "single.pt"], "must hold (inputs, targets)"),
        (["--data", "circle.pt", "--candidates", "magic"], "unknown remedy 'magic'"),
        (["--data", "circle.pt", "--optimizer", "rmsprop"], "--optimizer must be one of"),
        (["--input-shape", "64,2", "--task", "ranking"], "--task must be"),
        (["--data", "circle.pt", "--steps", "0"], "steps must be a positive integer"),
    ],
)
def test_bad_usage_exits_2_with_one_line(models, capsys, extra, message):
    torch.save(torch.randn(4, 2), models / "single.pt")
    assert run(["fix", "cli_fix_models:small", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_pickle_that_is_not_a_tensor_file_exits_2(models, capsys):
    import pickle

    (models / "evil.pt").write_bytes(pickle.dumps(object()))
    assert run(["fix", "cli_fix_models:small", "--data", "evil.pt"]) == 2
    assert "weights_only=True" in capsys.readouterr().err
