"""Normalisation after every hidden weight layer: BatchNorm (Ioffe & Szegedy 2015) or
LayerNorm (Ba et al. 2016).

Normalising each layer's pre-activation to zero mean and unit variance keeps a deep stack in
the range where its activations have slope, whatever the weights' scale, and makes training
far less sensitive to the init and the learning rate. Offered for ``nn.Sequential`` and
models torch.fx can trace, without normalisation layers of their own; each variant must run
a forward pass on the data sample, else it is left out with the reason in the notes.
"""

from __future__ import annotations

import copy

import torch

from ...errors import GradprobeError
from ..data import call
from ..edit import _NORMS, insert_norm
from . import REMEDIES, Remedy


class InsertNorm(Remedy):
    name = "normalise"
    target = "model"
    order = 20
    answers = (
        "dead_units",
        "exploding",
        "initial_loss",
        "not_learning",
        "saturated",
        "slow_convergence",
        "vanishing",
    )
    summary = "insert BatchNorm or LayerNorm after each hidden weight layer"

    def fits(self, s):
        reason = s.present(self.answers)
        if not reason:
            return []
        if any(isinstance(m, _NORMS) for m in s.model.modules()):
            return []  # it has normalisation already: where it sits is the author's choice
        out = []
        for kind, label in (("batch", "BatchNorm"), ("layer", "LayerNorm")):
            try:
                trial = insert_norm(copy.deepcopy(s.model), kind)
                if s.sample is not None:
                    with torch.no_grad():
                        call(trial.train(), s.sample)
            except GradprobeError as err:
                s.note(f"normalisation: {err}")
                return out
            except Exception as err:  # the inserted layer does not fit the tensors' shapes
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                s.note(f"normalisation ({label}): the model fails with it inserted ({first})")
                continue
            out.append(self.change(f"add {label}", reason, kind=kind))
        return out

    def apply(self, model, change, env):
        return insert_norm(model, change.opts["kind"])

    def code(self, change, env):
        return f"model = gp.fix.insert_norm(model, {change.opts['kind']!r})"


REMEDIES.register(InsertNorm.name, InsertNorm())
