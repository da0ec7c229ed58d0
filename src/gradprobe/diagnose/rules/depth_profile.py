"""``vanishing`` / ``exploding``: the back-propagated gradient profile across depth.

At each logged step the rms of ∂L/∂(output of each weight layer) is taken lowest layer
first; the ratio lowest/output and the fitted per-layer growth factor are the evidence.
The first step where the ratio crosses a threshold is reported, with how many steps did.
When gradients overflowed (some are NaN/Inf), the forward profile takes their place: the
growth of the output rms from the lowest weight layer to the highest, which is what
overflowed them.
"""

from __future__ import annotations

import numpy as np

from ..context import Context, Profile
from ..finding import Finding, Kind
from ..remedies import reinit, with_architecture
from . import RULES


class _Hit:
    """A profile that crossed a threshold; ``ratio`` is lowest/output for gradients and
    output/lowest for the forward signal (both > 1 when exploding)."""

    def __init__(self, profile: Profile, ratio: float, source: str) -> None:
        self.profile, self.ratio, self.source = profile, ratio, source
        self.growth = profile.growth if source == "backward" else 1 / profile.growth


@RULES.register("depth_profile")
def depth_profile(ctx: Context) -> list[Finding]:
    t = ctx.t
    hits: dict[Kind, list] = {"vanishing": [], "exploding": []}
    for i, step in enumerate(ctx.steps):
        profile = ctx.gradient_profile(i)
        overflowed = not np.isfinite(ctx.grad_matrix[:, i]).all()
        if overflowed:
            forward = ctx.activation_profile(i)
            if forward is not None and 1 / forward.ratio > t.exploding_ratio:
                # the forward signal grew output/lowest = 1/ratio, ×1/growth per layer
                hits["exploding"].append((step, _Hit(forward, 1 / forward.ratio, "forward")))
                continue
        if profile is None:
            continue
        if profile.ratio < t.vanishing_ratio:
            hits["vanishing"].append((step, _Hit(profile, profile.ratio, "backward")))
        elif profile.ratio > t.exploding_ratio:
            hits["exploding"].append((step, _Hit(profile, profile.ratio, "backward")))
    findings = []
    for kind, found in hits.items():
        if not found:
            continue
        step, hit = found[0]
        p, source = hit.profile, hit.source
        ratios = [h.ratio for _, h in found]
        worst = min(ratios) if kind == "vanishing" else max(ratios)
        error_limit = t.vanishing_error_ratio if kind == "vanishing" else t.exploding_error_ratio
        is_error = hit.ratio < error_limit if kind == "vanishing" else hit.ratio > error_limit
        threshold = t.vanishing_ratio if kind == "vanishing" else t.exploding_ratio
        per_layer = {n: float(v / p.values[-1]) for n, v in zip(p.layers, p.values, strict=True)}
        findings.append(
            Finding(
                kind=kind,
                layer=p.layers[0],
                severity="error" if is_error else "warning",
                step=step,
                evidence={
                    "measured_on": "gradients" if source == "backward" else "activations",
                    "ratio_lowest_to_output": hit.ratio,
                    "growth_per_layer": hit.growth,
                    "threshold": threshold,
                    "error_threshold": error_limit,
                    "layers": len(p.layers),
                    "ratio_to_output_per_layer": per_layer,
                    "steps_affected": len(found),
                    "worst_ratio": worst,
                },
                remedy=with_architecture(ctx, reinit(ctx)),
                message=(
                    f"the gradient at the lowest layer {p.layers[0]} is {hit.ratio:.3g}× the one "
                    f"at the output layer {p.layers[-1]} (×{hit.growth:.3g} per layer over "
                    f"{len(p.layers)} layers; threshold {threshold:g})"
                    if source == "backward"
                    else f"the forward signal grows {hit.ratio:.3g}× from {p.layers[0]} to "
                    f"{p.layers[-1]} (×{hit.growth:.3g} per layer) until gradients overflow to "
                    f"NaN/Inf (threshold {threshold:g})"
                ),
            )
        )
    return findings
