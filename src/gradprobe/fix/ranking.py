"""Remedies applied and re-checked: re-initialise a copy of the model with each candidate
scheme, check it again, and rank the schemes by health, judged as the diagnosis judges.

Health score (lower is better, 0 is perfect), from the depth rule's own profiles
(``gradprobe.diagnose.context``):

    score = depth + 2 · max saturated fraction + 2 · max dead fraction + 100 · [NaN/Inf]
            + 2 · [a warning] + 5 · [an error]

where ``depth`` sums, over the per-example backward norms and the relative gradients
‖∂L/∂θ‖/‖θ‖ across the blocks, |log10(first / last)|, less the drift a residual, normalised
stack may have (``Thresholds.block_rate`` per block). Each scheme is scored on ``seeds``
draws (one draw's score carries finite-width noise) and applied with
``nonlinearity="auto"``.

The order: healthy candidates (no finding of severity warning or error on any draw)
first — the model as given (a healthy model keeps its own init: a scheme that scores better
does not displace it), then the scheme or edit the diagnosis of the model proposes (any
healthy scheme is within the diagnosis's margins; the finding and the ranking then agree),
then the other healthy ones by score —, then the rest by score. Where no init is healthy,
or the diagnosis proposes an edit, the architecture edits that fit the model are tried too
(an activation swap, BatchNorm, Pre-LN, the LSTM forget-gate bias), each re-checked the same
way. Warnings a scheme raises on a model (e.g. the fans of Hugging Face's transposed Conv1D)
are kept in the candidate's ``notes``. The user's model is never modified: every
candidate runs on a deep copy.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..diagnose import Context, Finding, Thresholds, diagnose
from ..errors import GradprobeError, GradprobeWarning
from ..init import apply
from ..probe import record_step
from .edit import insert_norm, set_forget_bias, set_norm_first, swap_activations

CANDIDATES = (
    "as given",
    "kaiming_normal",
    "xavier_normal",
    "lecun_normal",
    "orthogonal",
    "lsuv",
    "standard",
    "default",
)
OWN = "own init"  # a Hugging Face model's _init_weights, applied to every module


@dataclass
class Candidate:
    scheme: str
    score: float  # mean over seeds
    spread: float  # max - min over seeds
    ratio: float | None  # backward norm, first block / last (first seed)
    saturated: float
    dead: float
    non_finite: bool
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    healthy: bool = False  # no warning or error on any seed
    edit: str | None = None  # an architecture edit's code (None for an init scheme)
    notes: list[str] = field(default_factory=list)  # warnings applying it raised

    @property
    def code(self) -> str:
        if self.edit is not None:
            return self.edit
        if self.scheme == "as given":
            return "# keep the model's current weights"
        if self.scheme == OWN:
            return "model.apply(model._init_weights)"
        if self.scheme == "lsuv":
            return "gp.init.apply(model, 'lsuv', data=batch)"
        return f"gp.init.apply(model, {self.scheme!r})"

    def row(self) -> dict:
        """The candidate as plain data (JSON, the terminal and HTML tables); ``own``: the
        model as given, its own init."""
        kinds = sorted({f.kind for f in self.findings if f.severity != "info"})
        return {
            "scheme": self.scheme,
            "own": self.scheme == "as given",
            "score": self.score,
            "spread": self.spread,
            "ratio": self.ratio,
            "saturated": self.saturated,
            "dead": self.dead,
            "healthy": self.healthy,
            "findings": self.error or ", ".join(kinds) or "healthy",
            "error": self.error,
            "code": self.code,
        }


@dataclass
class Ranking:
    """Candidates best first; ``best.code`` is the one line that applies the winner;
    ``recommended`` is the code the diagnosis of the model as given proposes (if any)."""

    candidates: list[Candidate]
    recommended: str | None = None

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def rows(self) -> list[dict]:
        return [{"rank": i, **c.row()} for i, c in enumerate(self.candidates, 1)]

    def __rich__(self):
        """The terminal table: the same columns and cells as the HTML report's
        (:func:`gradprobe.report.tables.ranking_cells`)."""
        from ..report.tables import ranking_table

        return ranking_table(self.rows())

    def __str__(self) -> str:
        lines = [
            f"{i}. {c.scheme}: score {c.score:.3g}{'' if c.healthy else ' (not healthy)'}"
            for i, c in enumerate(self.candidates, 1)
        ]
        return "\n".join([*lines, f"apply the best: {self.best.code}"])


def _depth(ctx: Context, step: int) -> tuple[float, float | None]:
    """Σ over the two profiles of |log10 first/last| beyond the stack's allowed drift."""
    total, ratio = 0.0, None
    for which in ("backward", "relative"):
        p = ctx.block_profile(which, step)
        if p is None:
            continue
        if which == "backward":
            ratio = p.ratio
        excess = abs(math.log10(p.ratio))
        if not ctx.structure.plain:
            excess = max(0.0, excess - (len(p.values) - 1) * math.log10(ctx.t.block_rate))
        total += excess
    return total, ratio


