"""Regression tests (issue 14, the command line): every usage mistake exits 2 with one line
on stderr and no traceback; the exit code of ``report`` follows ``check``'s rule."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.cli import main


def _run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as done:
        code = done.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_usage_error(code, err):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gradprobe: error:")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["check"],  # typer._click MissingParameter, not click's: it escaped as a traceback
        ["theory", "--depth", "abc"],
        ["no-such-command"],
        ["inits", "--no-such-option"],
        ["run", "--workers", "x", "matrix_chain"],
        ["inits", "zzz"],  # printed an empty table and exited 0
        ["check", "no_module:f", "--input-shape", "100000000000,20"],
    ],
)
def test_usage_mistake_exits_2_with_one_line_not_a_traceback(args, capsys):
    code, _, err = _run(args, capsys)
    _one_line_usage_error(code, err)


def test_huge_input_shape_is_refused_before_allocating(capsys, tmp_path, monkeypatch):
    (tmp_path / "huge_models.py").write_text(
        "from torch import nn\ndef f():\n    return nn.Sequential(nn.Linear(20, 2), nn.ReLU())\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = _run(["check", "huge_models:f", "--input-shape", "100000000000,20"], capsys)
    _one_line_usage_error(code, err)
    assert "values" in err and "first dimension" in err
    sys.modules.pop("huge_models", None)


def test_no_arguments_prints_help_and_exits_2_in_a_real_process():
    done = subprocess.run(
        [sys.executable, "-m", "gradprobe"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "NoArgsIsHelpError" not in done.stderr
    assert "check" in done.stdout and "Usage" in done.stdout


@pytest.fixture
def stored(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(32, 32), nn.Sigmoid())])
    for p in model.parameters():
        nn.init.normal_(p, std=0.01) if p.dim() == 2 else nn.init.zeros_(p)
    path = tmp_path / "broken.sqlite"
    gp.check(model, torch.randn(64, 32), path=path)
    healthy = tmp_path / "healthy.sqlite"
    gp.check(
        nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)), torch.randn(64, 8), path=healthy
    )
    return path, healthy


def test_report_exit_code_follows_checks_rule(stored, capsys):
    broken, healthy = stored
    code, out, _ = _run(["report", str(broken)], capsys)
    assert code == 1, out  # it printed errors and exited 0
    code, out, _ = _run(["report", str(healthy)], capsys)
    assert code == 0, out


def test_report_png_onto_an_existing_file_is_a_usage_error(stored, capsys, tmp_path):
    broken, _ = stored
    existing = tmp_path / "taken.png"
    existing.write_bytes(b"x")
    code, _, err = _run(["report", str(broken), "--png", str(existing)], capsys)
    _one_line_usage_error(code, err)
    assert "folder" in err
