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
"""

from __future__ import annotations

import math
import weakref

import torch

from . import reducers as R
from .modules import real_values

STRONG_MAX = 1 << 22  # values held strongly per forward; past them, weak references


class Trail:
    """The outputs noted since the last read of the model's output."""

    __slots__ = ("_held", "_items")

    def __init__(self) -> None:
        self._items: list[tuple[str, object, int]] = []  # (name, tensor or weakref, version)
        self._held = 0

    def __len__(self) -> int:
        return len(self._items)

    def note(self, name: str, t: torch.Tensor) -> None:
        n = t.numel()
        if self._held + n <= STRONG_MAX:
            self._held += n
            self._items.append((name, t, t._version))
        else:
            self._items.append((name, weakref.ref(t), t._version))

    def clear(self) -> None:
        self._items = []
        self._held = 0

    def first_nonfinite(self) -> tuple[str, float, list[str]] | None:
        """(the first noted output holding NaN/Inf, the fraction of its values that do, the
        modules before it whose output could not be read), or None; clears the trail."""
        items = [(n, h() if isinstance(h, weakref.ref) else h, v) for n, h, v in self._items]
        self.clear()
        unread: list[str] = []
        for i, (name, t, version) in enumerate(items):
            if t is None or t._version != version:
                # changed in place by a later module that noted it too (an in-place ReLU):
                # read there, with that module's change
                if t is None or not any(u is t for _, u, _ in items[i + 1 :]):
                    unread.append(name)
                continue
            if t.dtype.is_complex or t.layout != torch.strided:
                t = real_values(t)
            if not math.isfinite(R.finite_sum(t).item()):
                frac = R.nonfinite_fraction(t)
                if frac > 0:  # (0: Σx overflowed float32, large values but no NaN/Inf)
                    return name, frac, [u for u in unread if u != name]
        return None
