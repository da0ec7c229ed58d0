"""The ``gradprobe theory`` table: one activation and (σ_w², σ_b²) in the terminal."""

from __future__ import annotations

import math

from rich.table import Table

from ..theory.meanfield import critical_sigma_w2, mean_field
from ..theory.trajectory import propagate

_PHASE_STYLE = {"ordered": "cyan", "critical": "green", "chaotic": "magenta"}


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.4g}"


def summary_table(activation, sigma_w2: float, sigma_b2: float, depth: int, q0: float = 1.0):
    """A rich Table with q*, c*, χ₁, ξ_q, ξ_c, the phase, the critical σ_w² and the
    expected gradient ratio across ``depth`` layers."""
    mf = mean_field(activation, sigma_w2, sigma_b2)
    path = propagate(activation, sigma_w2, sigma_b2, depth, q0)
    w_crit = critical_sigma_w2(activation, sigma_b2)
    ratio = path.gradient_ratio
    if math.isnan(ratio):
        verdict = "undefined (a layer's slope is not a number)"
    elif ratio < 1e-2:
        verdict = "vanishing towards the input"
    elif ratio > 1e2:
        verdict = "exploding towards the input"
    else:
        verdict = "within 100× across the stack"
    table = Table(
        title=f"mean-field theory: {mf.activation}, σ_w² = {sigma_w2:g}, σ_b² = {sigma_b2:g}"
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    phase = mf.phase
    rows = [
        ("q*", _fmt(mf.q_star), "fixed point of the pre-activation variance"),
        ("c*", _fmt(mf.c_star), "fixed point of the correlation of two inputs"),
        ("χ₁", _fmt(mf.chi_1), "per-layer gradient factor at q* (1 = critical)"),
        ("ξ_q", _fmt(mf.xi_q), "layers over which the variance forgets the input"),
        ("ξ_c", _fmt(mf.xi_c), "layers over which correlations survive"),
        ("phase", f"[{_PHASE_STYLE[phase]}]{phase}[/]", "ordered χ₁ < 1, chaotic χ₁ > 1"),
        ("critical σ_w²", _fmt(w_crit), f"χ₁ = 1 at σ_b² = {sigma_b2:g}"),
        (f"q at layer {depth}", _fmt(float(path.q[-1])), f"from input mean square q0 = {q0:g}"),
        (f"gradient ratio, {depth} layers", _fmt(ratio), f"E[δ₁²]/E[δ_L²]: {verdict}"),
    ]
    for row in rows:
        table.add_row(*row)
    return table
