"""``gp.fix``: train the model as given, then the remedies its findings call for, each on a
copy, and rank them by what they achieve.

1. The baseline: the model as given (a deep copy, or a fresh build from the factory),
   trained for ``steps`` under ``gp.watch``, diagnosed, its loss curve read for symptoms.
2. Candidates: every remedy of the catalog (:data:`~gradprobe.fix.catalog.REMEDIES`) whose
   ``fits`` answers one of the baseline's findings or symptoms, each variant one trial.
3. Combinations, only when no single trial is healthy and better than the baseline: pairs
   of the three best single remedies of different kinds.
4. Confirmation: the baseline and the leading trials are trained again with ``confirm``
   other seeds (another batch order, another init draw for a re-init or a factory), until
   the two best are confirmed; a trial is judged by its worst seed, so a remedy that won by
   the luck of one batch order does not win.
5. Ranked by the metric (higher is better) or else the held-out loss; a tie (within 1 %)
   goes to the healthier trial, then to the one with fewer changes.
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import InvalidInputError
from ..executors import check as check_executor
from .catalog import REMEDIES
from .data import constant_loss, prepare
from .pool import run_jobs, start_pool
from .recipe import Change, Env, OptimizerSpec, Recipe, adam
from .result import FixResult, Repeat, Trial, better, rank
from .situation import SERIOUS, Situation
from .trial import Outcome, Setup, build, own_random_state, run_trial

COMBINE_TOP = 3  # combinations are pairs of the best this many single remedies
CONFIRM_TOP = 2  # confirmation goes on until this many leading trials are confirmed


class _Everything(Situation):
    """A situation in which every finding is present: ``candidates="all"`` or by name."""

    @property
    def kinds(self) -> set[str]:
        return {k for _, r in REMEDIES.items() for k in r.answers}

    def at_init(self, kinds) -> tuple[str, ...]:
        return tuple(sorted(kinds))

    def during(self, kinds) -> tuple[str, ...]:
        return tuple(sorted(kinds))


def _check_args(model_or_factory, steps, workers, budget_s, metric, loss_fn, optimizer, candidates):
    if not (isinstance(model_or_factory, nn.Module) or callable(model_or_factory)):
        raise InvalidInputError(
            f"fix needs a torch.nn.Module or a factory that builds one, got "
            f"{type(model_or_factory).__name__}"
        )
    for name, value in (("steps", steps), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    if budget_s is not None and (
        isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or budget_s < 0
    ):
        raise InvalidInputError(
            f"budget_s must be a number of seconds >= 0 or None, got {budget_s!r}"
        )
    for name, value in (("metric", metric), ("loss_fn", loss_fn), ("optimizer", optimizer)):
        if value is not None and not callable(value):
            raise InvalidInputError(f"{name} must be callable or None, got {type(value).__name__}")
    if candidates not in ("auto", "all"):
        if isinstance(candidates, str) or not all(isinstance(c, str) for c in candidates):
            raise InvalidInputError(
                f"candidates must be 'auto', 'all' or a list of remedy names "
                f"({', '.join(REMEDIES.names())}), got {candidates!r}"
            )
        for name in candidates:
            REMEDIES.get(name)  # an unknown name lists the known ones


def update_ratio(run) -> float | None:
    """The median update ratio ‖Δw‖/‖w‖ of the weights over a run's logged steps."""
    try:
        names, _, values = run.matrix("update", "ratio", role="param")
    except Exception:  # a run without update ratios
        return None
    rows = [i for i, n in enumerate(names) if n.endswith("weight")]
    finite = values[rows][np.isfinite(values[rows])] if rows else np.empty(0)
    return float(np.median(finite)) if finite.size else None


def _situation(cls, out: Outcome, model: nn.Module, setup: Setup, ratio, gates=()) -> Situation:
    return cls(
        update_ratio=ratio,
        gates=tuple(gates),
        findings=out.findings,
        symptoms=out.symptoms,
        model=model,
        optimizer=setup.optimizer,
        grad_norms=out.grad_norms,
        losses=out.losses,
        steps=setup.steps,
        sample=setup.data.sample,
        seed=setup.seed,
    )


def choose(candidates, s: Situation) -> list[Change]:
    """The changes worth a trial: each remedy's variants that fit (all of them, for the
    remedies named, when ``candidates`` is "all" or a list)."""
    names = REMEDIES.names() if candidates in ("auto", "all") else list(candidates)
    out: list[Change] = []
    for name in names:
        for change in REMEDIES.get(name).fits(s):
            if change not in out:
                out.append(change)
    return out


