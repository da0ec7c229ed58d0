"""``gradprobe theory``: mean-field predictions in the terminal, the phase diagram as a file."""

from __future__ import annotations

from pathlib import Path

from ..report.terminal import console
from ..report.theory_table import summary_table


def run_theory(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    q0: float,
    plot: Path | None = None,
) -> int:
    """Print q*, χ₁, depth scales, phase and gradient ratio; write the phase diagram to
    ``plot`` when given. Returns the exit status (0)."""
    console().print(summary_table(activation, sigma_w2, sigma_b2, depth, q0))
    if plot is not None:
        from ..report.figures.phase import plot_phase_diagram
        from ..theory.phase import phase_diagram

        path = plot_phase_diagram(phase_diagram(activation), plot, point=(sigma_w2, sigma_b2))
        console().print(f"phase diagram written to {path}")
    return 0
