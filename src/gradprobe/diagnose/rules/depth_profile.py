"""``vanishing`` / ``exploding``: the back-propagated gradient profile across depth.

At each logged step the rms of ∂L/∂(output of each weight layer) is taken lowest layer
first; the ratio lowest/output and the fitted per-layer growth factor are the evidence.
The first step where the ratio crosses a threshold is reported, with how many steps did.
"""

from __future__ import annotations

from ..context import Context
from ..finding import Finding
from ..remedies import reinit, with_architecture
from . import RULES


@RULES.register("depth_profile")
def depth_profile(ctx: Context) -> list[Finding]:
    t = ctx.t
    hits: dict[str, list] = {"vanishing": [], "exploding": []}
    for i, step in enumerate(ctx.steps):
        profile = ctx.gradient_profile(i)
        if profile is None:
            continue
        if profile.ratio < t.vanishing_ratio:
            hits["vanishing"].append((step, profile))
        elif profile.ratio > t.exploding_ratio:
            hits["exploding"].append((step, profile))
    findings = []
    for kind, found in hits.items():
        if not found:
            continue
        step, p = found[0]
        worst = (
            min(found, key=lambda h: h[1].ratio)
            if kind == "vanishing"
            else max(found, key=lambda h: h[1].ratio)
        )
        error_limit = t.vanishing_error_ratio if kind == "vanishing" else t.exploding_error_ratio
        is_error = (p.ratio < error_limit) if kind == "vanishing" else (p.ratio > error_limit)
        threshold = t.vanishing_ratio if kind == "vanishing" else t.exploding_ratio
        per_layer = {n: float(v / p.values[-1]) for n, v in zip(p.layers, p.values, strict=True)}
        findings.append(
            Finding(
                kind=kind,
                layer=p.layers[0],
                severity="error" if is_error else "warning",
                step=step,
                evidence={
                    "ratio_lowest_to_output": p.ratio,
                    "growth_per_layer": p.growth,
                    "threshold": threshold,
                    "error_threshold": error_limit,
                    "layers": len(p.layers),
                    "ratio_to_output_per_layer": per_layer,
                    "steps_affected": len(found),
                    "worst_ratio": worst[1].ratio,
                },
                remedy=with_architecture(ctx, reinit(ctx)),
                message=(
                    f"the gradient at the lowest layer {p.layers[0]} is {p.ratio:.3g}× the one "
                    f"at the output layer {p.layers[-1]} (×{p.growth:.3g} per layer over "
                    f"{len(p.layers)} layers; threshold {threshold:g})"
                ),
            )
        )
    return findings
