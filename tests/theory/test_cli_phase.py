"""``gradprobe theory`` and the vectorised phase diagram against the scalar functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradprobe.cli import main
from gradprobe.report.figures.phase import plot_phase_diagram
from gradprobe.theory import critical_sigma_w2, mean_field, propagate
from gradprobe.theory.phase import phase_diagram


def test_cli_prints_the_table(capsys):
    main(["theory", "--activation", "tanh", "--sigma-w2", "1.5", "--sigma-b2", "0.05"])
    out = capsys.readouterr().out
    for word in ("q*", "χ₁", "ξ_c", "ordered", "1.761", "vanishing", "0.9386"):
        assert word in out


def test_cli_bad_activation_is_one_line_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["theory", "--activation", "tahn"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Did you mean 'tanh'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("act", "ws", "bs"),
    [
        ("tanh", [0.9, 3.2], [0.0, 0.3]),
        ("erf", [0.9, 3.2], [0.0, 0.05]),
        ("gelu", [3.2], [0.3]),
    ],
)
def test_phase_diagram_matches_scalar_functions(act, ws, bs):
    """Both phases; c* = 0 (odd φ, no bias) and c* inside (−1, 1); Mehler and closed forms."""
    ws, bs = np.array(ws), np.array(bs)
    d = phase_diagram(act, ws, bs, depth=200)
    for i, b in enumerate(bs):
        for j, w in enumerate(ws):
            mf = mean_field(act, w, b)
            assert d.chi_1[i, j] == pytest.approx(mf.chi_1, rel=1e-3)
            assert d.q_star[i, j] == pytest.approx(mf.q_star, rel=1e-3, abs=1e-9)
            if math.isfinite(mf.xi_c):
                assert d.xi_c[i, j] == pytest.approx(mf.xi_c, rel=0.02)
            ratio = propagate(act, w, b, 200).gradient_ratio
            assert d.log_gradient_ratio[i, j] == pytest.approx(math.log(ratio), rel=1e-3, abs=1e-3)


def test_critical_line_and_plot(tmp_path):
    ws, bs = np.linspace(0.5, 3.0, 101), np.array([0.02, 0.1, 0.3])
    d = phase_diagram("tanh", ws, bs, depth=50)
    step = ws[1] - ws[0]
    for b, w in zip(bs, d.critical_line(), strict=True):
        assert abs(w - critical_sigma_w2("tanh", b)) < step
    path = tmp_path / "phase.png"
    plot_phase_diagram(d, path, point=(1.5, 0.05))
    assert path.read_bytes()[:4] == b"\x89PNG"
