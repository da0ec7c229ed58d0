"""Theory pictures: the order-to-chaos phase diagram and a trainability heat map.

Phase diagram: χ₁ = σ_w² E[φ′(√q* z)²] over (σ_w², σ_b²), log scale centred on 1, with the
critical line χ₁ = 1 (Poole et al. 2016; Schoenholz et al. 2017). Trainability: for depth L
and σ_w² (σ_b² fixed), log10 of the mean-field gradient ratio E[δ₁²]/E[δ_L²]; the contours
at ±2 bound where the first layer's gradient is within 100× of the last layer's.
These read no run; ``points`` marks (σ_w², σ_b²) pairs, e.g. a model's layers from
``run.meta["theory"]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..summary import fmt
from ._base import figure
from .training import _diverging


def theory_points(run) -> list[tuple[float, float]]:
    """The (σ_w², σ_b²) of each hidden layer stored with :func:`attach_theory`."""
    rows = (run.meta.get("theory") or [])[:-1]
    return [(r["sigma_w2"], r["sigma_b2"]) for r in rows if r.get("sigma_w2") is not None]


def phase_diagram_figure(
    activation: str = "tanh",
    points: Sequence[tuple[float, float]] = (),
    sigma_w2: tuple[float, float] = (0.25, 4.0),
    sigma_b2: tuple[float, float] = (0.0, 0.5),
    max_depth: int = 60,
    grid: int = 16,
):
    """Two panels: χ₁ over (σ_w², σ_b²), and the gradient ratio over (σ_w², depth) at the
    σ_b² of the first point (or 0). A few seconds on one core."""
    from ...theory import chi_1

    points = [(w, b) for w, b in points if math.isfinite(w) and math.isfinite(b)]
    top = max([sigma_w2[1], *[1.15 * w for w, _ in points]])  # every marked point in view
    wide = top > 3 * sigma_w2[1]  # a log axis keeps the critical line readable
    ws = np.geomspace(sigma_w2[0], top, grid) if wide else np.linspace(sigma_w2[0], top, grid)
    # the map spans every marked σ_b² too (a bias of -100 gave σ_b² 1250 on a blank panel)
    b_top = max([sigma_b2[1], *[1.15 * b for _, b in points]])
    bs = np.linspace(sigma_b2[0], b_top, max(grid // 2, 4))
    chi = np.array([[chi_1(activation, float(w), float(b)) for w in ws] for b in bs])
    b0 = float(points[0][1]) if points else 0.0
    ratio = _gradient_ratio(activation, ws, b0, max_depth)
    fig = figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    with np.errstate(divide="ignore"):
        log_chi = np.log10(chi)
    lim = float(np.nanmax(np.abs(log_chi[np.isfinite(log_chi)]), initial=1.0))
    image = left.pcolormesh(
        ws, bs, log_chi, cmap=_diverging(), vmin=-lim, vmax=lim, shading="nearest"
    )
    fig.colorbar(image, ax=left, label="log10 χ₁  (< 0 ordered, > 0 chaotic)")
    left.contour(ws, bs, log_chi, levels=[0.0], colors="white", linewidths=1.5)
    left.set_xlabel("σ_w²")
    left.set_ylabel("σ_b²")
    left.set_title(f"{activation}: phase diagram (white: χ₁ = 1)", fontsize=10, loc="left")
    ratio = np.clip(np.nan_to_num(ratio, nan=12.0, posinf=12.0, neginf=-12.0), -12, 12)
    depths = np.arange(1, max_depth + 1)
    image = right.pcolormesh(
        ws, depths, ratio, cmap=_diverging(), vmin=-12, vmax=12, shading="nearest"
    )
    fig.colorbar(image, ax=right, label="log10 E[δ₁²]/E[δ_L²]")
    right.contour(ws, depths, ratio, levels=[-2.0, 2.0], colors="white", linewidths=1.2)
    right.set_xlabel("σ_w²")
    right.set_ylabel("depth L")
    right.set_title(f"trainability at σ_b² = {fmt(b0)} (white: 100×)", fontsize=10, loc="left")
    if wide:
        left.set_xscale("log")
        right.set_xscale("log")
    for w, b in points:
        left.plot([w], [b], "o", mfc="none", mec="w", mew=1.5, ms=7)
        right.axvline(w, color="k", lw=0.8, ls=":")
    return fig


def _gradient_ratio(activation, ws: np.ndarray, b: float, depth: int) -> np.ndarray:
    """log10 Π_{l<L} χ^l for L = 1..depth (rows) and each σ_w² (columns): the recursion of
    ``theory.propagate`` vectorised over σ_w² (one kernel call per layer, not per point)."""
    import torch

    from ...theory import resolve
    from ...theory.kernels import D, V

    act = resolve(activation)
    q = ws * 1.0 + b  # q0 = 1
    log_chi = np.empty((depth, len(ws)))
    with torch.no_grad(), np.errstate(divide="ignore", invalid="ignore"):
        for layer in range(depth):
            log_chi[layer] = np.log10(ws * D(act, q).numpy())
            q = ws * V(act, q).numpy() + b
    out = np.zeros((depth, len(ws)))
    out[1:] = np.cumsum(log_chi[:-1], axis=0)  # depth L: χ of layers 1..L-1
    return out
