"""One trial: build a fresh copy, apply a recipe, train it under ``gp.watch``, score it.

Every trial starts from the same state: torch, numpy and ``random`` seeded with ``seed``
inside a fork of the caller's random state, one torch thread (so a trial's numbers do not
depend on the process it runs in), the model deep-copied (or built by the factory) under
that seed, and the same batches in the same order. The loss goes to the probe on every
step (``probe.step(loss=...)``), so the trial's run holds its loss curve and the diagnosis
judges it as it judges any run; the loss and the global gradient norm are also read once per
step (one host sync); a trial stops at the first non-finite loss.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..diagnose import diagnose
from ..errors import GradprobeError, InvalidInputError
from ..probe import watch
from .data import Data, call, default_loss, to_device
from .recipe import Env, OptimizerSpec, Recipe
from .symptoms import loss_symptoms


@dataclass(frozen=True)
class Setup:
    """What every trial shares (sent once to each worker process)."""

    source: Any  # an nn.Module (deep-copied per trial) or a factory () -> nn.Module
    data: Data
    loss_fn: Callable | None
    optimizer: OptimizerSpec
    steps: int
    seed: int
    metric: Callable | None = None
    every: int = 15
    folder: str | None = None  # trial runs are written here (None: in memory)
    reference: float | None = None  # the constant prediction's loss (symptoms' scale)


@dataclass
class Outcome:
    """What a trial measured; plain data, so it comes back from a worker process."""

    index: int
    seed: int = 0
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    score_loss: float = math.nan  # the held-out loss (the training data's when none is held)
    metric: float | None = None
    accuracy: float | None = None  # held-out accuracy when the targets are class indices
    findings: list = field(default_factory=list)
    symptoms: list = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    run_path: str | None = None


@contextlib.contextmanager
def own_random_state(seed: int, threads: int = 1) -> Iterator[None]:
    """Seed torch, numpy and ``random``; one torch thread; the caller's state restored after."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    np_state, py_state, before = np.random.get_state(), random.getstate(), torch.get_num_threads()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        random.seed(seed)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
            np.random.set_state(np_state)
            random.setstate(py_state)


def build(source: Any) -> nn.Module:
    """A fresh model: a deep copy of the one given, or what the factory returns."""
    if isinstance(source, nn.Module):
        return copy.deepcopy(source)
    try:
        model = source()
    except GradprobeError:
        raise
    except Exception as err:
        raise InvalidInputError(
            f"the model factory raised {type(err).__name__}: {err}; pass a callable that "
            "builds the model without arguments, or the model itself"
        ) from err
    if not isinstance(model, nn.Module):
        raise InvalidInputError(
            f"the model factory returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _total_norm(params: list, max_norm: float | None) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if max_norm is not None:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _loss(loss_fn: Callable | None, out: Any, y: Any) -> torch.Tensor:
    loss = default_loss(out, y) if loss_fn is None else loss_fn(out, y)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InvalidInputError("loss_fn must return a scalar tensor; reduce it with .mean()")
    return loss.reshape(())


def _score(setup: Setup, model: nn.Module, device) -> tuple[float, float | None]:
    """(mean loss, accuracy in % or None) over the scoring set, in eval mode."""
    total, count, correct, classes = 0.0, 0, 0, True
    for x, y in setup.data.scoring():
        x, y = to_device(x, device), to_device(y, device)
        out = call(model, x)
        n = len(y) if isinstance(y, torch.Tensor) and y.dim() else 1
        total += float(_loss(setup.loss_fn, out, y)) * n
        count += n
        logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
        ok = isinstance(y, torch.Tensor) and not y.is_floating_point() and y.dim() == 1
        if ok and isinstance(logits, torch.Tensor) and logits.dim() == 2:
            correct += int((logits.argmax(1) == y).sum())
        else:
            classes = False
    loss = total / max(count, 1)
    return loss, (100.0 * correct / count if classes and count else None)


def _train(setup: Setup, recipe: Recipe, model: nn.Module, out: Outcome, path, seed) -> Any:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidInputError("the model has no trainable parameter: there is nothing to fix")
    device = params[0].device
    opt = recipe.optimizer(setup.optimizer).build(model.parameters())
    loop = recipe.loop()
    max_norm, warmup = loop.get("max_norm"), loop.get("warmup")
    sched = None
    if warmup:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
    model.train()
    # first_nonfinite off: a trial stops at its first non-finite loss, and the logged steps
    # still name where NaN/Inf appeared (the every-step search would cost a third more)
    probe = watch(model, every=setup.every, path=path, overwrite=True, first_nonfinite=False)
    with probe:
        for x, y in setup.data.batches(setup.steps, seed):
            x, y = to_device(x, device), to_device(y, device)
            loss = _loss(setup.loss_fn, call(model, x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = _total_norm(params, max_norm)
            opt.step()
            if sched is not None:
                sched.step()
            probe.step(loss=loss.detach())
            value, gnorm = torch.stack([loss.detach().float(), norm.detach().float()]).tolist()
            out.losses.append(value)
            out.grad_norms.append(gnorm)
            if not math.isfinite(value):
                break  # diverged: the remaining steps would only repeat NaN
    return probe.run, device


def run_trial(
    setup: Setup, recipe: Recipe, index: int, strict: bool = False, seed: int | None = None
) -> Outcome:
    """Train one trial; an error is recorded in the outcome (raised when ``strict``: the
    baseline, whose failure means the setup itself is wrong). ``seed``: another seed than
    the setup's (a confirmation: another batch order and init draw)."""
    seed = setup.seed if seed is None else seed
    out = Outcome(index, seed=seed)
    start = time.perf_counter()
    name = f"trial-{index}.sqlite" if seed == setup.seed else f"trial-{index}-seed{seed}.sqlite"
    path = None if setup.folder is None else str(Path(setup.folder) / name)
    with own_random_state(seed):
        try:
            model = recipe.apply(build(setup.source), Env(setup.data.sample, seed))
            run, device = _train(setup, recipe, model, out, path, seed)
            model.eval()
            with torch.no_grad():
                out.score_loss, out.accuracy = _score(setup, model, device)
                if setup.metric is not None:
                    out.metric = float(setup.metric(model))
            out.findings = list(diagnose(run))
            out.run_path = path
        except Exception as err:
            if strict:
                if isinstance(err, GradprobeError):
                    raise
                raise InvalidInputError(
                    f"training the model as given failed ({type(err).__name__}: {err}); check "
                    "the data, loss_fn, optimizer and metric with one step of your own loop"
                ) from err
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            out.error = f"{type(err).__name__}: {first}"
    if out.error is None:  # what the diagnosis said of the loss curve is not said twice
        out.symptoms = loss_symptoms(out.losses, setup.reference, judged=out.findings)
    out.seconds = time.perf_counter() - start
    return out
