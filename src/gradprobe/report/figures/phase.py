"""The depth-scale phase diagram of a computed :class:`~gradprobe.theory.PhaseDiagram`.

ξ_c (layers over which two inputs' correlation survives; Schoenholz et al. 2017, eq. 9)
as a heat map over (σ_w², σ_b²), with the critical line χ₁ = 1 where it diverges. The
numbers come from ``gp.theory.phase_diagram``; this module only draws them, on its own
Agg canvas (no pyplot, no backend switch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InvalidInputError
from ._base import figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ...theory.phase import PhaseDiagram


def xi_c_figure(diagram: PhaseDiagram, point: tuple[float, float] | None = None) -> Figure:
    """log10 ξ_c over (σ_w², σ_b²) with the critical line; ``point`` (σ_w², σ_b²) is marked."""
    if not hasattr(diagram, "xi_c") or not hasattr(diagram, "critical_line"):
        raise InvalidInputError(
            f"xi_c_figure draws a gp.theory.phase_diagram(...) result, got {type(diagram).__name__}"
        )
    fig = figure(figsize=(6, 4.5))
    ax = fig.subplots()
    xi = np.log10(np.clip(diagram.xi_c, 1e-2, 1e4))
    extent = (diagram.sigma_w2[0], diagram.sigma_w2[-1], diagram.sigma_b2[0], diagram.sigma_b2[-1])
    image = ax.imshow(xi, origin="lower", aspect="auto", extent=extent, cmap="viridis")
    ax.plot(diagram.critical_line(), diagram.sigma_b2, color="white", lw=2, label="χ₁ = 1")
    ax.set_xlabel("σ_w²")
    ax.set_ylabel("σ_b²")
    ax.set_title(f"{diagram.activation}: depth scale ξ_c (ordered left, chaotic right)")
    fig.colorbar(image, ax=ax, label="log10 ξ_c (layers)")
    if point is not None:
        ax.plot([point[0]], [point[1]], "o", mfc="none", mec="red", mew=2, ms=9, label="given")
    ax.legend(loc="upper left")
    return fig


def plot_phase_diagram(
    diagram: PhaseDiagram, path: str | Path, point: tuple[float, float] | None = None
) -> Path:
    """:func:`xi_c_figure` written to ``path`` (.png or .svg); returns the path."""
    path = Path(path)
    if path.suffix.lower() not in {".png", ".svg"}:
        raise InvalidInputError(f"write the phase diagram as .png or .svg, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    xi_c_figure(diagram, point).savefig(path, dpi=120)
    return path
