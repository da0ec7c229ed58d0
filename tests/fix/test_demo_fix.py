"""The demo's chapter 5 ends with gp.fix on the broken model: the ranking, the before/after
curves and the fix report."""

import pytest

from gradprobe.app.demo import run_demo


@pytest.mark.slow
def test_chapter_5_runs_on_its_own_and_shows_gp_fix(tmp_path, monkeypatch):
    """Chapter 5 alone failed: runs/ did not exist until an earlier chapter made it."""
    from gradprobe.report import terminal

    lines = []
    monkeypatch.setattr(terminal.console(), "print", lambda *a, **k: lines.append(a))
    numbers = run_demo(out=tmp_path, seed=0, chapters=["check"])["check"]
    result = numbers["fix"]
    # N(0, 1) weights through 12 ReLU layers of 64: the logits are ~32^6 times too large, the
    # baseline's loss is non-finite within a few SGD steps; a re-init trains
    assert result.improved and not result.best.is_baseline
    assert not result.baseline.healthy and "diverging" in result.baseline.problems
    # nothing wrong in the layers of the winner; its loss may show a spike that came back down
    # (the diagnosis reads a trial's loss: LSUV's rose 6× over steps 133-137 at SGD lr 0.01)
    assert set(result.best.problems) <= {"loss_spike"}
    assert result.best.code.startswith("gp.init.apply(model")
    png, html = numbers["files"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.name == "fix_curves.png"
    assert 'id="fig-fix-curves"' in html.read_text()
    assert "fix_curves.png" in (tmp_path / "report.html").read_text()
