"""Regression tests for the rendering layer (issue 14, "The terminal and the report"): each
test is named after what was wrong."""

from __future__ import annotations

import io
import math
import re
import warnings

import pytest
import torch
from rich.cells import cell_len
from rich.console import Console
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeWarning
from gradprobe.report.html import render_html
from gradprobe.report.summary import cell, fmt, pct, per_layer, verdict
from gradprobe.report.tables import check_table, layer_table, shorten
from gradprobe.report.terminal import findings_table

WIDTHS = (60, 80, 120, 200)


def _render(renderable, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


# ------------------------------------------------------------------------ models with long names


class _SelfAttention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        a = torch.softmax(self.query(x) @ self.key(x).transpose(-1, -2) / x.shape[-1] ** 0.5, -1)
        return a @ self.value(x)


class _Output(nn.Module):
    def __init__(self, d_in, d):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(d_in, d), nn.LayerNorm(d)

    def forward(self, h, x):
        return self.LayerNorm(self.dense(h) + x)


class _Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.add_module("self", _SelfAttention(d))
        self.output = _Output(d, d)

    def forward(self, x):
        return self.output(self._modules["self"](x), x)


class _Layer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attention = _Attention(d)
        self.intermediate = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU())
        self.output = _Output(2 * d, d)

    def forward(self, x):
        x = self.attention(x)
        return self.output(self.intermediate(x), x)


class HFLike(nn.Module):
    """The nesting of a Hugging Face BERT: model.encoder.layer.N.attention.self.query, ..."""

    def __init__(self, d=16, layers=2):
        super().__init__()
        self.model = nn.Module()
        self.model.encoder = nn.Module()
        self.model.encoder.layer = nn.ModuleList(_Layer(d) for _ in range(layers))

    def forward(self, x):
        for layer in self.model.encoder.layer:
            x = layer(x)
        return x


def _transformer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    holder = nn.Module()
    holder.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    holder.forward = lambda x: holder.encoder(x)
    return holder, torch.randn(4, 10, 32)


@pytest.fixture(scope="module")
def long_names():
    """Two checks: a torch TransformerEncoder and an HF-like nesting."""
    model, x = _transformer()
    torch.manual_seed(0)
    return {"transformer": gp.check(model, x), "hf": gp.check(HFLike(), torch.randn(2, 6, 16))}


def _rows_and_cells(table, width):
    """The fitted table's body lines, and per row the cells of its number columns."""
    fitted = table.fit(width)
    text = _render(fitted, width)
    lines = [line for line in text.splitlines() if line.startswith("│")]
    numbers = [i for i, c in enumerate(fitted.columns) if c.header.plain not in ("layer", "type")]
    cells = [[str(fitted.columns[i]._cells[r]) for i in numbers] for r in range(fitted.row_count)]
    return text, lines, cells, fitted


# ----------------------------------------------------------------------------- the terminal


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("which", ["transformer", "hf"])
def test_numbers_are_whole_at_every_width_not_cut_with_an_ellipsis(long_names, which, width):
    """31 numbers read `1.68e…` or `0.000…` at 80 columns: every number is whole now, each
    in its row, and the table keeps within the width (columns left out are named)."""
    result = long_names[which]
    text, lines, cells, fitted = _rows_and_cells(check_table(result.run, result.loss), width)
    assert max(cell_len(line) for line in text.splitlines()) <= width
    assert len(lines) == len(cells) == len(per_layer(result.run).rows)
    for line, row in zip(lines, cells, strict=True):
        for number in row:
            assert "…" not in number
            if number:
                assert f" {number} │" in line, (number, line)
    if len(fitted.columns) < len(check_table(result.run, result.loss).columns):
        assert "Left out at" in text
    if width >= 200:
        assert "Left out" not in text  # everything fits in a wide terminal


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("which", ["transformer", "hf"])
def test_similar_layer_names_stay_distinct_not_cut_alike(long_names, which, width):
    """At 120 columns `encoder.layers.0.linear1` and `…linear2` both read
    `encoder.layers.0.l…`: every shown name is now distinct, and keeps its last part."""
    result = long_names[which]
    _, lines, _, _ = _rows_and_cells(check_table(result.run, result.loss), width)
    shown = [line.split("│")[1].strip() for line in lines]
    names = [r["layer"] for r in per_layer(result.run).rows]
    assert len(set(shown)) == len(names) == len(set(names))
    for name, short in zip(names, shown, strict=True):
        assert short == name or short.endswith(name.rpartition(".")[2][-4:]), (name, short)
    if which == "transformer" and width >= 120:
        assert "encoder.layers.0.linear1" in shown and "encoder.layers.0.linear2" in shown


