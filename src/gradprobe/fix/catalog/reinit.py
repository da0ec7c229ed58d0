"""Re-initialisation: a variance-preserving scheme for the activations in use, LSUV, an
orthogonal init, and Fixup for residual models.

Only when the baseline shows a problem at initialisation (its first logged step, or a first
loss far above the constant prediction's), or its loss
diverged within the first tenth of the steps (a weight scale too large for the depth makes
the first updates overshoot before any finding can be logged): a model whose own init is
healthy and trains keeps it. Every scheme is applied with ``nonlinearity="auto"`` (the
gain of the activation after each layer: He et al. 2015 for ReLU, Glorot & Bengio 2010
otherwise) and zero biases; LSUV (Mishkin & Matas 2016) rescales each layer on the data
sample; orthogonal weights (Saxe et al. 2014) keep every singular value at the gain; Fixup
(Zhang et al. 2019) starts each residual block as the identity.
"""

from __future__ import annotations

import torch

from ...init import apply as init_apply
from ...init.fixup import _auto_blocks
from ..edit import activation_modules
from . import REMEDIES, Remedy
from .activation import kind_of

_AT_INIT = ("dead_units", "exploding", "initial_loss", "non_finite", "saturated", "vanishing")
_EARLY = ("diverging",)  # in the first tenth of the steps


class Reinit(Remedy):
    name = "reinit"
    target = "model"
    order = 30
    answers = (*_AT_INIT, *_EARLY)
    summary = "re-initialise the weights (He/Xavier for the activation, LSUV, orthogonal, Fixup)"

    def fits(self, s):
        reason = tuple(sorted({*s.at_init(_AT_INIT), *s.early(_EARLY, 0.1)}))
        if not reason:
            return []
        kinds = {kind_of(m) for _, m in activation_modules(s.model)}
        matched = "kaiming_normal" if kinds and kinds <= {"relu"} else "xavier_normal"
        label = {"kaiming_normal": "He init", "xavier_normal": "Xavier init"}[matched]
        out = [self.change(f"re-init: {label}", reason, scheme=matched)]
        if isinstance(s.sample, torch.Tensor):
            out.append(self.change("re-init: LSUV", reason, scheme="lsuv"))
        out.append(self.change("re-init: orthogonal", reason, scheme="orthogonal"))
        if _auto_blocks(s.model):
            out.append(self.change("re-init: Fixup", reason, scheme="fixup"))
        return out

    def apply(self, model, change, env):
        scheme = change.opts["scheme"]
        options = {"data": env.batch} if scheme == "lsuv" else {}
        gen = torch.Generator().manual_seed(env.seed)
        return init_apply(model, scheme, generator=gen, **options)

    def code(self, change, env):
        scheme = change.opts["scheme"]
        data = ", data=batch" if scheme == "lsuv" else ""
        line = (
            f"gp.init.apply(model, {scheme!r}{data}, "
            f"generator=torch.Generator().manual_seed({env.seed}))"
        )
        if scheme == "lsuv":  # the inputs LSUV scaled the layers on: trial.batch
            line += "  # batch: the training inputs in trial.batch"
        return line


REMEDIES.register(Reinit.name, Reinit())
