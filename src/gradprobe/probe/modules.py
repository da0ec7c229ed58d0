"""Which modules are watched, what kind of activation each one is, and what its output is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

# Output ranges of saturating activations: saturation is measured against these bounds.
_SATURATING: dict[type, tuple[float, float]] = {
    nn.Tanh: (-1.0, 1.0),
    nn.Sigmoid: (0.0, 1.0),
    nn.Softsign: (-1.0, 1.0),
    nn.Hardsigmoid: (0.0, 1.0),
}
# ReLU family: a unit can die (<= 0 for every example).
_RELU = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
)  # fmt: skip
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class Activation:
    """``kind`` is "saturating" (with bounds ``lo``, ``hi``) or "relu"."""

    kind: str
    lo: float = 0.0
    hi: float = 0.0

    def label(self) -> str:
        return f"saturating:{self.lo:g},{self.hi:g}" if self.kind == "saturating" else self.kind


def activation_of(module: nn.Module) -> Activation | None:
    if isinstance(module, _RELU):  # before Hardtanh: ReLU6 subclasses it
        return Activation("relu")
    if isinstance(module, nn.Hardtanh):
        return Activation("saturating", float(module.min_val), float(module.max_val))
    for cls, (lo, hi) in _SATURATING.items():
        if isinstance(module, cls):
            return Activation("saturating", lo, hi)
    return None


def watched_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module but pure containers (Sequential, ModuleList, ModuleDict), whose output
    is one of their children's. The root keeps the name ``"(model)"``."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, _CONTAINERS):
            continue
        out.append((name or "(model)", module))
    return out


def primary_tensor(output: object) -> torch.Tensor | None:
    """The output that is recorded: the first floating-point tensor, depth first, in a
    tensor, tuple/list, dict, dataclass or PackedSequence (its ``.data``); None if there is
    none."""
    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() or output.is_complex() else None
    if isinstance(output, PackedSequence):
        return output.data
    if isinstance(output, (tuple, list)):
        items = output
    elif isinstance(output, dict):
        items = output.values()
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        items = [getattr(output, f.name, None) for f in dataclasses.fields(output)]
    else:
        return None
    for item in items:
        t = primary_tensor(item)
        if t is not None:
            return t
    return None


def real_values(t: torch.Tensor) -> torch.Tensor:
    """The values whose stats are recorded: a complex tensor as its real and imaginary parts
    (a view: the stats of ``2n`` real numbers), a sparse one (``nn.Embedding(sparse=True)``'s
    gradient) as dense."""
    if t.layout != torch.strided:
        t = t.to_dense()
    return torch.view_as_real(t) if t.is_complex() else t


def rnn_time_dim(module: nn.Module, x: object) -> int | None:
    """The time dimension of an RNN/LSTM/GRU input or output tensor; None for packed input."""
    if not isinstance(x, torch.Tensor):
        return None
    if x.dim() == 2:  # unbatched (L, H)
        return 0
    return 1 if getattr(module, "batch_first", False) else 0


class Slot:
    """One watched module (or the model input)."""

    __slots__ = ("act", "id", "is_rnn", "module", "name")

    def __init__(self, sid: int, name: str, module: nn.Module | None) -> None:
        self.id, self.name, self.module = sid, name, module
        self.act = activation_of(module) if module is not None else None
        self.is_rnn = isinstance(module, nn.RNNBase)


class BwdRec:
    """A gradient hook: ``kind`` "out" (∂L/∂output of ``slot``) or "param"."""

    __slots__ = ("consumers", "kind", "name", "slot")

    def __init__(self, kind: str, slot: Slot, name: str) -> None:
        self.kind, self.slot, self.name = kind, slot, name
        self.consumers: list[str] = []

    def key(self) -> tuple:
        return (self.kind, self.name, self.slot.name, tuple(self.consumers))