def test_names_that_differ_only_in_the_middle_stay_distinct():
    names = [
        "model.encoder.layer.0.attention.output.dense",
        "model.encoder.layer.1.attention.output.dense",
        "model.encoder.layer.0.output.dense",
        "model.decoder.layer.0.output.dense",
        "m.e.l.0.output.dense",  # a real name equal to another's abbreviation
        "a" * 40 + "x",
        "a" * 40 + "y",
    ]
    for width in (6, 10, 14, 20, 30, 60):
        shown = shorten(names, width)
        assert len(set(shown.values())) == len(names), (width, shown)
    assert shorten(["encoder.layers.0.linear1"], 14) == {
        "encoder.layers.0.linear1": "e.l.0.linear1"
    }


def test_check_table_gradient_columns_are_rms_not_a_norm_beside_an_rms_ratio(long_names):
    """The `∂L/∂out` column was a norm beside `÷ output`, a ratio of rms values: both are rms
    now, and the caption says what each gradient column measures."""
    result = long_names["transformer"]
    table = check_table(result.run, result.loss)
    headers = [c.header for c in table.columns]
    assert "∂L/∂out rms" in headers and "rms ÷ last" in headers and "‖∂L/∂W‖" in headers
    assert "∂L/∂out" not in headers and "÷ output" not in headers
    text = _render(table, 200)
    assert "root mean square" in text and "encoder.layers.1.norm2" in text  # the reference
    rows = per_layer(result.run).rows
    ref = next(r for r in rows if r["layer"] == "encoder.layers.1.norm2")
    for r in rows:
        if r["grad_ratio"] is not None:
            assert r["grad_ratio"] == pytest.approx(r["grad_rms"] / ref["grad_rms"])


@pytest.fixture(scope="module")
def dead_check():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        model[0].bias[:4] = -100.0  # 4 of 32 units dead for the whole batch: 12.5%
    return gp.check(model, torch.randn(64, 8))


def test_dead_units_are_a_percentage_in_html_and_terminal_not_a_fraction(dead_check):
    rows = per_layer(dead_check.run).rows
    dead = next(r["dead"] for r in rows if r["layer"] == "1")
    assert dead >= 4 / 32
    shown = pct(dead)
    assert shown.endswith("%")
    html = render_html(dead_check.run, dead_check.findings, figures=[])
    assert f">{shown}</td>" in html and f">{dead:.3g}</td>" not in html
    terminal = _render(check_table(dead_check.run, dead_check.loss), 120)
    assert f" {shown} " in terminal


def test_evidence_fractions_are_percentages_in_the_html():
    from gradprobe.report.html import _evidence

    shown = dict(_evidence({"dead_fraction": 0.0312, "threshold": 0.5, "steps_affected": 3}))
    assert shown == {"dead_fraction": "3.12%", "threshold": "50%", "steps_affected": "3"}
    assert dict(_evidence({"ratio": 0.0312, "threshold": 0.01})) == {
        "ratio": "0.0312",
        "threshold": "0.01",
    }


