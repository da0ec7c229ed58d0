"""Which members of a module list take an earlier member's output, read once from autograd.

The diagnosis counts depth along repeated blocks (``diagnose/blocks.py``), found by name and
type: ``layers.0 … layers.11`` is a chain. A list of the same modules can also be parallel
branches that never feed each other: the experts of a mixture, an ensemble's members, the
heads of a multi-task net. Read as a chain, their gradients' ratio (set by the routing, not
by depth) looked like vanishing or exploding across "blocks".

On the first logged step whose forward records gradients, hooks of its own (on every
module named ``prefix.k``, containers included, which the probe does not watch, but not on
an ``nn.Sequential``'s members, which its forward chains)
note each member's output autograd node; before ``prefix.k`` (``k ≥ 1``) runs, its inputs'
nodes are walked back, breadth first and at most ``LIMIT`` nodes, for the node of an
earlier ``prefix.j``. A chain finds it within a few nodes (``x = block(x)``, or ``x = x +
block(x)`` one ``add`` away); parallel members find none. At the step's end
``run.meta["module_lists"]`` holds ``{"parallel": {prefix: [members checked]}, "chains":
[prefixes]}``: the lists none of whose checked members was fed by an earlier one, and the
others; the hooks are then removed. Only what autograd records is seen: a member is
checked only when an earlier member's output has an autograd node (an input without one,
data, cannot depend on it), so a list that ran without gradients (frozen) has no entry
and is judged by its names, as before.
"""

from __future__ import annotations

import functools
from collections import deque

import torch

from .modules import primary_tensor

LIMIT = 256  # autograd nodes walked back from one member's inputs
META = "module_lists"  # the run.meta key


def member(name: str) -> tuple[str, int] | None:
    """``(prefix, k)`` for a module named ``prefix.k`` (``k`` for a top-level one)."""
    prefix, _, last = name.rpartition(".")
    return (prefix, int(last)) if last.isdigit() else None


def _reaches(roots: list, targets: set, limit: int = LIMIT) -> bool:
    """Whether an autograd node in ``targets`` is among the first ``limit`` nodes reached
    from ``roots`` through ``next_functions``."""
    queue, seen = deque(roots), set(roots)
    while queue and len(seen) <= limit:
        node = queue.popleft()
        if node in targets:
            return True
        for nxt, _ in node.next_functions:
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return False


class SiblingFlow:
    """Hooks on the module lists' members until the first logged step with gradients ends:
    whose inputs reach an earlier member's output (``logged()``: is this step logged?)."""

    def __init__(self, model: torch.nn.Module, hooks, logged) -> None:
        self._logged = logged
        self._outputs: dict[str, list[tuple[int, object]]] = {}  # prefix -> (k, node)
        self._checked: dict[str, set[int]] = {}
        self._fed: dict[str, set[int]] = {}
        self._hooks = []
        for prefix, parent in model.named_modules():
            if type(parent) is torch.nn.Sequential:
                continue  # its forward chains its members: nothing to find out
            for child, module in parent.named_children():
                name = f"{prefix}.{child}" if prefix else child
                place = member(name)
                if place is None:
                    continue
                if place[1] > 0:
                    pre = functools.partial(self._inputs, place)
                    self._hooks.append(hooks.forward_pre(module, pre, name, with_kwargs=True))
                post = functools.partial(self._output, place)
                self._hooks.append(hooks.forward(module, post, name))

    @property
    def done(self) -> bool:
        return not self._hooks

    def _output(self, place: tuple[str, int], module, args, output) -> None:
        if not self._logged() or not torch.is_grad_enabled():
            return
        t = primary_tensor(output)
        if t is not None and t.grad_fn is not None:
            self._outputs.setdefault(place[0], []).append((place[1], t.grad_fn))

    def _inputs(self, place: tuple[str, int], module, args, kwargs) -> None:
        if not self._logged() or not torch.is_grad_enabled():
            return
        prefix, k = place
        given = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        roots = [a.grad_fn for a in given if a.grad_fn is not None]
        earlier = {node for j, node in self._outputs.get(prefix, ()) if j < k}
        if not earlier:
            return  # no earlier member made a graph (frozen, or none ran): nothing to tell
        self._checked.setdefault(prefix, set()).add(k)
        if roots and _reaches(roots, earlier):
            self._fed.setdefault(prefix, set()).add(k)

    def finish(self, run) -> None:
        """At the end of a logged step: if its forward recorded gradients, store what was
        seen and remove the hooks; otherwise look again on the next logged step."""
        if not self._outputs and not self._checked:
            return
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        parallel = {p: sorted(ks) for p, ks in sorted(self._checked.items()) if p not in self._fed}
        self._outputs.clear()
        if self._checked:
            run.set_meta(META, {"parallel": parallel, "chains": sorted(self._fed)})
