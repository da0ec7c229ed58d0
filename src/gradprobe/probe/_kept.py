"""Is ``optimizer.zero_grad()`` called? One parameter's ``.grad``, seen just before each
accumulation into it.

At an optimizer step the probe notes one parameter's ``.grad`` tensor (weakly: a gradient set
to None is freed as without the probe) and its version. A hook on that parameter's incoming
gradient (a tensor hook: it runs before the gradient is added to ``.grad``) then compares
``.grad`` with what was noted: set to None, replaced, or changed in place (``zero_grad(
set_to_none=False)`` zeroes the same tensor: a new version) means zeroed. The version is
noted again after each accumulation, so a backward that adds to ``.grad`` (a GAN's G through
D, micro-batches) is not mistaken for a zeroing, and a zeroing after it (D's ``zero_grad``
before its own backward) is still seen. An accumulation onto the noted tensor unchanged, with
no zeroing before the next optimizer step, is a loop that never zeroes: ``meta[
"grads_not_zeroed"]``. No host read unless that is suspected (once, on the one tensor).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch

from .hooks import HookSet


def _strided(g: object) -> bool:
    return isinstance(g, torch.Tensor) and g.layout == torch.strided


class KeptGrads:
    """The forgotten-``zero_grad`` check on one parameter (the first trainable one with a
    gradient at an optimizer step). ``step()`` returns the step it began at once found."""

    def __init__(
        self, params: list[tuple[str, torch.Tensor]], hooks: HookSet, now: Callable[[], int]
    ) -> None:
        self._params, self._hooks, self._now = params, hooks, now  # now(): the probe's step
        self._mark: tuple[str, torch.Tensor] | None = None
        self._hooked: set[int] = set()
        self._noted: tuple[weakref.ref, int] | None = None  # (.grad, its version)
        self._armed = False  # an optimizer step noted .grad; no zeroing seen since
        self._suspect: int | None = None  # the step whose backward added to it unchanged
        self.found = False

    def step(self) -> dict | None:
        """At an optimizer step (its post-hook): ``{"step", "param"}`` when the interval
        since the last one added to the last ``.grad`` and never zeroed it; else note it."""
        if self.found:
            return None
        if self._armed and self._suspect is not None and self._mark is not None:
            name, p = self._mark
            g = p.grad
            if _strided(g) and bool(g.detach().ne(0).any()):  # summed, not all zero
                self.found = True
                return {"step": self._suspect, "param": name}
        self._armed, self._suspect = False, None
        if self._mark is None or not _strided(self._mark[1].grad):
            self._mark = next(
                ((n, p) for n, p in self._params if p.requires_grad and _strided(p.grad)), None
            )
            if self._mark is None:
                return None
            self._hook(*self._mark)
        g = self._mark[1].grad
        self._noted, self._armed = (weakref.ref(g), g._version), True
        return None

    def _hook(self, name: str, p: torch.Tensor) -> None:
        if id(p) in self._hooked:
            return
        self._hooked.add(id(p))
        self._hooks.grad_pre(p, self._before(p), f"zero_grad check:{name}")
        self._hooks.param(p, self._after(p), f"zero_grad check:{name}")

    def _before(self, p: torch.Tensor) -> Callable:
        def hook(grad):  # p.grad is still what it was before this gradient is added
            if not (self._armed and self._hooks.active) or self._mark is None:
                return
            if self._mark[1] is not p or self._noted is None:
                return
            g, (ref, version) = p.grad, self._noted
            if g is None or g is not ref() or g._version != version:
                self._armed, self._suspect = False, None  # zeroed (or replaced) since
            elif self._suspect is None:
                self._suspect = self._now()

        return hook

    def _after(self, p: torch.Tensor) -> Callable:
        def hook(param):
            if self._armed and self._mark is not None and self._mark[1] is p:
                g = param.grad
                if _strided(g):
                    self._noted = (weakref.ref(g), g._version)

        return hook