def test_browser_status_line_is_hidden_not_shown_under_the_report(dead_check):
    """`report-ok images=4 undecoded=[] errors=[]` showed under the page: the element is
    hidden now (the browser test still reads its text)."""
    html = render_html(dead_check.run, dead_check.findings, figures=["profile"])
    assert re.search(r'<div id="gp-status" hidden[ >]', html)
    assert "#gp-status {" not in html  # no style that would show it


def test_one_step_report_has_no_notes_about_figures_over_training(dead_check):
    html = render_html(dead_check.run, dead_check.findings)
    assert "more than one step" not in html and "over training" not in html
    assert "no recurrent layer" not in html  # nor the RNN figure of a model without one


def test_findings_code_folds_not_cut_at_80_columns(long_names):
    """The remedy's code read `gp.init.apply(mode…`: it folds onto the next line instead."""
    findings = long_names["transformer"].findings
    codes = [f.remedy.code for f in findings if f.remedy.code]
    assert codes
    for width in (60, 80):
        text = _render(findings_table(findings), width)
        assert "…" not in text
        flat = re.sub(r"\s+", "", text)
        for code in codes:
            assert re.sub(r"\s+", "", code) in flat


# --------------------------------------------------------------------------------- the verdict


def _guarded(tmp_path, nan_steps, steps=20):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    with gp.watch(model, optimizer=opt, path=tmp_path / "g.sqlite", guard=True):
        for step in range(steps):
            x = torch.randn(32, 8, generator=g)
            y = x.sum(1, keepdim=True)
            if step in nan_steps:
                x[0, 0] = float("nan")
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            opt.zero_grad()
    return gp.Run.load(tmp_path / "g.sqlite")


def test_guard_skip_of_one_nan_batch_is_a_warning_not_a_model_that_will_not_train(tmp_path):
    """`gradprobe report` printed "2 error(s): gradients will not train this model as it is."
    for a guarded run that skipped one NaN batch and trained on."""
    run = _guarded(tmp_path, nan_steps={7})
    findings = gp.diagnose(run)
    assert any(f.kind == "non_finite" and f.severity == "error" for f in findings)
    v = verdict(findings, run)
    assert v.word == "warnings" and v.exit_code == 1
    assert "1 step skipped by the guard" in v.sentence and "step 7" in v.sentence
    assert "training went on to step 19" in v.sentence
    assert "will not train" not in v.sentence and "error" not in v.sentence
    html = render_html(run, findings, figures=[])
    assert "1 step skipped by the guard" in html and 'class="verdict warnings"' in html


def test_guarded_run_that_never_recovered_is_still_an_error(tmp_path):
    run = _guarded(tmp_path, nan_steps=set(range(7, 20)))
    v = verdict(gp.diagnose(run), run)
    assert v.word == "errors" and v.exit_code == 1
    assert "skipped by the guard" in v.sentence and "did not recover" in v.sentence


def test_zero_recorded_steps_is_a_warning_never_healthy(tmp_path):
    """`watch` with neither optimizer= nor probe.step() records nothing; the report said
    "Healthy … gradients reach every layer"."""
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    with warnings.catch_warnings():  # the probe warns at close too (its own test holds that)
        warnings.simplefilter("ignore", GradprobeWarning)
        with gp.watch(model, path=tmp_path / "empty.sqlite"):
            model(torch.randn(8, 4)).sum().backward()
    run = gp.Run.load(tmp_path / "empty.sqlite")
    assert run.steps == []
    v = verdict([], run)
    assert v.word != "healthy" and v.exit_code == 1 and "No step was recorded" in v.sentence
    html = render_html(run, [], figures=[])
    assert 'class="verdict healthy"' not in html and "No step was recorded" in html
    assert "look healthy" not in html  # "No findings" is not a clean bill either
    assert "look healthy" not in _render(findings_table([], verdict=v), 80)
    text = _render(layer_table(run), 80)
    assert "no logged step" in text


def test_healthy_verdict_exits_0(dead_check):
    v = verdict([], dead_check.run)
    assert v.word == "healthy" and v.exit_code == 0 and "over 1 logged step" in v.sentence
    assert verdict([]).exit_code == 0  # without a run: the findings alone


