"""The data of a fix: training batches in one fixed order, a held-out set, the loss.

``(inputs, targets)`` tensors: a seeded hold-out of ``holdout`` of the examples (none under
10 examples: then the score is the training loss), then mini-batches of ``batch_size`` drawn
from a new seeded permutation each epoch. A loader (any re-iterable of ``(inputs, targets)``
batches): its first pass is cached, up to ``steps`` + a fifth more batches; the last fifth is
held out and the rest repeats in the same order. Every trial sees exactly the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from ..probe.modules import primary_tensor

MAX_CACHED_BYTES = 2 * 2**30  # a loader's cached batches: refuse more than 2 GiB


def _nbytes(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, Mapping):
        return sum(_nbytes(v) for v in x.values())
    if isinstance(x, (tuple, list)):
        return sum(_nbytes(v) for v in x)
    return 0


def _length(x: Any) -> int | None:
    if isinstance(x, torch.Tensor):
        return x.shape[0] if x.dim() else None
    if isinstance(x, Mapping):
        return next((_length(v) for v in x.values() if _length(v) is not None), None)
    if isinstance(x, (tuple, list)) and x:
        return _length(x[0])
    return None


def call(model: nn.Module, inputs: Any) -> Any:
    """The model's forward on a batch: a tensor, a tuple of positional inputs, or a dict."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(v, device) for v in x)
    return x


@dataclass
class Data:
    """Training batches in a fixed order, a held-out set and a sample batch (for LSUV)."""

    batch_size: int
    seed: int
    x: torch.Tensor | None = None  # tensors: the training examples
    y: torch.Tensor | None = None
    cached: list | None = None  # a loader: its training batches, in order
    held: list | None = None  # held-out (inputs, targets) chunks; empty: score on training
    sample: Any = None

    def batches(self, steps: int, seed: int | None = None) -> Iterator[tuple[Any, Any]]:
        """``steps`` batches in the order of ``seed`` (default: the fix's seed; a loader's
        batches then come in the loader's own order, another seed permutes them per epoch)."""
        seed = self.seed if seed is None else seed
        if self.cached is not None:
            gen = torch.Generator().manual_seed(seed)
            n = len(self.cached)
            epoch = list(range(n))
            for step in range(steps):
                if step % n == 0 and seed != self.seed:
                    epoch = torch.randperm(n, generator=gen).tolist()
                yield self.cached[epoch[step % n]]
            return
        assert self.x is not None and self.y is not None
        n = self.x.shape[0]
        size = min(self.batch_size, n)
        gen = torch.Generator().manual_seed(seed)
        order, pos = torch.randperm(n, generator=gen), 0
        for _ in range(steps):
            if pos + size > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos : pos + size]
            pos += size
            yield self.x[idx], self.y[idx]

    def scoring(self) -> list:
        """The chunks the score is computed on: the held-out set, else the training data."""
        if self.held:
            return self.held
        if self.cached is not None:
            return self.cached
        assert self.x is not None and self.y is not None
        return [(self.x[i : i + 1024], self.y[i : i + 1024]) for i in range(0, len(self.x), 1024)]

    def targets(self) -> torch.Tensor | None:
        if self.y is not None:
            return self.y
        ys = [y for _, y in self.cached or [] if isinstance(y, torch.Tensor)]
        try:
            return torch.cat([y.reshape(len(y), *y.shape[1:]) for y in ys]) if ys else None
        except RuntimeError:
            return None


