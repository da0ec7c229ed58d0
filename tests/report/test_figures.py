"""Every figure type renders from a small stored run: a non-empty image, the expected panels,
and a clean MissingData note when the run lacks what it needs."""

import io

import numpy as np
import pytest

from gradprobe.errors import GradprobeError
from gradprobe.report.figures import (
    FIGURES,
    MissingData,
    heatmap_figure,
    histograms_figure,
    phase_diagram_figure,
    profile_figure,
    recurrent_figure,
    run_figures,
    save,
    training_lines_figure,
)
from gradprobe.run import Run


def _pixels(fig) -> np.ndarray:
    from matplotlib.image import imread

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    buf.seek(0)
    return imread(buf)


def _nonblank(fig) -> None:
    img = _pixels(fig)
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert img[..., :3].std() > 0.05  # drawn on, not a blank canvas


def test_glorot_histograms_two_runs_share_the_value_axis(mlp_run, mlp_run_normalised):
    fig = histograms_figure([mlp_run, mlp_run_normalised], labels=["standard", "normalised"])
    assert len(fig.axes) == 4  # (histograms, 0/NaN/Inf fractions) per run
    top, bottom = fig.axes[0], fig.axes[2]
    assert top.get_shared_x_axes().joined(top, bottom)
    assert len(top.patches) == 5  # one outline per affine layer (∂L/∂pre-activation)
    assert [t.get_text() for t in fig.axes[3].get_xticklabels()] == ["0", "NaN", "+Inf", "−Inf"]
    assert "standard" in top.get_title("left") and "normalised" in bottom.get_title("left")
    _nonblank(fig)


def test_activation_histograms_pick_the_nonlinearities(mlp_run):
    fig = histograms_figure(mlp_run, "activation")
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 4  # the four Tanh layers
    _nonblank(fig)


def test_zero_nan_inf_fractions_are_drawn():
    import torch
    from torch import nn

    import gradprobe as gp

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.fill_(-1.0)  # every ReLU output is exactly 0
    run = gp.check(model, torch.rand(16, 8)).run
    fig = histograms_figure(run, "activation")
    bars = fig.axes[1].patches
    assert bars[0].get_height() == pytest.approx(1.0)  # 100% exact zeros, shown


def test_profile_with_theory_band(mlp_run):
    fig = profile_figure(mlp_run)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        assert ax.collections, "theory band missing"  # fill_between
    _nonblank(fig)


def test_heatmap_and_training_lines(mlp_run):
    heat = heatmap_figure(mlp_run)
    assert len(heat.axes) == 2 and heat.axes[0].images  # map + colour bar
    assert heat.axes[0].images[0].get_array().shape == (9, 4)  # 9 modules x 4 steps
    signed = heatmap_figure(mlp_run, "activation", "mean")
    image = signed.axes[0].images[0]
    assert image.norm.vmin == -image.norm.vmax  # signed: centred on zero
    lines = training_lines_figure(mlp_run)
    assert len(lines.axes) == 2 and len(lines.axes[0].lines) == 5  # one per weight
    assert lines.axes[1].get_yscale() == "log"
    for fig in (heat, signed, lines):
        _nonblank(fig)


def test_recurrent_gradient_through_time(rnn_run):
    fig = recurrent_figure(rnn_run)
    assert len(fig.axes) == 1
    (line,) = [ln for ln in fig.axes[0].lines if len(ln.get_xdata()) > 1]
    assert len(line.get_xdata()) == 20  # one point per time step
    _nonblank(fig)


def test_phase_diagram_and_trainability():
    fig = phase_diagram_figure("tanh", [(1.0, 0.05)], grid=6, max_depth=12)
    assert len(fig.axes) == 4  # two maps, two colour bars
    _nonblank(fig)


def test_missing_data_is_a_clean_note(rnn_run, mlp_run):
    with pytest.raises(MissingData, match="needs 2"):
        heatmap_figure(rnn_run)  # one logged step
    with pytest.raises(MissingData, match="RNN"):
        recurrent_figure(mlp_run)
    figures, notes = run_figures(rnn_run)
    drawn = {spec.name for spec, _ in figures}
    skipped = {spec.name: why for spec, why in notes}
    applies = {spec.name for spec in FIGURES if spec.applies(Run.load(rnn_run))}
    assert drawn | set(skipped) == applies
    # one logged step: the figures over training cannot apply, so no note about them
    over_training = {"grad_heatmap", "training_lines", "timeline"}
    assert applies == {spec.name for spec in FIGURES} - over_training
    assert "recurrent" in drawn and all(skipped.values())
    assert isinstance(MissingData("x"), GradprobeError)


def test_every_figure_of_a_full_run(mlp_run, tmp_path):
    figures, notes = run_figures(Run.load(mlp_run))
    # the recurrent figure does not apply to an MLP, the timeline to a run without a loss
    assert notes == []
    assert len(figures) == len(FIGURES) - 2
    for spec, fig in figures:
        assert save(fig, tmp_path / f"{spec.name}.png").stat().st_size > 5_000
    assert save(figures[0][1], tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")


def test_bad_input(tmp_path, mlp_run):
    with pytest.raises(GradprobeError, match="no run file"):
        profile_figure(tmp_path / "nope.sqlite")
    with pytest.raises(GradprobeError, match="Run or the path"):
        profile_figure(42)
    with pytest.raises(GradprobeError, match="logged steps"):
        profile_figure(mlp_run, step=99)


def test_profiles_of_several_runs_and_recurrent_comparison(mlp_run, mlp_run_normalised, rnn_run):
    from gradprobe.report.figures import profiles_figure

    fig = profiles_figure([mlp_run, mlp_run_normalised], ["standard", "xavier"])
    assert len(fig.axes) == 1 and len(fig.axes[0].get_legend().get_texts()) == 2
    both = recurrent_figure([rnn_run, rnn_run], labels=["a", "b"])
    assert [t.get_text() for t in both.axes[0].get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(MissingData):
        profiles_figure([mlp_run], [])
