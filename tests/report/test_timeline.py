"""The timeline: the loss with every finding's onset marked, the lines that explain the causes
below, a clean note when the run has no loss, and its own section in the HTML report."""

import io

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import diagnose
from gradprobe.report.figures import FIGURES, MissingData, run_figures, timeline_figure
from gradprobe.report.figures.timeline import explaining_line
from gradprobe.report.html import render_html
from gradprobe.run import RunWriter


def _run(loss, ratios):
    """A hand-written training run: the loss on every step, update ratios on logged steps."""
    run = RunWriter.create(None)
    run.add_layer("(model)", "module")
    for name, t in (("0", "Linear"), ("1", "ReLU"), ("2", "Linear")):
        run.add_layer(name, "module", t, "relu" if t == "ReLU" else None)
    for w in ("0.weight", "2.weight"):
        run.add_layer(w, "param", "Parameter")
    for step, value in enumerate(loss):
        rows = [("(model)", "loss", "value", float(value)), ("(model)", "lr", "value", 1e-2)]
        if step in ratios:
            rows += [(w, "update", "ratio", ratios[step]) for w in ("0.weight", "2.weight")]
            rows += [(w, "param_grad", "rms", 1.0) for w in ("0.weight", "2.weight")]
            run.write_step(step, rows, positions={"0": 1, "1": 2, "2": 3})
        else:
            run.write_step(step, rows, mark_step=False)
    return run


def _not_learning():
    g = np.random.default_rng(0)
    loss = 2.3 * (1 + 0.01 * g.standard_normal(80))
    return _run(loss, {s: 0.5 if s < 20 else 1e-3 for s in range(80) if s < 20 or s % 5 == 0})


def _pixels(fig):
    from matplotlib.image import imread

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    buf.seek(0)
    return imread(buf)


def test_the_timeline_marks_each_onset_and_draws_the_cause_over_its_threshold():
    run = _not_learning()
    findings = diagnose(run)
    kinds = {f.kind for f in findings}
    assert {"not_learning", "large_updates"} <= kinds
    fig = timeline_figure(run, findings)
    top, bottom = fig.axes
    assert next(ln.get_label() for ln in top.get_lines()) == "loss"
    marked = {round(ln.get_xdata()[0]) for ln in top.get_lines()[1:]}
    assert marked == {f.onset for f in findings}
    texts = {t.get_text() for t in top.texts}
    assert any(t.startswith("not_learning") for t in texts)
    assert any(t.startswith("large_updates") for t in texts)
    # the update ratio over its early threshold (0.25): 0.5 / 0.25 = 2 on the first steps
    line = next(ln for ln in bottom.get_lines() if "Δw" in ln.get_label())
    assert np.asarray(line.get_ydata())[0] == pytest.approx(2.0)
    assert bottom.get_yscale() == "log"
    assert _pixels(fig)[..., :3].std() > 0.05


def test_the_explaining_line_of_each_cause_crosses_one_at_its_threshold():
    run = _not_learning()
    f = next(f for f in diagnose(run) if f.kind == "large_updates")
    _label, steps, values = explaining_line(run, f)
    assert steps[0] == 0 and values[0] == pytest.approx(0.5 / f.evidence["threshold"])


def test_a_run_without_the_loss_gets_a_note_not_a_figure():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, every=1) as probe:
        for _ in range(3):
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    with pytest.raises(MissingData, match=r"probe.step\(loss=loss\)"):
        timeline_figure(probe.run)
    drawn, notes = run_figures(probe.run, only=["timeline"])
    assert drawn == [] and notes == []  # a run that never had a loss: the figure does not apply
    assert "timeline" in [s.name for s in FIGURES]


def test_the_report_has_a_timeline_section_with_the_step_ranges_and_causes():
    run = _not_learning()
    html = render_html(run)
    assert 'id="timeline"' in html and 'id="fig-timeline"' in html
    section = html[html.index('id="timeline"') :]
    assert "not_learning" in section and "update ratios of 0.5" in section
    assert html.count('id="fig-timeline"') == 1  # not drawn again among the other figures


def test_a_one_step_check_has_no_timeline_section():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    html = render_html(gp.check(model, torch.randn(16, 4)).run)
    assert 'id="timeline"' not in html
