"""Hook ownership: every handle gradprobe registers is owned, and removed exactly once.

``HookSet`` is a context manager that removes all its hooks in ``finally`` (the fastai
``Hooks`` habit); removing twice is harmless. Tensor hooks on activations and gradients die
with the autograd graph; they check ``HookSet.active`` so a graph kept alive after the probe
closed records nothing.

Under ``torch.compile`` every hook runs eagerly (a graph break at each watched module)
instead of being traced and recompiled: while Dynamo traces, the hook calls a
``torch.compiler.disable``d copy of itself. In eager mode it runs directly (the disabled
wrapper costs several µs per call, which on a small model is 15% of a step).

Pausable hooks (the watched modules' forward hooks) are taken off while a step records
nothing (``pause()``) and put back, the same wrapped functions, when one does
(``resume()``): a module without hooks takes PyTorch's fast call path, while one with hooks
that return at once still costs a few µs per call. Hooks registered ``while_paused`` are the
other way round: on only while the pausable ones are off, and only when ``pause(True)`` asks
for them (the module outputs noted on unlogged steps, probe/_trail.py). Once a hook has run
under Dynamo's tracing, pausing stops for good (a module whose hooks come and go would be
recompiled), and the ``while_paused`` hooks stay off.

An exception inside a hook never reaches the user's training loop: ``HookSet.wrap`` catches
it, hands it to ``on_error`` (the probe records it as a warning in the run) and the hook
returns None, leaving the module's inputs, outputs and gradients untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

import torch


def _is_compiling() -> Callable[[], bool]:
    """``torch.compiler.is_compiling`` (torch >= 2.3), or Dynamo's own before it."""
    found = getattr(torch.compiler, "is_compiling", None)
    if found is None:
        from torch import _dynamo

        found = _dynamo.is_compiling
    return found


def eager(fn: Callable, on_trace: Callable[[], None] | None = None) -> Callable:
    """``fn`` kept out of torch.compile's tracing: run through a ``torch.compiler.disable``d
    wrapper only while Dynamo traces (``is_compiling()``; ``on_trace()`` is called then),
    directly otherwise."""
    disabled = torch.compiler.disable(fn)
    is_compiling = _is_compiling()

    def run(*args, **kwargs):
        if is_compiling():
            if on_trace is not None:
                on_trace()
            return disabled(*args, **kwargs)
        return fn(*args, **kwargs)

    return run


class Hook:
    """One registered hook: ``remove()`` is idempotent; ``attach`` (pausable hooks)
    registers it again and returns the new handle."""

    __slots__ = ("_handle", "attach", "name", "while_paused")

    def __init__(
        self, handle: Any, name: str, attach: Callable[[], Any] | None = None,
        while_paused: bool = False,
    ) -> None:  # fmt: skip
        self._handle = handle
        self.name = name
        self.attach = attach
        self.while_paused = while_paused  # on only while the pausable hooks are off

    @property
    def removed(self) -> bool:
        return self._handle is None

    def remove(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.remove()


class HookSet:
    """All hooks of one probe; ``remove()`` (or leaving the ``with`` block) removes them all."""

    def __init__(self, on_error: Callable[[str, Exception], None] | None = None) -> None:
        self.hooks: list[Hook] = []
        self.active = True
        self.on_error = on_error
        self.seconds = 0.0  # host time spent inside the hooks (two clock reads per call)
        self.paused = False  # the pausable hooks are off
        self.trail = False  # the while_paused hooks are on
        self.compiled = False  # set by _traced

    def wrap(self, fn: Callable, name: str) -> Callable:
        """``fn`` run eagerly, its exceptions caught and reported to ``on_error``, its time
        added to ``seconds``."""

        def safe(*args, **kwargs):
            t0 = perf_counter()
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                if self.on_error is None:
                    raise
                self.on_error(name, err)
                return None
            finally:
                self.seconds += perf_counter() - t0

        return eager(safe, on_trace=self._traced)

    def _traced(self) -> None:
        self.compiled = True  # a hook ran while Dynamo traced: never pause again

    def forward(
        self, module: torch.nn.Module, fn: Callable, name: str, pausable: bool = False,
        with_kwargs: bool = False, while_paused: bool = False, always_call: bool = False,
    ) -> Hook:  # fmt: skip
        """``while_paused``: registered off, attached by ``pause(True)`` only; ``always_call``:
        run even when the forward raises (torch's flag)."""
        wrapped = self.wrap(fn, name)

        def attach():
            return module.register_forward_hook(
                wrapped, with_kwargs=with_kwargs, always_call=always_call
            )

        if while_paused:
            hook = Hook(None, f"forward:{name}", attach, while_paused=True)
            if self.paused and self.trail and not self.compiled:
                hook._handle = attach()
            self.hooks.append(hook)
            return hook
        return self._add(attach(), f"forward:{name}", attach if pausable else None)

    def forward_pre(
        self, module: torch.nn.Module, fn: Callable, name: str, with_kwargs: bool = False,
        pausable: bool = False,
    ) -> Hook:  # fmt: skip
        wrapped = self.wrap(fn, name)

        def attach():
            return module.register_forward_pre_hook(wrapped, with_kwargs=with_kwargs)

        return self._add(attach(), f"forward_pre:{name}", attach if pausable else None)

    def pause(self, trail: bool = False) -> None:
        """Take the pausable hooks off (nothing to record this step) and, with ``trail``,
        put the ``while_paused`` ones on (off without it); not under compile."""
        if self.compiled:
            self.resume()
            return
        if not self.paused:
            for hook in self.hooks:
                if hook.attach is not None and not hook.while_paused:
                    hook.remove()
            self.paused = True
        if trail != self.trail:
            self.trail = trail
            for hook in self.hooks:
                if hook.while_paused:
                    if trail and hook.removed:
                        hook._handle = hook.attach()
                    elif not trail:
                        hook.remove()

    def resume(self) -> None:
        """Put the pausable hooks back, in the order they were installed, and take the
        ``while_paused`` ones off."""
        if self.trail:
            self.trail = False
            for hook in self.hooks:
                if hook.while_paused:
                    hook.remove()
        if not self.paused:
            return
        self.paused = False
        for hook in self.hooks:
            if hook.attach is not None and not hook.while_paused and hook.removed:
                hook._handle = hook.attach()

    def param(self, param: torch.nn.Parameter, fn: Callable, name: str) -> None:
        hook = self.wrap(fn, name)
        self._add(param.register_post_accumulate_grad_hook(hook), f"grad:{name}")

    def grad_pre(self, param: torch.Tensor, fn: Callable, name: str) -> None:
        """A hook on the gradient flowing into a leaf, before it is added to ``.grad``; ``fn``
        must return None (the gradient is not changed)."""
        self._add(param.register_hook(self.wrap(fn, name)), f"grad_pre:{name}")

    def optimizer_step(self, optimizer: torch.optim.Optimizer, fn: Callable) -> None:
        self._add(optimizer.register_step_post_hook(fn), "optimizer_step")

    def _add(self, handle: Any, name: str, attach: Callable[[], Any] | None = None) -> Hook:
        hook = Hook(handle, name, attach)
        self.hooks.append(hook)
        return hook

    def remove(self) -> None:
        """Remove every hook, even if one removal fails; idempotent."""
        self.active = False
        self.paused = self.trail = False
        errors = []
        for hook in self.hooks:
            try:
                hook.remove()
            except Exception as err:  # keep removing the others
                errors.append(err)
        self.hooks = []
        if errors:
            raise errors[0]

    def __len__(self) -> int:
        return sum(not h.removed for h in self.hooks)

    def __enter__(self) -> HookSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