def _repeat(out: Outcome) -> Repeat:
    serious = [f.kind for f in out.findings if f.severity in SERIOUS]
    felt = [x.kind for x in out.symptoms if x.severity in SERIOUS]
    problems = tuple(dict.fromkeys([*serious, *felt]))
    return Repeat(
        out.seed,
        out.score_loss,
        out.metric,
        out.error is None and not problems,
        problems,
        out.losses,
        out.error,
    )


def _to_confirm(trials: dict[int, Trial], higher: bool) -> list[int]:
    """The baseline and the leaders not confirmed yet (see the module doc, step 4)."""
    ranked = rank(list(trials.values()), higher)
    index = {id(t): i for i, t in trials.items()}
    leaders = [t for t in ranked if math.isfinite(t.outcome(higher))][:CONFIRM_TOP]
    wanted = [trials[0], *leaders]
    return list(dict.fromkeys(index[id(t)] for t in wanted if not t.repeats))


def _trial(out: Outcome, recipe: Recipe, setup: Setup) -> Trial:
    env = Env(setup.data.sample, setup.seed)
    serious = [f for f in out.findings if f.severity in SERIOUS]
    return Trial(
        name=recipe.name,
        code=recipe.code(setup.optimizer, env),
        losses=out.losses,
        final_loss=out.score_loss,
        metric=out.metric,
        findings=out.findings,
        healthy=out.error is None
        and not serious
        and not any(x.severity in SERIOUS for x in out.symptoms),
        seconds=out.seconds,
        recipe=recipe,
        symptoms=out.symptoms,
        accuracy=out.accuracy,
        grad_norms=out.grad_norms,
        error=out.error,
        optimizer_spec=recipe.optimizer(setup.optimizer),
        batch=setup.data.sample,
        seed=setup.seed,
        run_path=out.run_path,
    )


def _combinations(singles: list[Trial], baseline: Trial, higher: bool) -> list[Recipe]:
    """Pairs of the best single remedies of different kinds, when no single one suffices."""
    if any(t.healthy and better(t, baseline, higher) for t in singles):
        return []
    usable = [t for t in singles if not t.error and math.isfinite(t.outcome(higher))]
    usable.sort(key=lambda t: t.outcome(higher))
    top: list[Trial] = []
    for t in usable:
        if not (t.recipe.families & set().union(*(u.recipe.families for u in top))):
            top.append(t)
        if len(top) == COMBINE_TOP:
            break
    pairs = []
    for i, a in enumerate(top):
        for b in top[i + 1 :]:
            pairs.append(Recipe(a.recipe.changes + b.recipe.changes))
    return pairs


