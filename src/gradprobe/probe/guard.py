"""``guard(model, optimizer)``: skip non-finite or exploding steps, restore the last good state.

While the guard is active, ``optimizer.step()`` first checks the step's gradients on the
device — one fused norm per parameter (``torch._foreach_norm``) and their global norm —
and copies one number to the host (one synchronisation per step, the price of deciding
whether to step). A step is *bad* when the global gradient norm is NaN/Inf, or, after
``warmup`` good steps, more than ``explode_factor`` times the running typical norm (an
exponential moving average of log-norms of good steps, ``ema`` weight). A bad step is
skipped: the optimizer never sees it and the gradients are cleared. After ``max_bad``
consecutive bad steps the weights and optimizer state of the last snapshot are restored
and ``on_restore(info)`` is called, so training continues instead of dying.

Snapshots are taken every ``snapshot_every`` good steps (and before the first step) as
copies of ``model.state_dict()`` and ``optimizer.state_dict()`` on their own device:
memory cost one copy of the parameters and buffers plus one of the optimizer state
(≈ 3× the parameters for Adam). ``snapshot_every=0`` keeps none (skip only).

>>> with gp.guard(model, opt) as g:                                  # doctest: +SKIP
...     for x, y in loader:
...         loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
>>> g.skipped                                                         # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InvalidInputError


@dataclass(frozen=True)
class SkippedStep:
    """A step the guard skipped: why, the global norm, and the parameter at fault (the first
    with a non-finite gradient, or the one with the largest gradient norm)."""

    step: int
    reason: str  # "non_finite" | "exploding"
    norm: float
    origin: str | None


@dataclass(frozen=True)
class Restore:
    step: int
    snapshot_step: int
    bad_steps: int


class Guard:
    """Owns the patched ``optimizer.step``; use as a context manager or call ``close()``."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        explode_factor: float | None = 1e3,
        warmup: int = 10,
        ema: float = 0.1,
        max_bad: int = 3,
        snapshot_every: int = 100,
        on_restore: Callable[[Restore], None] | None = None,
        on_skip: Callable[[SkippedStep], None] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"guard needs an nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InvalidInputError(
                f"guard needs a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if explode_factor is not None and explode_factor <= 1:
            raise InvalidInputError(f"explode_factor must be > 1 or None, got {explode_factor}")
        if max_bad < 1 or snapshot_every < 0 or warmup < 0 or not 0 < ema <= 1:
            raise InvalidInputError(
                "guard needs max_bad >= 1, snapshot_every >= 0, warmup >= 0 and 0 < ema <= 1"
            )
        self.model, self.optimizer = model, optimizer
        self.explode_factor, self.warmup, self.ema = explode_factor, warmup, ema
        self.max_bad, self.snapshot_every = max_bad, snapshot_every
        self.on_restore, self.on_skip = on_restore, on_skip
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.step_count = 0
        self.good_steps = 0
        self.consecutive_bad = 0
        self.typical_log_norm: float | None = None
        self.skipped: list[SkippedStep] = []
        self.restores: list[Restore] = []
        self._snapshot: tuple[int, dict, dict] | None = None
        self._original_step = optimizer.step
        self._had_instance_step = "step" in optimizer.__dict__
        optimizer.step = self._guarded_step  # type: ignore[method-assign]
        self._closed = False

    # -- the guarded step ----------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]

    def _guarded_step(self, *args, **kwargs):
        step = self.step_count
        self.step_count += 1
        if self._snapshot is None and self.snapshot_every:
            self._take_snapshot(step)
        params = self._params()
        if not params:
            return self._original_step(*args, **kwargs)
        norms = torch._foreach_norm([p.grad.detach().float() for p in params])
        total = float(torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms])))
        reason = self._judge(total)
        if reason is None:
            self.consecutive_bad = 0
            self.good_steps += 1
            log_norm = math.log(max(total, 1e-30))
            t = self.typical_log_norm
            self.typical_log_norm = (
                log_norm if t is None else (1 - self.ema) * t + self.ema * log_norm
            )
            result = self._original_step(*args, **kwargs)
            if self.snapshot_every and self.good_steps % self.snapshot_every == 0:
                self._take_snapshot(step + 1)
            return result
        host = torch.stack([n.to(norms[0].device) for n in norms]).cpu()
        bad = (~torch.isfinite(host)).nonzero()
        at = int(bad[0]) if reason == "non_finite" and len(bad) else int(host.argmax())
        origin = self.names.get(id(params[at]))
        skipped = SkippedStep(step, reason, total, origin)
        self.skipped.append(skipped)
        for p in params:
            p.grad = None
        if self.on_skip is not None:
            self.on_skip(skipped)
        self.consecutive_bad += 1
        if self.consecutive_bad >= self.max_bad and self._snapshot is not None:
            self._restore(step)
        return None

    def _judge(self, total: float) -> str | None:
        if not math.isfinite(total):
            return "non_finite"
        if (
            self.explode_factor is not None
            and self.typical_log_norm is not None
            and self.good_steps >= self.warmup
            and total > self.explode_factor * math.exp(self.typical_log_norm)
        ):
            return "exploding"
        return None

    def _take_snapshot(self, step: int) -> None:
        model_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._snapshot = (step, model_state, copy.deepcopy(self.optimizer.state_dict()))

    def _restore(self, step: int) -> None:
        snap_step, model_state, opt_state = self._snapshot
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(copy.deepcopy(opt_state))
        info = Restore(step, snap_step, self.consecutive_bad)
        self.restores.append(info)
        self.consecutive_bad = 0
        if self.on_restore is not None:
            self.on_restore(info)

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Give the optimizer its own ``step`` back (idempotent)."""
        if self._closed:
            return
        if self._had_instance_step:
            self.optimizer.step = self._original_step  # type: ignore[method-assign]
        else:
            del self.optimizer.step
        self._closed = True

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Guard({self.step_count} steps, {len(self.skipped)} skipped, "
            f"{len(self.restores)} restores)"
        )


def guard(model: nn.Module, optimizer: torch.optim.Optimizer, **options) -> Guard:
    """Guard ``optimizer.step()`` against non-finite and exploding steps (see module doc)."""
    return Guard(model, optimizer, **options)
