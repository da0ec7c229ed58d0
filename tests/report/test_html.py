"""The HTML report: one self-contained file, everything recorded escaped, and the CLI."""

import re

import pytest
import torch

import gradprobe as gp
from _factories import run_cli as _cli
from _factories import user_module
from gradprobe.cli import main
from gradprobe.errors import GradprobeError
from gradprobe.report.html import render_html, write_html


@pytest.fixture(scope="module")
def evil_html(evil_report):
    return evil_report.read_text()


def test_report_is_one_self_contained_file(evil_html):
    assert evil_html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", evil_html)  # nothing fetched
    assert evil_html.count("data:image/png;base64,") >= 4
    for section in (
        'id="verdict"',
        'id="findings"',
        'id="layer-table"',
        'id="figures"',
        'id="config"',
        "Environment",
    ):
        assert section in evil_html


def test_recorded_strings_are_escaped(evil_html, evil):
    EVIL, _ = evil
    assert EVIL not in evil_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in evil_html
    assert "<i>" not in evil_html and "a&amp;b&#34;c&#39;&lt;i&gt;" in evil_html
    assert evil_html.count("<script") == 2  # the template's own two scripts, nothing else


def test_findings_have_evidence_and_remedy(tmp_path):
    model = torch.nn.Sequential(*[torch.nn.Linear(32, 32) for _ in range(12)])
    for layer in model:
        torch.nn.init.normal_(layer.weight, std=0.01)  # vanishes
    result = gp.check(model, torch.randn(16, 32))
    assert not result.healthy
    text = result.save_html(tmp_path / "check.html").read_text()
    assert 'class="verdict errors"' in text or 'class="verdict warnings"' in text
    assert "vanishing" in text and "Remedy:" in text and "evidence:" in text
    fragment = result._repr_html_()
    assert fragment.lstrip().startswith("<style>") and "<html" not in fragment
    assert "vanishing" in fragment and "data:image/png;base64," in fragment


def test_healthy_verdict_and_table_sorting_hooks(mlp_run):
    text = render_html(mlp_run, findings=[], figures=["profile"])
    assert 'class="verdict healthy"' in text and "No findings" in text
    rows = text.count('<tr><td class="name" data-v=')
    assert 'class="sortable"' in text and rows == 10  # the input and the 9 modules
    assert 'id="theory"' in text  # the stored prediction, as a table


def test_cli_report_writes_html_and_pngs(rnn_run, tmp_path, capsys):
    args = ["report", str(rnn_run), "--html", str(tmp_path / "r.html"), "--png", str(tmp_path)]
    assert _cli(args) == 1  # the RNN forgets through time: findings exit 1, as check does
    out = capsys.readouterr().out
    assert "layers at step 0" in out and "report:" in out and "not drawn:" in out
    assert (tmp_path / "r.html").stat().st_size > 50_000
    assert {p.name for p in tmp_path.glob("*.png")} >= {"profile.png", "recurrent.png"}


def test_the_report_did_not_say_the_run_s_device_regression(rnn_run, capsys):
    """``gradprobe report`` names the device the run's model lived on (``meta["device"]``),
    and the HTML report's run configuration holds it."""
    _cli(["report", str(rnn_run)])
    assert "layers, on cpu" in " ".join(capsys.readouterr().out.split())  # rich wraps
    assert "&#34;device&#34;: &#34;cpu&#34;" in render_html(gp.Run.load(rnn_run), findings=[])


def test_cli_check_html(tmp_path, monkeypatch, capsys):
    source = (
        "from torch import nn\n\n"
        "def tiny():\n    return nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))\n"
    )
    args = [
        "check",
        "html_models:tiny",
        "--input-shape",
        "16,8",
        "--html",
        str(tmp_path / "c.html"),
    ]
    with user_module(tmp_path, monkeypatch, "html_models", source):
        assert _cli(args) in (0, 1)
    assert "report:" in capsys.readouterr().out
    text = (tmp_path / "c.html").read_text()
    assert text.startswith("<!DOCTYPE html>") and 'id="theory"' in text  # a plain stack


def test_bad_paths(tmp_path, mlp_run, capsys):
    with pytest.raises(GradprobeError, match=r"\.html"):
        write_html(mlp_run, tmp_path / "r.txt")
    with pytest.raises(SystemExit) as done:
        main(["report", str(tmp_path / "missing")])
    assert done.value.code == 2 and "no run file" in capsys.readouterr().err


def test_evil_model_check_report(tmp_path, evil):
    EVIL, Evil = evil
    result = gp.check(Evil(), torch.randn(8, 32))
    text = result.save_html(tmp_path / "e.html").read_text()
    assert EVIL not in text and EVIL not in result._repr_html_()


def test_run_report_rich_display_and_save(rnn_run, tmp_path):
    from gradprobe.report.html import Report

    report = Report(rnn_run)
    fragment = report._repr_html_()
    assert "<html" not in fragment and "vanishing" in fragment  # the RNN forgets through time
    assert report.save(tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_report_on_an_experiment_folder_names_its_runs(tmp_path, mlp_run, capsys):
    import shutil

    unit = tmp_path / "exp" / "units" / "seed=0"
    unit.mkdir(parents=True)
    shutil.copy(mlp_run / "run.sqlite", unit / "init.sqlite")
    assert _cli(["report", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert "experiment folder with 1 runs" in err and "init.sqlite" in err
