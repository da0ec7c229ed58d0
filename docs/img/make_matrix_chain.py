"""Regenerate docs/img/matrix_chain.png, the README's picture (the demo's chapter-1 figure).

Run: .venv/bin/python docs/img/make_matrix_chain.py
"""

from pathlib import Path

from gradprobe.experiments.matrix_chain import matrix_chain, std_over_seeds
from gradprobe.report.plots import matrix_chain_figure, save

if __name__ == "__main__":
    chains = matrix_chain(depth=50, width=100, seed=0)
    spread = std_over_seeds(["xavier", "he_relu"], depth=50, width=100, seeds=10)
    path = save(
        matrix_chain_figure(chains, spread), Path(__file__).with_name("matrix_chain.png"), dpi=80
    )
    print(f"{path}: {path.stat().st_size / 1000:.0f} kB")
