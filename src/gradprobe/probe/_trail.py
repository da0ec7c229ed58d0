"""``first_nonfinite="auto"`` on the CPU: the module outputs of an unlogged step's forward,
kept until the model's output is read, so that a NaN/Inf in that output is traced to the
first module that made it — on the step it happened, with the weights that made it.

The free check of unlogged steps reads only the model's output (one sum). Each watched
module's forward hook (the only per-module hook left on such a step) notes its output here
and reads nothing, so a finite step costs a list append per module. When the output check
finds a NaN/Inf, the noted outputs are read in the order the modules finished (the order the
exact search of a logged step reads them): the first non-finite one names the module.

An output is held strongly (it lives until the end of the forward, as most do anyway:
autograd saves them for the backward) while the outputs held so far total at most
``STRONG_MAX`` values; past that, weakly, so a long forward keeps no more memory alive than
``STRONG_MAX`` float32 values (16 MiB). A weakly held output that was freed (a residual
branch's output consumed by an addition, which saves nothing), or one changed in place after
its module returned it (its ``_version``), cannot be read, unless a later module noted the
same tensor (an in-place ReLU after a Linear: read as the ReLU's); those made before the
first non-finite one are named in the event, since any of them may have been first.

A module's INPUT is noted too (``note_input``) when it is not the tensor noted just before
(the output of the module before it in a chain): a tensor made by a parent's own code between
two modules — ``x / x.std()``, a log, an exp. When the first non-finite item is such an input,
the NaN/Inf was made before the module by that code, and the module only passed it on. On a
logged step the same inputs are kept (``find_input``) for the one module the exact search
names, read at the step's end.
"""

from __future__ import annotations

import math
import weakref

import torch

from . import reducers as R
from .modules import primary_tensor, real_values

STRONG_MAX = 1 << 22  # values held strongly per forward; past them, weak references
#: an event's detail when the first tensor holding NaN/Inf was a module's input that no watched
#: module made: the parent's own code made it (diagnose/rules/non_finite.py reads it)
INPUT_BAD = "its input was already NaN/Inf, made outside every watched module"


class Trail:
    """The outputs noted since the last read of the model's output."""

    __slots__ = ("_held", "_items")

    def __init__(self) -> None:
        # (name, tensor or weakref, version, an input of the module ``name``: not its output)
        self._items: list[tuple[str, object, int, bool]] = []
        self._held = 0

    def __len__(self) -> int:
        return len(self._items)

    def note(self, name: str, t: torch.Tensor, is_input: bool = False) -> None:
        n = t.numel()
        if self._held + n <= STRONG_MAX:
            self._held += n
            self._items.append((name, t, t._version, is_input))
        else:
            self._items.append((name, weakref.ref(t), t._version, is_input))

    def note_input(self, name: str, t: torch.Tensor) -> None:
        """The input ``t`` of module ``name``, unless it is the tensor noted last (a chain)."""
        if self._items:
            last = self._items[-1][1]
            if (last() if isinstance(last, weakref.ref) else last) is t:
                return
        self.note(name, t, is_input=True)

    def find_input(self, name: str) -> float | None:
        """The fraction of NaN/Inf values in the input noted for module ``name`` (its first
        call), None when none was noted, it cannot be read any more, or it is finite."""
        for n, h, version, is_input in self._items:
            if n == name and is_input:
                t = h() if isinstance(h, weakref.ref) else h
                if t is None or t._version != version:
                    return None
                frac = nonfinite_share(t)
                return frac if frac else None
        return None

    def clear(self) -> None:
        self._items = []
        self._held = 0

    def first_nonfinite(self) -> tuple[str, float, list[str], bool] | None:
        """(the module of the first noted tensor holding NaN/Inf, the fraction of its values
        that do, the modules before it whose output could not be read, whether that tensor
        was the module's input), or None; clears the trail."""
        items = [(n, h() if isinstance(h, weakref.ref) else h, v, i) for n, h, v, i in self._items]
        self.clear()
        unread: list[str] = []
        for k, (name, t, version, is_input) in enumerate(items):
            if t is None or t._version != version:
                # changed in place by a later module that noted it too (an in-place ReLU):
                # read there, with that module's change (an input: not read at all)
                if not is_input and (t is None or not any(u is t for _, u, _, _ in items[k + 1 :])):
                    unread.append(name)
                continue
            frac = nonfinite_share(t)
            if frac:
                return name, frac, [u for u in unread if u != name], is_input
        return None


def module_input(args, out=None) -> torch.Tensor | None:
    """The primary tensor of a module's ``args`` when it is a non-empty float tensor other
    than the module's output ``out`` (an in-place module returns its input), else None."""
    a = primary_tensor(args)
    if a is None or a is out or not a.numel() or not a.is_floating_point():
        return None
    return a


def nonfinite_share(t: torch.Tensor) -> float:
    """The fraction of NaN/Inf values of ``t`` (0.0: none — or Σx overflowed float32, large
    values but no NaN/Inf)."""
    if t.dtype.is_complex or t.layout != torch.strided:
        t = real_values(t)
    if math.isfinite(R.finite_sum(t).item()):
        return 0.0
    return R.nonfinite_fraction(t)
