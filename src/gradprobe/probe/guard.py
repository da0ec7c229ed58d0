"""``guard(model, optimizer)``: skip non-finite or exploding steps, restore the last good state.

While the guard is active, ``optimizer.step()`` first checks the step's gradients (in the
optimizer's step pre-hook, so LR schedulers and other wrappers of ``step`` are untouched) on
the device — one fused norm per parameter (``torch._foreach_norm``) and their global norm —
and copies one number to the host (one synchronisation per step, the price of deciding
whether to step). A step is *bad* when the global gradient norm is NaN/Inf, or, after
``warmup`` good steps, more than ``explode_factor`` times the running typical norm (an
exponential moving average of log-norms of good steps, ``ema`` weight). A bad step is
skipped: the gradients are cleared (set to None) before the optimizer runs, so it updates
nothing (the documented contract of ``torch.optim``: a parameter whose ``.grad`` is None is
skipped, its state untouched). For any other optimizer the parameters and the optimizer
state are also copied before and put back after the step (it may update without
gradients). A closure (``opt.step(closure)``, which computes the gradients) is wrapped: its
gradients are judged once it has run, and a bad step is put back the same way. Either way a
skipped step leaves weights and optimizer state exactly as a loop that skipped it by hand.
The guard only adds hooks, so guards (and LR schedulers, which wrap ``optimizer.step``) can
be created and closed in any order. After ``max_bad`` consecutive bad steps the weights
and optimizer state of the last snapshot are restored and ``on_restore(info)`` is called,
so training continues instead of dying.

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
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InvalidInputError

# torch.optim optimizers that update only parameters with a gradient (``.grad`` not None)
_SKIP_NONE_GRADS = tuple(
    getattr(torch.optim, n)
    for n in (
        "SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "ASGD", "NAdam", "RAdam",
        "RMSprop", "Rprop", "SparseAdam", "Adafactor",
    )
    if hasattr(torch.optim, n)
)  # fmt: skip


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
    """Owns two hooks on the optimizer's step (pre and post); use as a context manager or
    call ``close()``. ``on_step()``, if given, is called after every ``optimizer.step()``,
    skipped or not, once the guard is done with it."""

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
        on_step: Callable[[], None] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"guard needs an nn.Module, got {type(model).__name__}")
        inner = getattr(optimizer, "optimizer", None)  # accelerate's or Lightning's wrapper
        if isinstance(inner, torch.optim.Optimizer):
            optimizer = inner
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InvalidInputError(
                f"guard needs a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        _check_options(explode_factor, warmup, ema, max_bad, snapshot_every)
        for name, fn in (("on_restore", on_restore), ("on_skip", on_skip), ("on_step", on_step)):
            if fn is not None and not callable(fn):
                raise InvalidInputError(f"{name} must be a function or None, got {fn!r}")
        self.model, self.optimizer = model, optimizer
        self.explode_factor, self.warmup, self.ema = explode_factor, warmup, ema
        self.max_bad, self.snapshot_every = max_bad, snapshot_every
        self.on_restore, self.on_skip, self.on_step = on_restore, on_skip, on_step
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.step_count = 0
        self.good_steps = 0
        self.consecutive_bad = 0
        self.typical_log_norm: float | None = None
        self.skipped: list[SkippedStep] = []
        self.restores: list[Restore] = []
        self._snapshot: tuple[int, dict, dict] | None = None
        self._verdict: str | None = None  # this step: "good", "skip" (None: no step running)
        self._kept: tuple[list[torch.Tensor], dict] | None = None  # put back after a skip
        self._handles = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]
        self._closed = False

    # -- the guarded step ----------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]

    def _before_step(self, optimizer, args, kwargs):
        """Judge the step's gradients; with a closure (which computes them), judge once the
        closure has run: the closure is wrapped (a step pre-hook may replace the arguments)."""
        step = self.step_count
        self.step_count += 1
        self._verdict, self._kept = "good", None
        if self._snapshot is None and self.snapshot_every:
            self._take_snapshot(step)
        # args[0] is the optimizer itself (torch's step wrapper passes it on)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._judge_step(step, optimizer, keep=type(optimizer) not in _SKIP_NONE_GRADS)
            return None
        judged = []

        def guarded_closure(*a, **k):
            loss = closure(*a, **k)
            if not judged:  # the first evaluation decides (LBFGS evaluates several times)
                judged.append(True)
                self._judge_step(step, optimizer, keep=True)
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": guarded_closure}
        return (args[0], guarded_closure, *args[2:]), kwargs

    def _judge_step(self, step: int, optimizer, keep: bool) -> None:
        params = self._params()
        if not params:
            self._verdict = "empty"
            return
        norms = torch._foreach_norm([_values(p.grad) for p in params])
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
            return
        self._verdict = "skip"
        host = torch.stack([n.to(norms[0].device) for n in norms]).cpu()
        bad = (~torch.isfinite(host)).nonzero()
        at = int(bad[0]) if reason == "non_finite" and len(bad) else int(host.argmax())
        origin = self.names.get(id(params[at]))
        skipped = SkippedStep(step, reason, total, origin)
        self.skipped.append(skipped)
        for p in params:
            p.grad = None  # torch.optim skips a parameter without a gradient
        if self.on_skip is not None:
            self.on_skip(skipped)
        self.consecutive_bad += 1
        if self.consecutive_bad >= self.max_bad and self._snapshot is not None:
            self._restore(step)
        if keep:  # another optimizer may update without gradients; so may LBFGS's closure
            self._kept = self._keep()

    def _after_step(self, optimizer, args, kwargs) -> None:
        verdict, self._verdict = self._verdict, None
        if verdict == "skip" and self._kept is not None:
            self._put_back()
        elif (
            verdict == "good" and self.snapshot_every and not self.good_steps % self.snapshot_every
        ):
            self._take_snapshot(self.step_count)
        if self.on_step is not None:
            self.on_step()

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

    def _all_params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _keep(self) -> tuple[list[torch.Tensor], dict]:
        """Copies of the parameters and the optimizer state, put back after a skipped step."""
        with torch.no_grad():
            params = [p.detach().clone() for p in self._all_params()]
        return params, copy.deepcopy(self.optimizer.state_dict())

    def _put_back(self) -> None:
        params, state = self._kept
        self._kept = None
        with torch.no_grad():
            for p, saved in zip(self._all_params(), params, strict=True):
                p.copy_(saved)
        self.optimizer.load_state_dict(state)
        for p in self._all_params():
            p.grad = None

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the guard's hooks from the optimizer (idempotent; guards close in any
        order)."""
        if self._closed:
            return
        for h in self._handles:
            h.remove()
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


