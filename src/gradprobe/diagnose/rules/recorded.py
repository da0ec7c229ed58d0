"""What the run did not record: nothing to judge, or no gradient at all.

- ``no_steps``: ``gp.watch(model)`` without ``optimizer=`` and without ``probe.step()``
  records no step; a diagnosis that found "no problem" there would read as "gradients
  reach every layer".
- ``small_updates`` "no gradient": steps and a loss were recorded, the model has trainable
  parameters, and not one gradient reached any of them or any module's output on any step
  (no gradient row, no global gradient norm): the loss is not connected to the model — its
  output detached (``.detach()``, ``.item()``, ``torch.tensor(out)``, numpy, a forward
  under ``torch.no_grad()``) — or ``loss.backward()`` is never called. Nothing moves, and
  no layer's statistic says why.
"""

from __future__ import annotations

from ..context import Context
from ..finding import Finding, Remedy
from ..series import loss_series
from . import RULES

#: evidence["updated"] of a run no gradient reached (link.py words it)
NO_GRADIENT = "never (no gradient)"
_BACKWARD = ("param_grad", "update")  # and every quantity named grad*


@RULES.register("recorded")
def recorded(ctx: Context) -> list[Finding]:
    if ctx.steps:
        return _no_gradient(ctx)
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


def _no_gradient(ctx: Context) -> list[Finding]:
    quantities = [q for q, _ in ctx.run.quantities()]
    if len(ctx.steps) < 2 or any(q in _BACKWARD or q.startswith("grad") for q in quantities):
        return []
    frozen = set(ctx.run.meta.get("frozen_params") or [])
    params = [la.name for la in ctx.run.layers("param") if la.name not in frozen]
    loss = loss_series(ctx.run)
    if not params or loss is None or len(loss) < 2:
        return []
    n = len(ctx.steps)
    return [
        Finding(
            kind="small_updates",
            layer=None,
            severity="error",
            step=ctx.steps[0],
            onset=0,
            evidence={
                "updated": NO_GRADIENT,
                "steps": n,
                "params": len(params),
                "measured_on": "parameter and module-output gradients (none recorded)",
            },
            remedy=Remedy(
                "compute the loss from the model's output itself and call loss.backward() "
                "each step: no .detach(), .item(), torch.tensor(out), .numpy() or "
                "torch.no_grad() between the model and the loss",
                None,
                "out = model(x)  # the tensor itself, still attached to the graph\n"
                "loss = loss_fn(out, y)\n"
                "loss.backward()\n"
                "opt.step()",
            ),
            message=(
                f"no gradient reached the model on any of the {n} logged steps: none of its "
                f"{len(params)} trainable parameters nor any module's output got one, while "
                f"the loss was recorded — the loss is not connected to the model's output "
                f"(detached) or loss.backward() is not called, so no weight moves"
            ),
        )
    ]