# ------------------------------------------------------------ more of the same kinds (found)


def test_nan_value_shows_as_nan_not_a_blank_cell():
    """A value recorded as NaN read as "" (as if never recorded) in both tables."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(8, 4)
    x[0, 0] = float("nan")
    result = gp.check(model, x)
    rows = per_layer(result.run).rows
    first = next(r for r in rows if r["layer"] == "0")
    assert math.isnan(first["act_std"])
    terminal = _render(check_table(result.run, result.loss), 120)
    assert " NaN │" in terminal
    html = render_html(result.run, result.findings, figures=[])
    assert '<td data-v="">NaN</td>' in html


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.000252, "2.52e-4"),
        (0.00252, "0.00252"),
        (2.87e-06, "2.87e-6"),
        (1680.4, "1680"),
        (999.6, "1000"),
        (99999.0, "1e5"),
        (6.1e29, "6.1e29"),
        (-1.234e-30, "-1.23e-30"),
        (1e300, "1e300"),
        (float("inf"), "Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        (0.0, "0"),
        (None, ""),
        (0.5, "0.5"),
        (123.0, "123"),
        (12345.0, "1.23e4"),
    ],
)
def test_numbers_print_three_digits_in_at_most_10_characters(value, shown):
    """`.3g` wrote 1.68e+03 and 2.87e-06 (8 characters where 4 and 7 do); nothing prints
    wider than 10 characters, so a column fitted to its cells never cuts one."""
    assert fmt(value) == shown
    assert len(fmt(value)) <= 10


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.0312, "3.12%"), (0.0, "0%"), (1.0, "100%"), (0.99999, ">99.9%"), (1e-6, "<0.01%")],
)
def test_shares_never_read_0_or_100_percent_when_they_are_not(value, shown):
    assert pct(value) == shown
    assert cell("dead", value) == shown and cell("act_std", 0.0312) == "0.0312"


class _Named(nn.Module):
    def __init__(self, names):
        super().__init__()
        self.blocks = nn.ModuleDict({n: nn.Linear(8, 8) for n in names})

    def forward(self, x):
        for m in self.blocks.values():
            x = torch.tanh(m(x))
        return x


def test_control_characters_and_markup_in_layer_names_do_not_break_rows():
    names = ["line\nbreak", "[bold red]markup[/]", "层" * 12, "tab\there"]
    result = gp.check(_Named(names), torch.randn(4, 8))
    for width in (60, 120):
        text = _render(check_table(result.run, result.loss), width)
        assert max(cell_len(line) for line in text.splitlines()) <= width
        body = [line for line in text.splitlines() if line.startswith("│")]
        assert len(body) == len(per_layer(result.run).rows)  # one line per row
        assert "line\\nbreak" in text.replace("blocks.", "").replace("b.", "")
        assert "[bold red]markup[/]" in text  # shown as text, never as style
    findings = _render(findings_table(result.findings), 80) if result.findings else ""
    assert "\nbreak" not in findings


@pytest.mark.parametrize("width", [8, 20, 30, 40])
def test_very_narrow_terminal_keeps_the_layer_names(long_names, width):
    result = long_names["hf"]
    text = _render(check_table(result.run, result.loss), width)
    assert max(cell_len(line) for line in text.splitlines()) <= width
    assert "Left out" in text and ("(input)" in text or width < 20)


def test_share_column_that_holds_the_finding_is_left_out_first_at_60_columns():
    """Narrowing the terminal dropped `saturated` (100%, the error itself) before the type."""
    from collections import OrderedDict

    torch.manual_seed(0)
    names = ("a_rather_long_block_name_number_one", "its_tanh_activation", "a_head")
    layers = (nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    model = nn.Sequential(OrderedDict(zip(names, layers, strict=True)))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(100.0)
    result = gp.check(model, torch.randn(16, 8))
    assert any(f.kind == "saturated" for f in result.findings)
    share = next(r["saturated"] for r in per_layer(result.run).rows if r["saturated"])
    text = _render(check_table(result.run, result.loss), 60)
    assert "saturated" not in text.split("Left out")[-1] and f" {pct(share)} │" in text


def test_one_layer_model_has_a_table():
    result = gp.check(nn.Sequential(nn.Linear(3, 2)), torch.randn(5, 3))
    rows = per_layer(result.run).rows
    assert [r["layer"] for r in rows] == ["(input)", "0"]
    assert rows[1]["grad_ratio"] == 1.0 and rows[1]["weight_grad"] is not None
    text = _render(check_table(result.run, result.loss), 60)
    assert "(input)" in text and "Linear" in text


def test_infinite_loss_shows_as_inf_in_the_title():
    model = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.fill_(1e30)
    result = gp.check(model, torch.full((2, 2), 1e10))
    assert not math.isfinite(result.loss)
    assert "loss Inf" in _render(check_table(result.run, result.loss), 80)


def test_saving_a_figure_onto_a_bad_path_is_a_gradprobe_error_not_an_oserror(tmp_path):
    from gradprobe.report.figures import save

    (tmp_path / "taken").write_text("x")
    fig = _tiny_figure()
    with pytest.raises(gp.GradprobeError, match="cannot write the figure"):
        save(fig, tmp_path / "taken" / "profile.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(gp.GradprobeError, match="is a folder"):
        save(fig, tmp_path / "folder.png")


def _tiny_figure():
    from gradprobe.report.figures._base import figure

    fig = figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    return fig


def test_figure_labels_of_similar_layers_read_alike(long_names):
    """Axis labels kept the last characters only: `…put.dense` for both
    `model.encoder.layer.0.attention.output.dense` and `...layer.1...`."""
    from gradprobe.report.figures import profile_figure

    run = long_names["hf"].run
    labels = [t.get_text() for t in profile_figure(run).axes[0].get_xticklabels()]
    assert len(labels) == len(set(labels)) > 20


def test_dollar_signs_in_layer_names_start_mathtext_in_figures(tmp_path):
    """A layer `cost$a$` drew as math (two `$` start matplotlib's mathtext), and a lone
    backslash command in one could fail when the figure was saved."""
    from gradprobe.report.figures import profile_figure, save

    result = gp.check(_Named(["cost$a$", "r$\\frac$", "new\nline"]), torch.randn(4, 8))
    fig = profile_figure(result.run)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert any("cost\\$a\\$" in t for t in labels) and not any("\n" in t for t in labels)
    assert save(fig, tmp_path / "p.png").stat().st_size > 1000


def test_phase_diagram_of_a_point_off_the_grid_is_a_blank_panel():
    """A bias of -100 gave σ_b² = 1250: the point stretched the axis to 1300 while the map
    covered 0..0.5, so the panel was blank."""
    from gradprobe.report.figures import phase_diagram_figure

    fig = phase_diagram_figure("relu", [(0.33, 1250.0), (float("nan"), 1.0)], grid=4, max_depth=4)
    mesh = fig.axes[0].collections[0]
    covered = mesh.get_coordinates()[..., 1].max()
    assert covered >= 1250.0 >= fig.axes[0].get_ylim()[0]


def test_nan_layer_is_only_a_gap_in_the_profile_figure():
    """A layer whose std was NaN vanished from the log axis with no mark (zeros had one)."""
    from gradprobe.report.figures import profile_figure, profiles_figure

    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(8, 4)
    x[0, 0] = float("nan")
    run = gp.check(model, x).run
    fig = profile_figure(run)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert "NaN/Inf" in labels
    marks = next(line for line in fig.axes[0].lines if line.get_label() == "NaN/Inf")
    assert len(marks.get_xdata()) == 3  # all three modules turned NaN
    many = profiles_figure([run], ["nan"], quantity="activation")
    assert any(line.get_marker() == "X" for line in many.axes[0].lines)
