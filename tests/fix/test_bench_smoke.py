"""benchmarks/fix_bench.py runs and prints its tables (a smoke test: two cases, 40 steps;
nothing here is judged, the numbers are in docs/BENCHMARKS.md)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fix_benchmark_prints_the_case_and_kind_tables():
    done = subprocess.run(
        [sys.executable, "benchmarks/fix_bench.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^\| vanishing/circles-sigmoid8-sgd \| (yes|NO) \|", done.stdout, re.M)
    assert re.search(r"^\| all \| 2 \| [0-2] \| [0-2] \(", done.stdout, re.M), done.stdout