def _bar(enabled: bool, total: int):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..report.terminal import console

    return Progress(
        TextColumn("[bold]gp.fix[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console(),
        transient=True,
    )


def fix(
    model_or_factory: nn.Module | Callable[[], nn.Module],
    data: Any,
    *,
    loss_fn: Callable | None = None,
    optimizer: Callable | None = None,
    steps: int = 300,
    candidates: str | list[str] = "auto",
    metric: Callable[[nn.Module], float] | None = None,
    seed: int = 0,
    workers: int = 1,
    budget_s: float | None = None,
    confirm: int = 1,
    batch_size: int = 64,
    holdout: float = 0.2,
    progress: bool = True,
    path: str | Path | None = None,
    executor: Any = "local",
    address: str | None = None,
) -> FixResult:
    """Train the model as given and the remedies its findings call for, each on a copy with
    the same data order, seed and steps; return them ranked by outcome (see module doc).

    ``data``: ``(inputs, targets)`` tensors (``holdout`` of them held out for the score,
    mini-batches of ``batch_size``) or a re-iterable loader of ``(inputs, targets)``.
    ``loss_fn(output, target)``: default cross-entropy for class indices, MSE for values.
    ``optimizer``: ``params -> torch.optim.Optimizer`` (default Adam, lr 1e-3). ``metric``:
    ``model -> float``, higher is better, called in eval mode after training; else the
    held-out loss ranks. ``candidates``: "auto" (from the findings), "all", or remedy names.
    ``workers``: trials in that many spawned processes (same numbers as 1). ``budget_s``:
    start no trial after that many seconds (the result lists what was not tried).
    ``confirm``: other seeds the baseline and the leading trials are trained with (0: none).
    ``path``: keep each trial's watched run there (else a temporary folder).
    ``executor``: "local" (``workers`` processes), "ray" (a Ray task per trial; ``address``:
    the cluster to join, None for Ray on this machine) or a :mod:`gradprobe.executors`
    executor; the same numbers on any. The model given is never modified.
    """
    start = time.perf_counter()
    _check_args(model_or_factory, steps, workers, budget_s, metric, loss_fn, optimizer, candidates)
    if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 0:
        raise InvalidInputError(f"confirm must be an integer >= 0, got {confirm!r}")
    if executor != "local" and workers != 1:
        raise InvalidInputError("pass workers= or executor=, not both (the executor decides)")
    check_executor(executor, address)  # before anything trains
    prepared = prepare(data, batch_size, holdout, seed, steps)
    with own_random_state(seed):
        try:
            model = build(model_or_factory)  # an untrained copy for the remedies to read
        except (TypeError, RuntimeError, copy.Error) as err:
            raise InvalidInputError(
                f"the model cannot be deep-copied ({type(err).__name__}: {err}); pass a "
                "factory that builds it instead: gp.fix(lambda: make_model(), data)"
            ) from None
        spec = OptimizerSpec.from_factory(optimizer or adam, model)
    folder = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="gradprobe-fix-"))
    folder.mkdir(parents=True, exist_ok=True)
    setup = Setup(
        model_or_factory,
        prepared,
        loss_fn,
        spec,
        steps,
        seed,
        metric,
        every=max(1, steps // 20),
        folder=str(folder),
        reference=constant_loss(loss_fn, prepared.targets()),
    )
    pool = start_pool(setup, workers, executor, address)

    def keep_going() -> bool:
        return budget_s is None or time.perf_counter() - start < budget_s

    higher = metric is not None
    trials: dict[int, Trial] = {}
    recipes: dict[int, Recipe] = {}
    try:
        with _bar(progress, 1) as bar:
            task = bar.add_task("baseline", total=1) if bar is not None else None
            base = _trial(run_trial(setup, Recipe(), 0, strict=True), Recipe(), setup)
            trials[0] = base
            cls = Situation if candidates == "auto" else _Everything
            ratio = update_ratio(base.run) if base.run_path else None
            gates = (base.run.meta.get("gates") or ()) if base.run_path else ()
            situation = _situation(cls, _outcome_of(base), model, setup, ratio, gates)
            singles = [Recipe((c,)) for c in choose(candidates, situation)]
            recipes.update(enumerate(singles, 1))
            recipes[0] = Recipe()

            def done(out: Outcome) -> None:
                if out.seed == seed:
                    trials[out.index] = _trial(out, recipes[out.index], setup)
                else:
                    trials[out.index].add_repeat(_repeat(out))
                if bar is not None:
                    bar.update(task, advance=1, description=recipes[out.index].name[:40])

            if bar is not None:
                bar.update(task, total=1 + len(singles), completed=1, description="remedies")
            jobs: list[tuple[int, Recipe, int | None]] = [
                (i, r, None) for i, r in enumerate(singles, 1)
            ]
            skipped = run_jobs(setup, jobs, workers, keep_going, done, pool)
            if not skipped:
                tried = [trials[i] for i in range(1, len(singles) + 1)]
                combos = _combinations(tried, base, higher)
                first = len(recipes)
                recipes.update(enumerate(combos, first))
                if bar is not None and combos:
                    bar.update(task, total=1 + len(singles) + len(combos))
                jobs = [(i, r, None) for i, r in enumerate(combos, first)]
                skipped += run_jobs(setup, jobs, workers, keep_going, done, pool)
            while confirm and not skipped:
                wanted = _to_confirm(trials, higher)
                if not wanted:
                    break
                jobs = [(i, recipes[i], seed + k) for i in wanted for k in range(1, confirm + 1)]
                if bar is not None:
                    bar.update(task, total=bar.tasks[0].total + len(jobs))
                skipped += run_jobs(setup, jobs, workers, keep_going, done, pool)
    finally:
        if pool is not None:
            pool.close(cancel=True)
    result = FixResult(
        [trials[i] for i in sorted(trials)],
        base,
        higher=higher,
        not_tried=[recipes[i].name + ("" if k is None else f" (seed {k})") for i, _, k in skipped],
        notes=situation.notes,
        seconds=time.perf_counter() - start,
        budget_s=budget_s,
        scored_on="held-out" if prepared.held else "training",
    )
    if path is None:  # removed once no trial of the result is left to read its run
        holder = _Folder(folder)
        for t in result.trials:
            t.keep = holder
    return result


class _Folder:
    """A temporary folder, removed when the last object holding it is gone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        weakref.finalize(self, shutil.rmtree, str(path), True)


def _outcome_of(t: Trial) -> Outcome:
    return Outcome(
        0,
        losses=t.losses,
        grad_norms=t.grad_norms,
        findings=t.findings,
        symptoms=t.symptoms,
    )
