"""Which modules are watched, what kind of activation each one is, and what its output is."""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Iterable
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
# Units can die: the output is exactly 0, with a gradient of exactly 0, for every x <= 0.
_RELU = (nn.ReLU, nn.ReLU6)
# A negative output still has a gradient (GELU's and SiLU's minimum is near x = -0.75 and
# -1.28; ELU's slope is e^x; LeakyReLU's a constant): "<= 0 on every example" is not dead.
_SMOOTH: dict[type, str] = {
    nn.GELU: "gelu", nn.SiLU: "silu", nn.Mish: "mish", nn.ELU: "elu", nn.CELU: "celu",
    nn.SELU: "selu", nn.LeakyReLU: "leakyrelu", nn.PReLU: "prelu", nn.RReLU: "rrelu",
    nn.Hardswish: "hardswish", nn.Softplus: "softplus",
}  # fmt: skip
# Activation modules of other libraries, by class name (Hugging Face's GELUActivation,
# NewGELUActivation, FastGELUActivation, QuickGELUActivation, GELUTanh, SiLUActivation,
# MishActivation, ReLUSquaredActivation; timm's GELU, QuickGELU, Swish): parameterless leaves.
_BY_NAME = (
    ("ReLUSquared", "relu", "relu"),
    ("GELU", "smooth", "gelu"),
    ("SiLU", "smooth", "silu"),
    ("Swish", "smooth", "silu"),
    ("Mish", "smooth", "mish"),
)
# Modules that apply an activation given as a function to their ``linear1``'s output.
_FUNCTIONAL_OWNERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class Activation:
    """``kind``: "saturating" (bounds ``lo``, ``hi``: the saturated fraction is measured),
    "relu" (a unit can die: the dead fraction is measured) or "smooth" (GELU, SiLU, ELU,
    LeakyReLU, ...: neither applies). ``name`` is the function ("relu", "gelu", "tanh").
    ``pre``: the module's output is the activation's *input* (``linear1`` of a Transformer
    layer whose activation is a function): for ReLU, ``pre <= 0`` is the same dead unit."""

    kind: str
    lo: float = 0.0
    hi: float = 0.0
    name: str = ""
    pre: bool = False

    def label(self) -> str:
        if self.kind == "saturating":
            return f"saturating:{self.lo:g},{self.hi:g}"
        if self.kind == "smooth":
            return f"smooth:{self.name}"
        return self.kind

    @property
    def can_die(self) -> bool:
        """Whether the dead-unit fraction means anything for this activation."""
        return self.kind == "relu"

    def count_bounds(self, tol: float = 0.01) -> tuple[float, float]:
        """The bounds ``reducers.saturated_count`` reads the recorded tensor against: the
        output range, or, for ``pre`` (the tensor is the function's input), the interval
        whose values ``|x| >= t`` are those with ``f(x)`` within ``tol`` of a bound:
        tanh ``t = atanh(1 - 2 tol)``, sigmoid ``log((1 - tol) / tol)``, softsign
        ``s / (1 - s)`` with ``s = 1 - 2 tol``, hardsigmoid ``3 (1 - 2 tol)``; hardtanh is
        the identity inside its bounds."""
        if not self.pre or self.kind != "saturating" or self.name == "hardtanh":
            return self.lo, self.hi
        s = 1 - 2 * tol
        t = {
            "tanh": math.atanh(s),
            "sigmoid": math.log((1 - tol) / tol),
            "softsign": s / (1 - s),
            "hardsigmoid": 3 * s,
        }[self.name]
        return -t / s, t / s


# linear1 of a watched Transformer layer -> the functional activation that follows it; set
# by watched_modules (a module's Slot sees only the module), weak so models are not kept.
_FUNCTIONAL: weakref.WeakKeyDictionary[nn.Module, Activation] = weakref.WeakKeyDictionary()


def activation_of(module: nn.Module) -> Activation | None:
    """The activation ``module`` is (or, for a Transformer layer's ``linear1`` whose
    activation is a function, the one applied to its output); None if it is none."""
    if module in _FUNCTIONAL:
        return _FUNCTIONAL[module]
    if isinstance(module, _RELU):  # before Hardtanh: ReLU6 subclasses it
        return Activation("relu", name="relu6" if isinstance(module, nn.ReLU6) else "relu")
    for cls, name in _SMOOTH.items():
        if isinstance(module, cls):
            return Activation("smooth", name=name)
    if isinstance(module, nn.Hardtanh):
        return Activation("saturating", float(module.min_val), float(module.max_val), "hardtanh")
    for cls, (lo, hi) in _SATURATING.items():
        if isinstance(module, cls):
            return Activation("saturating", lo, hi, cls.__name__.lower())
    if next(module.children(), None) is None and next(module.parameters(), None) is None:
        cls_name = type(module).__name__
        for key, kind, name in _BY_NAME:
            if key in cls_name:
                return Activation(kind, name=name)
    return None


def functional_activation(fn: object) -> Activation | None:
    """The activation a Transformer layer's ``activation`` attribute names, when it is a
    function (``F.relu``, ``F.gelu``, ``torch.tanh``); a module is watched by itself."""
    if isinstance(fn, nn.Module) or not callable(fn):
        return None
    name = getattr(fn, "__name__", "").lower().lstrip("_")
    if name in ("relu", "relu_"):
        return Activation("relu", name="relu", pre=True)
    smooth = {"gelu": "gelu", "silu": "silu", "mish": "mish", "elu": "elu", "leaky_relu":
              "leakyrelu", "selu": "selu", "celu": "celu", "softplus": "softplus"}  # fmt: skip
    if name in smooth:
        return Activation("smooth", name=smooth[name], pre=True)
    return None  # a saturating function's bounds apply to its output, not linear1's


def watched_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module but pure containers (Sequential, ModuleList, ModuleDict), whose output
    is one of their children's. The root keeps the name ``"(model)"``. A Transformer layer's
    functional activation is noted for its ``linear1`` (see :func:`activation_of`)."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, _FUNCTIONAL_OWNERS) and isinstance(module.linear1, nn.Module):
            act = functional_activation(getattr(module, "activation", None))
            if act is None:
                _FUNCTIONAL.pop(module.linear1, None)
            else:
                _FUNCTIONAL[module.linear1] = act
        if isinstance(module, _CONTAINERS):
            continue
        out.append((name or "(model)", module))
    return out


def tied_parameters(model: nn.Module) -> dict[str, str]:
    """``{alias: name}`` of parameters registered under more than one name (a tied head:
    GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``); ``name`` is the one
    ``named_parameters()`` lists."""
    first: dict[int, str] = {}
    tied = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied[name] = first[id(p)]
        else:
            first[id(p)] = name
    return tied


def primary_tensor(output: object, skip_scalars: bool = False) -> torch.Tensor | None:
    """The output that is recorded: the first floating-point tensor, depth first, in a
    tensor, tuple/list, dict, dataclass or PackedSequence (its ``.data``); None if there is
    none. ``skip_scalars``: the first with a dimension (a Hugging Face output's logits, not
    the loss it lists first)."""
    if isinstance(output, torch.Tensor):
        if skip_scalars and output.dim() == 0:
            return None
        return output if output.is_floating_point() or output.is_complex() else None
    if isinstance(output, PackedSequence):
        return output.data
    items: Iterable[object]
    if isinstance(output, (tuple, list)):
        items = output
    elif isinstance(output, dict):
        items = output.values()
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        items = [getattr(output, f.name, None) for f in dataclasses.fields(output)]
    else:
        return None
    for item in items:
        t = primary_tensor(item, skip_scalars)
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