def prepare(data: Any, batch_size: int, holdout: float, seed: int, steps: int) -> Data:
    """Check ``data`` and split it (see module docstring)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(holdout, (int, float)) and 0 <= holdout < 1):
        raise InvalidInputError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    if isinstance(data, torch.Tensor):
        raise InvalidInputError(
            "data must be (inputs, targets) or a loader of (inputs, targets) batches, got a "
            "single tensor; pass the targets too, e.g. gp.fix(model, (x, y))"
        )
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], torch.Tensor):
        return _tensors(data[0], data[1], batch_size, holdout, seed)
    if not hasattr(data, "__iter__") or isinstance(data, (str, bytes, Mapping)):
        raise InvalidInputError(
            f"data must be (inputs, targets) tensors or a re-iterable loader of (inputs, "
            f"targets) batches, got {type(data).__name__}"
        )
    return _loader(data, batch_size, holdout, seed, steps)


def _tensors(x: Any, y: torch.Tensor, batch_size: int, holdout: float, seed: int) -> Data:
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(
            f"inputs must be a tensor when targets are, got {type(x).__name__}; for other "
            "inputs pass a loader of (inputs, targets) batches"
        )
    if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
        raise InvalidInputError(
            f"inputs and targets must have the same number of examples (first dimension), got "
            f"shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    n = x.shape[0]
    if n < 2:
        raise InvalidInputError(f"fix needs at least 2 examples to train on, got {n}")
    k = round(holdout * n) if n >= 10 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held, train = perm[:k], perm[k:]
    chunks = [(x[held[i : i + 1024]], y[held[i : i + 1024]]) for i in range(0, k, 1024)]
    xt, yt = x[train], y[train]
    return Data(batch_size, seed, x=xt, y=yt, held=chunks, sample=xt[:256])


def _loader(loader: Any, batch_size: int, holdout: float, seed: int, steps: int) -> Data:
    cap = steps + max(1, math.ceil(steps / 4))
    batches, size = [], 0
    for batch in loader:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise InvalidInputError(
                f"each batch of the loader must be an (inputs, targets) pair, got "
                f"{type(batch).__name__}"
            )
        batches.append((batch[0], batch[1]))
        size += _nbytes(batch)
        if size > MAX_CACHED_BYTES:
            raise InvalidInputError(
                f"the loader's first {len(batches)} batches hold more than 2 GiB, which fix "
                "would cache to give every trial the same batches; pass fewer steps or a "
                "smaller dataset"
            )
        if len(batches) >= cap:
            break
    if not batches:
        raise InvalidInputError("the loader yielded no batch; pass data to train on")
    k = max(1, round(holdout * len(batches))) if len(batches) >= 5 and holdout > 0 else 0
    train, held = batches[: len(batches) - k], batches[len(batches) - k :]
    first = train[0][0]
    sample = first[:256] if isinstance(first, torch.Tensor) else first
    return Data(batch_size, seed, cached=train, held=held, sample=sample)


def default_loss(out: Any, target: Any) -> torch.Tensor:
    """Cross-entropy for class indices, MSE for values shaped like the output."""
    own = getattr(out, "loss", None)
    if isinstance(own, torch.Tensor) and own.numel() == 1:
        return own.reshape(())
    y = out if isinstance(out, torch.Tensor) else primary_tensor(out)
    if y is None:
        raise InvalidInputError(
            f"the model returned no tensor to compute a loss from ({type(out).__name__}); "
            "pass loss_fn=..."
        )
    if not isinstance(target, torch.Tensor):
        raise InvalidInputError(f"targets must be tensors, got {type(target).__name__}")
    if not target.is_floating_point():
        return F.cross_entropy(y.float(), target)
    if target.shape != y.shape:
        raise InvalidInputError(
            f"value targets must have the output's shape {tuple(y.shape)}, got "
            f"{tuple(target.shape)}; pass class indices (an integer tensor) for cross-entropy "
            "or loss_fn=..."
        )
    return F.mse_loss(y.float(), target.float())


def constant_loss(loss_fn: Callable | None, targets: torch.Tensor | None) -> float | None:
    """The loss of the best constant prediction (for the symptoms' scale), when the loss is
    cross-entropy or MSE; else None."""
    if targets is None or targets.numel() == 0:
        return None
    ce = loss_fn in (None, F.cross_entropy) or type(loss_fn) is nn.CrossEntropyLoss
    mse = loss_fn in (None, F.mse_loss) or type(loss_fn) is nn.MSELoss
    if not targets.is_floating_point() and ce and targets.dim() == 1 and targets.min() >= 0:
        p = torch.bincount(targets.long()).double()
        p = p[p > 0] / p.sum()
        return float(-(p * p.log()).sum())
    if targets.is_floating_point() and mse:
        value = float(targets.double().var(dim=0, unbiased=False).mean())
        return value if math.isfinite(value) else None
    return None
