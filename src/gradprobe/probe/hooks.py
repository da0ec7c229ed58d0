"""Hook ownership: every handle gradprobe registers is owned, and removed exactly once.

``HookSet`` is a context manager that removes all its hooks in ``finally`` (the fastai
``Hooks`` habit); removing twice is harmless. Tensor hooks on activations and gradients die
with the autograd graph; they check ``HookSet.active`` so a graph kept alive after the probe
closed records nothing.

Under ``torch.compile`` every hook runs eagerly (a graph break at each watched module)
instead of being traced and recompiled: while Dynamo traces, the hook calls a
``torch.compiler.disable``d copy of itself. In eager mode it runs directly (the disabled
wrapper costs several µs per call, which on a small model is 15% of a step).

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


def eager(fn: Callable) -> Callable:
    """``fn`` kept out of torch.compile's tracing: run through a ``torch.compiler.disable``d
    wrapper only while Dynamo traces (``is_compiling()``), directly otherwise."""
    disabled = torch.compiler.disable(fn)
    is_compiling = _is_compiling()

    def run(*args, **kwargs):
        if is_compiling():
            return disabled(*args, **kwargs)
        return fn(*args, **kwargs)

    return run


class Hook:
    """One registered hook: ``remove()`` is idempotent."""

    __slots__ = ("_handle", "name")

    def __init__(self, handle: Any, name: str) -> None:
        self._handle = handle
        self.name = name

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

        return eager(safe)

    def forward(self, module: torch.nn.Module, fn: Callable, name: str) -> None:
        self._add(module.register_forward_hook(self.wrap(fn, name)), f"forward:{name}")

    def forward_pre(
        self, module: torch.nn.Module, fn: Callable, name: str, with_kwargs: bool = False
    ) -> None:
        handle = module.register_forward_pre_hook(self.wrap(fn, name), with_kwargs=with_kwargs)
        self._add(handle, f"forward_pre:{name}")

    def param(self, param: torch.nn.Parameter, fn: Callable, name: str) -> None:
        hook = self.wrap(fn, name)
        self._add(param.register_post_accumulate_grad_hook(hook), f"grad:{name}")

    def optimizer_step(self, optimizer: torch.optim.Optimizer, fn: Callable) -> None:
        self._add(optimizer.register_step_post_hook(fn), "optimizer_step")

    def _add(self, handle: Any, name: str) -> None:
        self.hooks.append(Hook(handle, name))

    def remove(self) -> None:
        """Remove every hook, even if one removal fails; idempotent."""
        self.active = False
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