def score(run, thresholds: Thresholds | None = None) -> tuple[float, dict]:
    """The health score of a checked run (see module docstring) and its parts."""
    t = thresholds or Thresholds()
    ctx = Context(run, t)
    last = len(ctx.steps) - 1
    depth, ratio = _depth(ctx, last) if ctx.steps else (0.0, None)
    sat_layers = [m.name for m in ctx.modules if (m.activation or "").startswith("saturating")]
    dead_layers = [m.name for m in ctx.modules if m.activation == "relu"]
    sat = ctx.matrix("activation", "saturated", sat_layers)
    dead = ctx.matrix("activation", "dead", dead_layers)
    findings = diagnose(run, t)
    severities = {f.severity for f in findings}
    saturated = float(np.nanmax(sat)) if sat.size and np.isfinite(sat).any() else 0.0
    dead_max = float(np.nanmax(dead)) if dead.size and np.isfinite(dead).any() else 0.0
    non_finite = bool(run.events())
    total = depth + 2 * saturated + 2 * dead_max + 100 * non_finite
    total += 2 * ("warning" in severities) + 5 * ("error" in severities)
    parts: dict[str, Any] = {
        "ratio": ratio,
        "depth": depth,
        "saturated": saturated,
        "dead": dead_max,
        "non_finite": non_finite,
        "findings": findings,
    }
    return total, parts


def _edits(model: nn.Module) -> list[tuple[str, Callable[[nn.Module], nn.Module], str]]:
    """Architecture edits that fit ``model``: (name, edit of a copy, code)."""
    types = {type(m) for m in model.modules()}
    out: list[tuple[str, Callable[[nn.Module], nn.Module], str]] = []
    saturating = sorted(t.__name__ for t in types if t in (nn.Sigmoid, nn.Tanh))
    if saturating:
        only = ", ".join(repr(n) for n in saturating)

        def relu(m, only=tuple(saturating)):
            m = swap_activations(m, "ReLU", only=list(only))
            return apply(m, "kaiming_normal")

        code = f"gp.fix.swap_activations(model, 'ReLU', only=[{only}]); "
        out.append(("ReLU + kaiming_normal", relu, code + "gp.init.apply(model, 'kaiming_normal')"))
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    if not any(issubclass(t, norms) for t in types):
        out.append(("BatchNorm", insert_norm, "model = gp.fix.insert_norm(model)"))
    layers = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
    if any(isinstance(m, layers) and not m.norm_first for m in model.modules()):
        out.append(("Pre-LN", set_norm_first, "gp.fix.set_norm_first(model)"))
    if nn.LSTM in types:
        out.append(("forget-gate bias 1", set_forget_bias, "gp.fix.set_forget_bias(model, 1.0)"))
    return out


