import pytest

from gradprobe.errors import GradprobeError
from gradprobe.experiments.matrix_chain import matrix_chain, std_over_seeds
from gradprobe.report.plots import matrix_chain_figure, save


@pytest.fixture(scope="module")
def chains():
    return matrix_chain(depth=50, width=100, seed=0)


def test_figure_is_log_scale_and_marks_zero_inf_nan(chains):
    fig = matrix_chain_figure(chains)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    texts = " ".join(t.get_text() for t in ax.texts)
    assert f"exactly 0 at layer {chains['small'].first_zero}" in texts
    assert f"Inf at layer {chains['normal'].first_inf}" in texts
    assert f"NaN at layer {chains['normal'].first_nan}" in texts
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == len(chains)


def test_spread_panel_and_svg_png(tmp_path, chains):
    spread = std_over_seeds(["xavier"], depth=50, width=100, seeds=3)
    fig = matrix_chain_figure(chains, spread)
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) >= 3
    svg = save(fig, tmp_path / "sub" / "chain.svg")
    png = save(fig, tmp_path / "chain.png")
    assert svg.read_text().lstrip().startswith("<?xml") and png.stat().st_size > 10_000


def test_no_pyplot_state_is_touched(chains):
    import matplotlib

    backend = matplotlib.get_backend()
    matrix_chain_figure(chains)
    assert matplotlib.get_backend() == backend


def test_bad_input(tmp_path, chains):
    with pytest.raises(GradprobeError):
        matrix_chain_figure({})
    with pytest.raises(GradprobeError, match="png"):
        save(matrix_chain_figure(chains), tmp_path / "x.jpg")
