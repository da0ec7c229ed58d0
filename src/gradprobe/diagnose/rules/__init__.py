"""Diagnosis rules: one small file each, registered in ``RULES``.

A rule is a function ``rule(ctx: Context) -> list[Finding]``; register it with
``@RULES.register("name")``. Tests are parametrised over ``RULES.names()``.
"""

from __future__ import annotations

from ..._registry import Registry

RULES: Registry = Registry("diagnosis rule")

from . import (  # noqa: E402,F401  (each module registers its rule)
    attention,
    dead_units,
    depth_profile,
    fluctuation,
    grad_norm,
    logit_scale,
    loss,
    non_finite,
    overflow,
    probabilities,
    recorded,
    saturated,
    stream,
    through_time,
    updates,
)
