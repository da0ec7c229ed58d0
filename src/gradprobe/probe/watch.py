"""``watch(model)``: record what flows through every layer while a model trains.

This module checks the options and builds the :class:`~gradprobe.probe.probe.Probe` (the
hooks and the steps) with its :class:`~gradprobe.Run`. What is recorded and how each stat is
defined: docs/PROBE.md.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InvalidInputError
from ..run import RunWriter
from ._distributed import rank_path
from ._distributed import resolve as resolve_distributed
from ._training import optimizer_meta
from .guard import Guard, check_options
from .probe import EARLY_STEPS, UPDATE_GAP, Probe
from .schedules import DEFAULT, Schedule, as_schedule

__all__ = ["EARLY_STEPS", "Probe", "watch"]


def _check_model(model: object, what: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InvalidInputError(
            f"{what} needs a torch.nn.Module, got {type(model).__name__}; "
            "pass the model itself (not its output or its state_dict)"
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise InvalidInputError(
            f"{what} cannot hook a TorchScript module (torch.jit.script/trace): watch the "
            "eager nn.Module, and script it after training (torch.compile models are fine)"
        )
    if next(model.parameters(), None) is None:
        raise InvalidInputError(
            f"{type(model).__name__} has no parameters: there are no gradients to watch; "
            "pass the trainable model"
        )
    if any(p.device.type == "meta" for p in model.parameters()):
        raise InvalidInputError(
            f"{type(model).__name__} is on the 'meta' device, which holds shapes but no "
            "values: there is nothing to watch; materialise it first, e.g. "
            "model.to_empty(device='cpu') and initialise it"
        )
    if next(model.children(), None) is None:
        raise InvalidInputError(
            f"{type(model).__name__} has no submodules, so there are no layers to compare; "
            "build it from nn.Modules (nn.Linear, nn.Conv2d, activations as modules ...)"
        )
    return model


def model_device(model: nn.Module) -> str | None:
    """Where the model's parameters live at ``watch()`` (its buffers' when it has none):
    ``"cpu"``, ``"cuda:0"``, or several joined by ", " in the order first met (a model split
    over devices); None for a model with neither."""
    seen: dict[str, None] = {}
    for tensors in (model.parameters(), model.buffers()):
        for t in tensors:
            seen.setdefault(str(t.device), None)
        if seen:
            return ", ".join(seen)
    return None


def _update_gap(updates: object) -> int:
    """``updates=`` as the least number of steps between two update-ratio measurements
    (0: never)."""
    if updates is True:
        return UPDATE_GAP
    if updates is False:
        return 0
    if isinstance(updates, int) and updates >= 1:
        return updates
    raise InvalidInputError(
        f"updates must be True, False or a number of steps >= 1, got {updates!r}; "
        "try updates=1 for every logged step"
    )


def watch(
    model: nn.Module,
    every: int | Schedule = DEFAULT,
    histograms: bool = False,
    path=None,
    *,
    bins: int = 64,
    hist_range: float | None = None,
    updates: bool | int = True,
    first_nonfinite: bool | str = "auto",
    optimizer: torch.optim.Optimizer | None = None,
    overwrite: bool = False,
    distributed: bool | str = False,
    all_ranks_write: bool = False,
    guard: bool | dict = False,
    scaler=None,
) -> Probe:
    """Watch ``model`` while it trains; ``probe.step()`` ends a step, ``probe.run`` holds it all.

    ``every``: log every n-th step, or a schedule ``step -> bool`` (``log_spaced()``); by
    default ``dense_then(first=20, every=10)``: each of the first 20 steps, then one in ten
    (``every=1`` logs every step). The loss, the learning rate and the global gradient norm
    are recorded on every step, logged or not.
    ``histograms``: also histograms of activations and ∂L/∂output (``bins`` bins on
    ``[-r, r]``, ``r`` = max finite ``|x|`` per layer and step, or ``hist_range``).
    ``path``: a run file (or a folder, for ``run.sqlite`` in it); None keeps it in memory.
    ``updates``: record ``‖Δw‖/‖w‖`` per parameter on logged steps at least ``n`` steps
    apart: True = 10 (its cost, a copy of the parameters and two passes over them, is then
    spread over 10 steps; docs/BENCHMARKS.md), an int ``n`` (1 = every logged step), False =
    never. ``first_nonfinite``: name the module where NaN/Inf first appeared (forward or
    backward). ``"auto"`` (the default): exactly on logged steps; on the others a free check
    (the loss, the gradient norm, the model's output, the weights) notices the first NaN/Inf;
    on the CPU a NaN/Inf in the model's output is traced to its module at that step (the
    module outputs are noted, read only then), else the next step is logged to name its
    module (``run.meta["nonfinite_seen"]`` holds both steps). True: the
    exact search on every step (+~10 %; forced by ``guard``), False: off.
    ``optimizer``: call ``probe.step()`` after each ``optimizer.step()`` for you (a wrapper
    that holds the torch optimizer as ``.optimizer``, accelerate's or Lightning's, is
    unwrapped).
    ``distributed``: True, or ``"auto"`` (on when a process group of more than one rank is
    initialised): every rank watches, each logged step is combined across ranks (two
    collectives; see probe/_distributed.py) and only rank 0 writes ``path`` (other ranks keep
    the combined run in memory), unless ``all_ranks_write`` (``NAME.rankK.sqlite``).
    ``guard``: True (or a dict of :func:`gradprobe.guard` options) with ``optimizer``: skip
    non-finite/exploding steps and restore the last good state (see probe/guard.py); a
    skipped step still ends the probe's step, and is listed in ``run.meta["guard_skipped"]``.
    ``scaler``: the ``torch.amp.GradScaler`` whose ``scaler.scale(loss).backward()`` the loop
    runs: the backward's gradients are its scale times the loss's; the probe divides them by
    the scale of their step's backward (recorded per step as ``grad_scale``), so the numbers
    and the diagnosis are those of the loss itself (``range_used`` stays that of the scaled
    float16 values, which are what overflow). With ``optimizer``, a GradScaler whose
    ``step()`` calls the optimizer's is found without it (on the first optimizer steps).

    >>> with gp.watch(model) as probe:                          # doctest: +SKIP
    ...     for x, y in loader:
    ...         loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad(); probe.step()
    """
    _check_model(model, "watch")
    # torch.compile's wrapper: hook the original modules (their names, and they still run)
    model = getattr(model, "_orig_mod", model)
    schedule = as_schedule(every)
    if not isinstance(histograms, bool):
        raise InvalidInputError(f"histograms must be True or False, got {histograms!r}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2 or bins % 2:
        raise InvalidInputError(f"bins must be an even integer >= 2, got {bins!r}; try 64")
    if hist_range is not None and not (
        isinstance(hist_range, (int, float))
        and not isinstance(hist_range, bool)
        and 0 < hist_range < math.inf
    ):
        raise InvalidInputError(
            f"hist_range must be a positive finite number (the histograms' half-range) or "
            f"None (each layer's own max |x|), got {hist_range!r}"
        )
    if not isinstance(first_nonfinite, bool) and first_nonfinite != "auto":
        raise InvalidInputError(
            f"first_nonfinite must be 'auto', True or False, got {first_nonfinite!r}"
        )
    update_gap = _update_gap(updates)
    inner = getattr(optimizer, "optimizer", None)  # a wrapper: accelerate's, Lightning's
    if isinstance(inner, torch.optim.Optimizer):
        optimizer = inner  # its step() runs the inner one's, whose hooks are torch's
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise InvalidInputError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if path is not None and not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
        raise InvalidInputError(f"path must be a file path or None, got {type(path).__name__}")
    meta = {
        "model": type(model).__name__,
        "every": getattr(schedule, "n", None) or repr(schedule),
        "histograms": histograms,
        "bins": bins,
        "hist_range": hist_range,
        "updates_every": update_gap,
        "first_nonfinite": first_nonfinite,
        "torch": torch.__version__,
    }
    device = model_device(model)
    if device is not None:
        meta["device"] = device
    if optimizer is not None:
        meta["optimizer"] = optimizer_meta(optimizer)
    reducer = resolve_distributed(distributed)
    if reducer is not None:
        meta.update(world_size=reducer.world, rank=reducer.rank)
        if path is not None and all_ranks_write:
            path = rank_path(path, reducer.rank)
        elif reducer.rank != 0:
            path = None
    if scaler is not None and not all(
        callable(getattr(scaler, a, None)) for a in ("get_scale", "is_enabled")
    ):
        raise InvalidInputError(
            f"scaler must be a torch.amp.GradScaler (with get_scale() and is_enabled()), got "
            f"{type(scaler).__name__}: pass the scaler whose scale(loss).backward() you call"
        )
    if scaler is not None:
        meta["grad_scaler"] = type(scaler).__name__
    if not isinstance(guard, (bool, dict)):
        raise InvalidInputError(f"guard must be True, False or a dict of options, got {guard!r}")
    guarded = guard is not False
    if guarded and optimizer is None:
        raise InvalidInputError("guard=True needs optimizer=: the guard hooks optimizer.step()")
    if guarded and first_nonfinite == "auto":
        first_nonfinite = True  # the guard's skipped steps need their origin on every step
        meta["first_nonfinite"] = True
    guard_options = check_options(guard if isinstance(guard, dict) else {}, ("on_step",))
    run = RunWriter.create(path, meta=meta, overwrite=overwrite)
    try:
        probe = Probe(
            model, schedule, histograms, run, bins=bins, hist_range=hist_range,
            updates=update_gap, first_nonfinite=first_nonfinite,
            optimizer=None if guarded else optimizer, distributed=reducer, scaler=scaler,
        )  # fmt: skip
    except BaseException:
        run.close()  # no lock file left behind a probe that never started
        raise
    if guarded:  # the guard's post-hook ends the probe's step, skipped or not
        user_skip = guard_options.pop("on_skip", None)

        def on_skip(skipped) -> None:
            probe._guard_skipped(skipped)
            if user_skip is not None:
                user_skip(skipped)

        try:
            probe.guard = Guard(
                model, optimizer, on_skip=on_skip, on_step=probe._auto_step,
                **guard_options,
            )  # fmt: skip
        except BaseException:
            probe._close(warn_empty=False)
            raise
    return probe