def _values(g: torch.Tensor) -> torch.Tensor:
    """A gradient's values for its norm: float32, a sparse one's stored values (its norm is
    theirs), a complex one's real and imaginary parts."""
    g = g.detach()
    if g.layout != torch.strided:
        g = g.coalesce().values() if g.is_sparse else g.to_dense()
    if g.is_complex():
        g = torch.view_as_real(g)
    return g.float()


def _check_options(explode_factor, warmup, ema, max_bad, snapshot_every) -> None:
    def whole(v, least: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= least

    if explode_factor is not None and not (
        isinstance(explode_factor, (int, float))
        and not isinstance(explode_factor, bool)
        and explode_factor > 1
    ):
        raise InvalidInputError(
            f"explode_factor must be a number > 1 or None (never judge a step as exploding), "
            f"got {explode_factor!r}; try 1e3"
        )
    if not (whole(max_bad, 1) and whole(snapshot_every, 0) and whole(warmup, 0)):
        raise InvalidInputError(
            f"guard needs whole numbers max_bad >= 1, snapshot_every >= 0 and warmup >= 0, "
            f"got max_bad={max_bad!r}, snapshot_every={snapshot_every!r}, warmup={warmup!r}"
        )
    if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 < ema <= 1:
        raise InvalidInputError(f"guard needs 0 < ema <= 1, got ema={ema!r}; try 0.1")


def _options() -> list[str]:
    return [n for n in inspect.signature(Guard).parameters if n not in ("model", "optimizer")]


def check_options(options: dict, reserved: tuple[str, ...] = ()) -> dict:
    """``options`` of :class:`Guard`, checked before anything is built: unknown names and
    bad values raise an :class:`InvalidInputError` naming the valid ones."""
    valid = [n for n in _options() if n not in reserved]
    unknown = sorted(set(options) - set(valid), key=str)
    if unknown:
        raise InvalidInputError(
            f"unknown guard option(s) {', '.join(map(repr, unknown))}; the options are "
            f"{', '.join(valid)}"
        )
    defaults = {n: p.default for n, p in inspect.signature(Guard).parameters.items()}
    merged = {**defaults, **options}
    _check_options(*(merged[n] for n in _CHECKED))
    for name in ("on_restore", "on_skip", "on_step"):
        fn = options.get(name)
        if fn is not None and not callable(fn):
            raise InvalidInputError(f"{name} must be a function or None, got {fn!r}")
    return dict(options)


_CHECKED = ("explode_factor", "warmup", "ema", "max_bad", "snapshot_every")


def guard(model: nn.Module, optimizer: torch.optim.Optimizer, **options) -> Guard:
    """Guard ``optimizer.step()`` against non-finite and exploding steps (see module doc)."""
    return Guard(model, optimizer, **check_options(options))
