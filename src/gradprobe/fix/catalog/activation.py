"""Activation swap: saturating or exponential activations → ReLU; dying ReLUs → LeakyReLU.

No init can undo σ′ ≤ ¼ per sigmoid layer (Glorot & Bengio 2010) or an exponential that
overflows: the activation itself has to change. ReLU keeps the gradient at 1 where a unit is
active (Glorot, Bordes & Bengio 2011); the second variant also re-draws the weights with He
init, whose gain √2 fits ReLU (the old weights were scaled for the old activation).
LeakyReLU (Maas et al. 2013) gives dead units a gradient again. Only module activations can
be swapped; a functional one (``torch.sigmoid(x)`` in ``forward``) is reported in the notes.
"""

from __future__ import annotations

import torch
from torch import nn

from ...init import apply as init_apply
from ...probe.modules import activation_of
from ..edit import activation_modules, output_activations, swap_activations
from . import REMEDIES, Remedy

_SATURATING_ANSWERS = ("saturated", "vanishing", "not_learning", "slow_convergence")
_EXP_ANSWERS = ("exploding", "non_finite", "diverging", *_SATURATING_ANSWERS)
_DEAD_ANSWERS = ("dead_units",)


def kind_of(module: nn.Module) -> str:
    """ "saturating", "relu" (can die: ReLU, ReLU6), "smooth" (GELU, SiLU, ELU, LeakyReLU,
    ...: a negative output still has a gradient), "exponential" (grows faster than
    linearly) or "other". Only "relu" units die, so only they get the LeakyReLU swap."""
    known = activation_of(module)
    if known is not None:
        return known.kind
    try:
        with torch.no_grad():
            z = torch.tensor([-6.0, -3.0, 1.0, 3.0, 6.0])
            f = module(z).double()
    except Exception:  # an activation that does not take a plain 1-D tensor
        return "other"
    if not torch.isfinite(f).all():
        return "exponential"
    if float(f[4]) > 10 and float(f[4] - f[3]) > 3 * max(float(f[3] - f[2]) / 2, 1e-12):
        return "exponential"
    if float(abs(f[0] - f[1])) < 0.05 and float(abs(f[4] - f[3])) < 0.05:
        return "saturating"
    return "other"


class ActivationSwap(Remedy):
    name = "activation"
    target = "model"
    order = 10
    answers = tuple(sorted({*_EXP_ANSWERS, *_DEAD_ANSWERS}))
    summary = "swap saturating/exponential activations for ReLU, dying ReLUs for LeakyReLU"

    def fits(self, s):
        output = output_activations(s.model)  # the output's own activation stays
        acts = [(n, m) for n, m in activation_modules(s.model) if id(m) not in output]
        gates = [n for n, m in acts if n in s.gates and kind_of(m) == "saturating"]
        if gates and s.present(self.answers):  # a gate's sigmoid must reach 0 and 1
            s.note(
                f"activation swap: {', '.join(gates[:4])}{', ...' if len(gates) > 4 else ''} "
                "are gates (their output multiplies another tensor) and stay"
            )
        acts = [(n, m) for n, m in acts if n not in gates]
        if not acts:
            if s.present(self.answers):
                s.note(
                    "activation swap: the model has no activation module; activations applied "
                    "as functions in forward() cannot be swapped (use nn.Sigmoid() etc.)"
                )
            return []
        kinds: dict[str, set[str]] = {}
        for _, m in acts:
            kinds.setdefault(kind_of(m), set()).add(type(m).__name__)
        out = []
        bad = sorted(kinds.get("saturating", set()) | kinds.get("exponential", set()))
        answers = _EXP_ANSWERS if "exponential" in kinds else _SATURATING_ANSWERS
        reason = s.present(answers)
        keep = tuple(gates)
        if bad and reason:
            out.append(
                self.change("activation → ReLU", reason, to="ReLU", only=tuple(bad), keep=keep)
            )
            out.append(
                self.change(
                    "activation → ReLU, He init", reason, to="ReLU", only=tuple(bad), init=True,
                    keep=keep,
                )
            )  # fmt: skip
        # only kind "relu" dies; a "smooth" one (GELU, LeakyReLU, ...) is never swapped for it
        dead = sorted(n for n in kinds.get("relu", set()) if n in ("ReLU", "ReLU6"))
        reason = s.present(_DEAD_ANSWERS)
        if dead and reason:
            out.append(
                self.change(
                    "ReLU → LeakyReLU(0.1)", reason, to="LeakyReLU", only=tuple(dead), slope=0.1
                )
            )
        return out

    def _kwargs(self, o: dict) -> dict:
        kw = {"negative_slope": o["slope"]} if "slope" in o else {}
        return kw | ({"keep": list(o["keep"])} if o.get("keep") else {})

    def apply(self, model, change, env):
        o = change.opts
        model = swap_activations(model, o["to"], only=list(o["only"]), **self._kwargs(o))
        if o.get("init"):
            init_apply(model, "kaiming_normal", generator=torch.Generator().manual_seed(env.seed))
        return model

    def code(self, change, env):
        o = change.opts
        extra = "".join(f", {k}={v!r}" for k, v in self._kwargs(o).items())
        line = (
            f"model = gp.fix.swap_activations(model, {o['to']!r}, only={list(o['only'])!r}{extra})"
        )
        if o.get("init"):
            line += (
                "\ngp.init.apply(model, 'kaiming_normal', "
                f"generator=torch.Generator().manual_seed({env.seed}))"
            )
        return line


REMEDIES.register(ActivationSwap.name, ActivationSwap())

__all__ = ["ActivationSwap", "kind_of"]
