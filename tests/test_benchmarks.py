"""The benchmark scripts run and print their tables (a smoke test: nothing here is timed;
the numbers are in docs/BENCHMARKS.md, with the commands that produced them)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_overhead_benchmark_prints_a_ratio_per_configuration():
    out = _run(
        "benchmarks/overhead.py", "--steps", "10", "--warmup", "1", "--threads", "1",
        "--only", "(b) ,(d),(e) ,default,floor,peer: hooks",
    )  # fmt: skip
    rows = dict(re.findall(r"^\| (.+?) \| ([0-9.]+)× \|", out, re.M))
    assert set(rows) == {
        "plain training",
        "default watch()",
        "(b) scalar stats + first-non-finite, every step",
        "(d) (b) with every=10",
        "(e) first-non-finite only (no step logged)",
        "floor: ‖g‖, ‖w‖ per parameter by hand (no hooks)",
        "peer: hooks with .item() per tensor",
    }
    assert float(rows["plain training"]) == 1.0
    assert all(float(v) > 0 for v in rows.values())


def test_memory_benchmark_prints_rss_per_mark():
    out = _run("benchmarks/memory.py", "--steps", "100")
    assert re.search(r"^\| 100 \| [0-9.]+ \|", out, re.M), out


def test_paired_benchmark_compares_two_source_trees_in_one_process():
    """benchmarks/paired.py with this checkout as its own base: both lanes load (one as
    ``gradprobe_base``) and the paired ratio is printed."""
    out = _run(
        "benchmarks/paired.py", "--base", str(ROOT), "--workload", "reference",
        "--turns", "2", "--run", "2", "--warmup", "1", "--kwargs", '{"every": 1}',
    )  # fmt: skip
    assert re.search(r"^before: [0-9.]+× plain \(fastest turns: [0-9.]+×\)$", out, re.M)
    assert re.search(r"^after: [0-9.]+× plain \(fastest turns: [0-9.]+×\)$", out, re.M)
    assert re.search(r"^after / before, fastest turns: [0-9.]+$", out, re.M)
    assert re.search(r"^after / before, paired per turn: [0-9.]+ ", out, re.M)


def test_parts_benchmark_times_the_parts_of_two_source_trees():
    """benchmarks/parts.py with this checkout as its own base: a row per part and cache."""
    out = _run("benchmarks/parts.py", "--base", str(ROOT), "-n", "2")
    rows = re.findall(r"^\| (.+?) \| (hot|cold) \| [0-9]+ \| [0-9]+ \|$", out, re.M)
    assert len(rows) == 12 and {c for _, c in rows} == {"hot", "cold"}


def test_ablate_benchmark_compares_the_probe_with_one_part_off():
    """benchmarks/ablate.py: the probe against itself with the batched gradients off."""
    out = _run(
        "benchmarks/ablate.py", "--off", "grads", "--workload", "reference", "--turns", "2",
        "--run", "2", "--warmup", "1", "--kwargs", '{"every": 1}',
    )  # fmt: skip
    assert re.search(r"^probe: [0-9.]+× plain$", out, re.M)
    assert re.search(r"^--off grads: [0-9.]+× plain$", out, re.M)
    assert re.search(r"^probe / off, paired per turn: [0-9.]+ \(quartiles ", out, re.M)
