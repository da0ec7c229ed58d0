"""The data a remedy works with: :class:`Change` (one remedy, one variant), :class:`Env`
(what applying it may need) and :class:`OptimizerSpec` (the user's optimizer as data, so a
trial can rebuild it with another learning rate in another process). All picklable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError


def adam(params) -> torch.optim.Optimizer:
    """gp.fix's default optimizer: Adam, lr 1e-3 (Kingma & Ba 2015)."""
    return torch.optim.Adam(params, lr=1e-3)


def _class_path(cls: type) -> str:
    if cls.__module__.startswith("torch.optim") and getattr(torch.optim, cls.__name__, None) is cls:
        return f"torch.optim.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _defaults_of(cls: type) -> dict[str, Any]:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return {}
    return {
        k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty
    }


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # tensors and other values without a plain ==
        return False


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer as its class, its options, and per-group overrides by parameter index."""

    cls: type
    options: tuple[tuple[str, Any], ...]
    groups: tuple[tuple[tuple[int, ...], tuple[tuple[str, Any], ...]], ...] = ()

    @classmethod
    def from_factory(cls, factory: Callable, model: nn.Module) -> OptimizerSpec:
        """Call ``factory(model.parameters())`` once and read what it built."""
        params = list(model.parameters())
        try:
            opt = factory(iter(params))
        except Exception as err:
            raise InvalidInputError(
                f"optimizer(params) raised {type(err).__name__}: {err}; pass a callable such as "
                "lambda params: torch.optim.SGD(params, lr=0.1)"
            ) from None
        if not isinstance(opt, torch.optim.Optimizer):
            raise InvalidInputError(
                f"optimizer must be a callable params -> torch.optim.Optimizer, it returned "
                f"{type(opt).__name__}"
            )
        index = {id(p): i for i, p in enumerate(params)}
        defaults = dict(opt.defaults)
        groups = []
        for group in opt.param_groups:
            ids = tuple(index[id(p)] for p in group["params"] if id(p) in index)
            own = tuple(
                (k, v) for k, v in group.items() if k != "params" and not _same(v, defaults.get(k))
            )
            groups.append((ids, own))
        plain = len(groups) == 1 and not groups[0][1] and groups[0][0] == tuple(range(len(params)))
        return cls(type(opt), tuple(defaults.items()), () if plain else tuple(groups))

    @property
    def lr(self) -> float | None:
        value = dict(self.options).get("lr")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def name(self) -> str:
        return self.cls.__name__

    def build(self, params) -> torch.optim.Optimizer:
        params = list(params)
        if not self.groups:
            return self.cls(params, **dict(self.options))
        groups = [{"params": [params[i] for i in ids], **dict(own)} for ids, own in self.groups]
        return self.cls(groups, **dict(self.options))

    def scaled(self, factor: float) -> OptimizerSpec:
        """The same optimizer with every learning rate × ``factor`` (3 significant digits)."""

        def scale(items):
            return tuple((k, _round(v * factor) if k == "lr" else v) for k, v in items)

        if self.lr is None:
            raise InvalidInputError(f"{self.name} has no numeric lr to scale")
        groups = tuple((ids, scale(own)) for ids, own in self.groups)
        return replace(self, options=scale(self.options), groups=groups)

    def code(self, params: str = "model.parameters()") -> str:
        """``optimizer = torch.optim.X(model.parameters(), ...)``: the options that differ
        from the class's defaults."""
        if self.groups:  # per-group options: build it as before, then set each group's lr
            lrs = [dict(own).get("lr", self.lr) for _, own in self.groups]
            return (
                "optimizer = make_optimizer(model.parameters())  # your optimizer, as before\n"
                f"for group, lr in zip(optimizer.param_groups, {lrs!r}):\n"
                '    group["lr"] = lr'
            )
        defaults = _defaults_of(self.cls)
        args = [params]
        for k, v in self.options:
            if k != "lr" and k in defaults and _same(v, defaults[k]):  # lr: always shown
                continue
            if k not in defaults and k in ("differentiable", "foreach", "fused", "capturable"):
                continue
            args.append(f"{k}={v!r}")
        return f"optimizer = {_class_path(self.cls)}({', '.join(args)})"


def _round(x: float) -> float:
    return float(f"{x:.3g}")


@dataclass(frozen=True)
class Change:
    """One remedy with its options: ``label`` for tables, ``reason`` the findings it answers."""

    remedy: str
    label: str
    options: tuple[tuple[str, Any], ...] = ()
    reason: tuple[str, ...] = ()

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class Env:
    """What applying a change may need beyond the model: the LSUV batch and the seed."""

    batch: Any = None
    seed: int = 0
