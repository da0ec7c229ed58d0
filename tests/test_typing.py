"""Type checkers see the real public API (DESIGN.md), not ``Any``: mypy on a user's script."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = """
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp

model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
same: nn.Module = gp.init.apply(model, "kaiming_normal", nonlinearity="relu")
names: list[str] = gp.init.names()
x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
result: gp.CheckResult = gp.check(model, x, y)
healthy: bool = result.healthy
findings: list[gp.Finding] = result.findings
run: gp.Run = result.run
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with gp.watch(model, optimizer=opt) as probe:
    F.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()
    probe.step()
again: list[gp.Finding] = gp.diagnose(probe.run)
reveal_type(gp.check)
reveal_type(gp.diagnose)
reveal_type(gp.watch)
"""


@pytest.mark.slow
def test_mypy_sees_the_public_api(tmp_path: Path):
    pytest.importorskip("mypy")
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(SCRIPT))
    cmd = [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports"]
    cmd += ["--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
    lines = out.stdout.splitlines()
    errors = [line for line in lines if ": error:" in line]
    assert not errors, "\n".join(errors)
    revealed = [line for line in lines if "Revealed type" in line]
    assert len(revealed) == 3, out.stdout + out.stderr
    assert "-> gradprobe.check.CheckResult" in revealed[0]
    assert "-> list[gradprobe.diagnose.finding.Finding]" in revealed[1]
    assert "Probe" in revealed[2]
    assert all(line.rsplit('"', 2)[-2] != "Any" for line in revealed)
