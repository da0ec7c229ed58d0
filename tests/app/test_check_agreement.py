"""One check, three views: the terminal table, the JSON and the HTML report show the same
numbers and the same theory prediction, attached once with the real input scale.

Regression: ``gradprobe check --html`` re-attached theory's prediction with input variance
1 while check used the real scale (first layer's q 2.91 in the table, 0.335 in the HTML).
"""

import json
import re
import textwrap

import pytest
import torch

from _factories import run_cli as _run
from _factories import user_module
from gradprobe.report.summary import fmt

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def stack():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                             nn.Linear(32, 4))
    """
)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    with user_module(tmp_path, monkeypatch, "agree_models", MODELS) as folder:
        x = 3.0 * torch.randn(64, 16, generator=torch.Generator().manual_seed(1))  # E[x²] ≈ 9
        torch.save(x, folder / "x.pt")
        yield folder, x


def test_check_html_json_and_terminal_show_the_same_theory(setup, capsys):
    folder, x = setup
    base = ["check", "agree_models:stack", "--input", str(folder / "x.pt")]
    assert _run([*base, "--json"]) in (0, 1)
    payload = json.loads(capsys.readouterr().out)
    theory = payload["theory"]
    first = theory[0]
    q0 = float(x.double().pow(2).mean())
    # q¹ = σ_w²·E[x²] + σ_b²: the real input scale (≈ 9), not 1
    assert first["q"] == pytest.approx(first["sigma_w2"] * q0 + first["sigma_b2"], rel=1e-6)
    assert q0 > 8

    assert _run([*base, "--html", str(folder / "r.html")]) in (0, 1)
    terminal = capsys.readouterr().out
    html = (folder / "r.html").read_text()
    section = html[html.index('id="theory"') :]
    rows = re.findall(
        r'<tr><td class="name">([^<]*)</td><td class="name">[^<]*</td>'
        r"(?:<td>[^<]*</td>){2}<td>([^<]*)</td>",
        section,
    )
    html_q = {name: float(q) for name, q in rows}
    for row in theory:
        assert html_q[row["name"]] == pytest.approx(row["q"], rel=5e-3), row["name"]
    # the terminal's "theory ÷" column is √(E[δ²]/E[δ_L²]) of the same rows
    for row in theory:
        if row["kind"] != "Linear" or row["grad_var"] is None:
            continue
        line = next(ln for ln in terminal.splitlines() if re.match(rf"\W*{row['name']}\s", ln))
        assert fmt(row["grad_var"] ** 0.5) in line, (row["name"], line)
