import csv

import pytest

from gradprobe.app.demo import CHAPTERS, run_demo
from gradprobe.errors import GradprobeError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out=out, seed=0, chapters=["matrix_chain"])


def test_chapters_are_a_list_starting_with_the_matrix_chain():
    assert CHAPTERS[0].name == "matrix_chain"


def test_matrix_chain_chapter_shows_vanish_explode_survive(demo):
    _, numbers = demo
    chains = numbers["matrix_chain"]["chains"]
    assert chains["small"].first_zero is not None  # vanishes to exactly 0
    assert chains["small"].first_inf is None
    assert chains["normal"].first_inf is not None  # explodes to Inf ...
    assert chains["normal"].first_nan > chains["normal"].first_inf  # ... then NaN
    for survivor in ("xavier", "he_relu"):
        std = chains[survivor].std
        assert chains[survivor].event is None
        assert 0.1 < std[-1] < 10
    assert chains["xavier_relu"].std[-1] < 1e-6  # ReLU without He's factor 2 vanishes


def test_demo_reports_the_finite_width_spread(demo, capsys):
    _, numbers = demo
    spread = numbers["matrix_chain"]["spread"]["xavier"][:, -1]
    assert len(spread) >= 5 and spread.max() > spread.min()


def test_demo_writes_a_real_png_and_the_per_layer_csv(demo):
    out, numbers = demo
    png = out / "matrix_chain.png"
    assert png in numbers["matrix_chain"]["files"]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with (out / "matrix_chain.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * 51
    assert {r["setting"] for r in rows} == set(numbers["matrix_chain"]["chains"])


def test_demo_prints_the_table(tmp_path, capsys):
    run_demo(out=tmp_path, seed=1, chapters=["matrix_chain"])
    text = capsys.readouterr().out
    assert "Chapter 1" in text and "Inf @" in text and "0 @" in text and "seeds" in text


def test_unknown_chapter_is_a_gradprobe_error(tmp_path):
    with pytest.raises(GradprobeError, match="matrix_chain"):
        run_demo(out=tmp_path, chapters=["nope"])
