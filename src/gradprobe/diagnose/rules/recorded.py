"""``no_steps``: a run with no recorded step has nothing to judge, so it is never healthy.

``gp.watch(model)`` without ``optimizer=`` and without ``probe.step()`` records no step;
a diagnosis that found "no problem" there would read as "gradients reach every layer".
"""

from __future__ import annotations

from ..context import Context
from ..finding import Finding, Remedy
from . import RULES


@RULES.register("recorded")
def recorded(ctx: Context) -> list[Finding]:
    if ctx.steps:
        return []
    return [
        Finding(
            kind="no_steps",
            layer=None,
            severity="warning",
            step=None,
            evidence={"steps": 0, "layers": len(ctx.modules)},
            remedy=Remedy(
                "call probe.step() after each backward(), or pass optimizer= to gp.watch "
                "so every optimizer step is recorded",
                None,
                "with gp.watch(model, optimizer=opt) as probe: ...",
            ),
            message="no training step was recorded, so nothing could be checked",
        )
    ]
