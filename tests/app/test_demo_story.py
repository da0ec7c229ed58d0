"""``gradprobe demo`` chapters 2-5 (chapter 1 is tests/report/test_demo.py): what each
chapter showed, the files it wrote, and report.html as the last line."""

import pytest

from gradprobe.app.demo import CHAPTERS, run_demo

STORY = ["init_gradients", "glorot", "remedies", "check"]


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    out = tmp_path_factory.mktemp("story")
    capture = pytest.MonkeyPatch()
    from gradprobe.report import terminal

    lines = []
    console = terminal.console()
    capture.setattr(console, "print", lambda *a, **k: lines.append(a))
    try:
        numbers = run_demo(out=out, seed=0, chapters=STORY)
    finally:
        capture.undo()
    return out, numbers, lines


def test_the_chapters_follow_the_matrix_chain_in_order():
    assert [c.name for c in CHAPTERS][:5] == ["matrix_chain", *STORY]


def test_four_inits_explode_vanish_shrink_and_hold(story):
    _, numbers, _ = story
    r = numbers["init_gradients"]["ratios"]  # back-propagated std, first / last hidden layer
    assert r["normal"] > 1e3 and r["small"] < 1e-3
    assert 0.3 < r["kaiming"] < 3 and r["xavier"] < r["kaiming"]


def test_glorot_standard_init_shrinks_towards_the_input(story):
    _, numbers, _ = story
    std, norm = numbers["glorot"]["standard"], numbers["glorot"]["normalised"]
    assert std[0] / std[-1] < 0.3 < norm[0] / norm[-1]


def test_broken_model_is_diagnosed_and_the_remedy_rechecked(story):
    _, numbers, _ = story
    check = numbers["check"]
    assert {f.kind for f in check["result"].findings} >= {"exploding"}
    assert check["scheme"] == "kaiming_normal" and check["fixed"].healthy


def test_figures_and_the_report_are_written_and_named_last(story):
    out, numbers, lines = story
    for name in STORY[:3]:
        for png in numbers[name]["files"]:
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = out / "report.html"
    text = report.read_text()
    assert text.count("data:image/png;base64,") >= 6 and 'id="findings"' in text
    assert lines[-1][0] == f"Report: {report}"
