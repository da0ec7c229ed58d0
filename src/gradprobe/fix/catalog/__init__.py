"""The remedy catalog: one small file per remedy, registered in ``REMEDIES``.

A remedy says when it fits (:meth:`Remedy.fits`: the findings it answers, read from the
baseline's :class:`~gradprobe.fix.situation.Situation`, returning one :class:`Change` per
variant worth a trial), what it changes on a copy (:meth:`apply` for the model,
:meth:`optimizer` or :meth:`loop` for the training) and the code that does the same
(:meth:`code`). ``order`` fixes where it applies inside a combination: activations before
normalisation before re-initialisation, so an init sees the layers it initialises.
Tests are parametrised over ``REMEDIES.names()``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ..._registry import Registry
from ..options import Change, Env, OptimizerSpec
from ..situation import Situation


class Remedy:
    """Base class: override :meth:`fits` and the one of apply/optimizer/loop that matches
    ``target``, and :meth:`code`."""

    name: ClassVar[str] = ""
    target: ClassVar[str] = "model"  # "model", "optimizer" or "loop"
    order: ClassVar[int] = 50
    answers: ClassVar[tuple[str, ...]] = ()  # finding kinds it may fit
    summary: ClassVar[str] = ""

    def fits(self, s: Situation) -> list[Change]:
        raise NotImplementedError

    def change(self, label: str, reason: tuple[str, ...], **options: Any) -> Change:
        return Change(self.name, label, tuple(sorted(options.items())), reason)

    def apply(self, model: nn.Module, change: Change, env: Env) -> nn.Module:
        return model

    def optimizer(self, spec: OptimizerSpec, change: Change) -> OptimizerSpec:
        return spec

    def loop(self, change: Change) -> dict[str, Any]:
        return {}

    def code(self, change: Change, env: Env) -> str:
        return ""


REMEDIES: Registry[Remedy] = Registry("remedy")

from . import (  # noqa: E402,F401  (each module registers its remedy)
    activation,
    adam,
    clip,
    forget_bias,
    lr,
    norm_first,
    normalise,
    reinit,
    warmup,
)

__all__ = ["REMEDIES", "Remedy"]
