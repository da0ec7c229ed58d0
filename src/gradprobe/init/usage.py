"""Fans of raw weight matrices read from how the forward pass uses them.

torch's convention stores a weight as ``(out, in)`` and computes ``x @ W.T``
(``F.linear``). A raw ``nn.Parameter`` used as ``x @ W`` is stored ``(in, out)``, so
its fan-in is ``W.shape[0]``, not ``W.shape[1]``: with the convention a 256 → 64 layer
drawn by LeCun would get std 1/√64 = 0.125 instead of 1/√256 = 0.0625. Running the
model once on an example input under a :class:`~torch.overrides.TorchFunctionMode`
shows which side of each matrix product every parameter sits on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .activations import run_example

Fan = tuple[int, int]

# (x, W) products: the right operand's rows are the inputs, its columns the outputs
_RIGHT = {torch.matmul, torch.mm, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.mm}
_RMATMUL = {torch.Tensor.__rmatmul__}  # x @ W dispatched as W.__rmatmul__(x)


class _Recorder(TorchFunctionMode):
    def __init__(self, params: dict[int, nn.Parameter]) -> None:
        super().__init__()
        self.params = params
        self.fans: dict[int, Fan] = {}

    def _note(self, w: object, fan: Fan) -> None:
        if isinstance(w, torch.Tensor) and id(w) in self.params and w.dim() == 2:
            self.fans.setdefault(id(w), fan)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RIGHT and len(args) >= 2:
            x, w = args[0], args[1]
            if isinstance(w, torch.Tensor) and w.dim() == 2:
                self._note(w, (w.shape[0], w.shape[1]))  # x @ W: (in, out)
            if isinstance(x, torch.Tensor) and x.dim() == 2:
                self._note(x, (x.shape[1], x.shape[0]))  # W @ x: (out, in)
        elif func in _RMATMUL and len(args) >= 2:
            w = args[0]
            if isinstance(w, torch.Tensor) and w.dim() == 2:
                self._note(w, (w.shape[0], w.shape[1]))
        elif func is F.linear and len(args) >= 2:
            w = args[1]
            if isinstance(w, torch.Tensor) and w.dim() == 2:
                self._note(w, (w.shape[1], w.shape[0]))  # torch's own convention
        return func(*args, **kwargs)


def observed_fans(model: nn.Module, example_input: Any, params: Iterable[nn.Parameter]) -> dict:
    """``{id(param): (fan_in, fan_out)}`` for each 2-D parameter in ``params`` that the
    forward on ``example_input`` multiplied in a matrix product."""
    wanted = {id(p): p for p in params if p.dim() == 2}
    if not wanted or example_input is None:
        return {}
    recorder = _Recorder(wanted)
    with recorder:
        run_example(model, example_input)
    return recorder.fans


def is_builtin(module: nn.Module) -> bool:
    """A torch.nn layer, whose weights follow torch's convention by construction."""
    return type(module).__module__.startswith("torch.")
