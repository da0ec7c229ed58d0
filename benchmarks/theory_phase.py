"""Benchmark: a full 200 × 200 (σ_w², σ_b²) phase diagram over depth 1000 (issue 5).

    .venv/bin/python benchmarks/theory_phase.py [activation ...]

Prints wall and CPU time per activation (best of 3, after a warm-up); on a shared machine
the CPU time is the figure to compare.
"""

from __future__ import annotations

import sys
import time

import torch

from gradprobe.theory import phase_diagram


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    for name in names or ["tanh", "relu", "gelu", "erf"]:
        phase_diagram(name, depth=2)  # warm-up: imports, quadrature nodes
        wall, cpu = [], []
        for _ in range(3):
            start, start_cpu = time.perf_counter(), time.process_time()
            d = phase_diagram(name, depth=1000)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        print(
            f"{name:6s} {d.chi_1.shape[0]}x{d.chi_1.shape[1]} grid, depth 1000:"
            f" {min(wall):.2f} s wall, {min(cpu):.2f} s CPU"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