def _trial(model, change, seeds, inputs, target, loss_fn, thresholds, name, edit=None):
    totals, first, healthy, notes = [], None, True, []
    try:
        for seed in range(seeds):
            trial = copy.deepcopy(model)
            with torch.random.fork_rng(), warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always", GradprobeWarning)
                torch.manual_seed(seed)
                trial = change(trial, seed)
            notes += [str(w.message) for w in said if str(w.message) not in notes]
            run = record_step(trial, inputs, target, loss_fn, histograms=False).run
            total, parts = score(run, thresholds)
            totals.append(total)
            healthy &= not any(f.severity in ("warning", "error") for f in parts["findings"])
            first = first or parts
    except GradprobeError as err:
        return Candidate(name, math.inf, 0.0, None, 0.0, 0.0, False, error=str(err), edit=edit)
    assert first is not None
    return Candidate(
        name,
        float(np.mean(totals)),
        float(np.ptp(totals)),
        first["ratio"],
        first["saturated"],
        first["dead"],
        first["non_finite"],
        first["findings"],
        healthy=healthy,
        edit=edit,
        notes=notes,
    )


def _order(candidates: list[Candidate], recommended: str | None) -> list[Candidate]:
    """Healthy first: the model as given, then the diagnosis's proposal, then the other
    healthy ones by score; then the rest by score (module docstring)."""

    def key(c: Candidate) -> tuple:
        preference = 0 if c.scheme == "as given" else 1 if c.code == recommended else 2
        return (not c.healthy, preference if c.healthy else 0, c.score)

    return sorted(candidates, key=key)


def _recommended(findings: list[Finding]) -> str | None:
    """The code of the first remedy the diagnosis gives that re-initialises or edits."""
    for f in findings:
        code = (f.remedy.code or "").split("  #")[0].strip()
        if f.severity != "info" and code.startswith(_CODE):
            return code
    return None


_CODE = ("gp.init.apply", "gp.fix.", "model = gp.fix", "model.apply(model._init_weights)")


def _scheme_in(code: str | None) -> str | None:
    """The scheme of a bare ``gp.init.apply(model, 'X')`` line."""
    match = re.fullmatch(r"gp\.init\.apply\(model, '(\w+)'\)", code or "")
    return match.group(1) if match else None


def try_remedies(
    model: nn.Module,
    inputs,
    target=None,
    loss_fn=None,
    schemes=CANDIDATES,
    seeds: int = 3,
    thresholds: Thresholds | None = None,
) -> Ranking:
    """Check copies of ``model`` re-initialised with each scheme (and, where none is healthy,
    changed by the architecture edits that fit it); rank them, best first (module docstring).

    The findings and numbers shown for a candidate are those of its first seed.
    """
    out, recommended = [], None
    schemes = list(schemes)
    own = callable(getattr(model, "_init_weights", None))  # Hugging Face's per-module init
    if own:
        schemes.append(OWN)
    for scheme in schemes:

        def reinit(m, seed, scheme=scheme):
            if scheme == "as given":
                return m
            if scheme == OWN:
                return m.apply(m._init_weights)
            options = {"data": inputs} if scheme == "lsuv" else {}
            return apply(m, scheme, generator=torch.Generator().manual_seed(seed), **options)

        n = 1 if scheme == "as given" else seeds
        c = _trial(model, reinit, n, inputs, target, loss_fn, thresholds, scheme)
        if scheme == "as given":
            recommended = _recommended(c.findings)
            named = _scheme_in(recommended)
            if named and named not in schemes:  # the diagnosis's own proposal is tried too
                schemes.append(named)
        out.append(c)
    if not any(c.healthy for c in out) or "gp.fix." in (recommended or ""):
        for name, edit, code in _edits(model):
            change = lambda m, seed, edit=edit: edit(m)  # noqa: E731
            out.append(
                _trial(model, change, seeds, inputs, target, loss_fn, thresholds, name, code)
            )
    return Ranking(_order(out, recommended), recommended)
