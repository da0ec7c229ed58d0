"""What a report says about a run, as plain data: the verdict, one row per layer, and how a
number is written.

The terminal tables, the HTML report and ``_repr_html_`` all read these, so they agree: the
same rows, the same columns, the same digits (:func:`fmt`, :func:`pct`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from ..run import Run


class Column(NamedTuple):
    """One column of the per-layer table: where its number comes from and what it means.
    ``quantity`` None: derived from other columns (see :func:`layer_rows`)."""

    key: str
    title: str
    quantity: str | None
    stat: str | None
    role: str  # "module": the layer's own number; "param": its weight's
    percent: bool
    means: str


COLUMNS = (
    Column("act_std", "act std", "activation", "std", "module", False, "std of the output"),
    Column("act_max", "act max|x|", "activation", "max_abs", "module", False, "largest |output|"),
    Column(
        "saturated", "saturated", "activation", "saturated", "module", True,
        "% of tanh/sigmoid outputs within 1% of a bound",
    ),
    Column(
        "dead", "dead", "activation", "dead", "module", True,
        "% of units ≤ 0 for the whole batch",
    ),
    Column(
        "nonfinite", "NaN/Inf", "activation", "nonfinite", "module", True,
        "% of the output that is NaN or Inf",
    ),
    Column(
        "grad_rms", "∂L/∂out rms", "grad_output", "rms", "module", False,
        "root mean square of the loss gradient at the layer's output",
    ),
    Column(
        "grad_ratio", "rms ÷ last", None, None, "module", False,
        "that rms over the last weight layer's",
    ),
    Column(
        "theory_ratio", "theory ÷ last", None, None, "module", False,
        "mean-field prediction of that ratio, √(E[δ²]/E[δ_L²])",
    ),
    Column(
        "weight_grad", "‖∂L/∂W‖", "param_grad", "norm", "param", False,
        "norm of the weight's gradient",
    ),
    Column(
        "update_ratio", "‖Δw‖/‖w‖", "update", "ratio", "param", False,
        "size of the last update relative to the weight",
    ),
)  # fmt: skip
BY_KEY = {c.key: c for c in COLUMNS}


def fmt(x: float | None) -> str:
    """Three significant digits, as short as they go: ``0.00252``; ``0.000252`` → ``2.52e-4``;
    ``1680``; ``12345`` → ``1.23e4``; ``1e30``; ``NaN``, ``Inf``, ``-Inf``; None → empty. At
    most 10 characters, so a column as wide as its longest cell never cuts one."""
    if x is None:
        return ""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    mantissa, exponent = f"{x:.2e}".split("e")
    e = int(exponent)  # after rounding to 3 digits: 999.6 is 1.00e+03
    if -3 <= e <= 2:
        return f"{x:.3g}"
    if e == 3:
        return f"{x:.0f}"
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{e}"


def pct(x: float | None) -> str:
    """A fraction as a percentage, three significant digits: ``0.03125`` → ``3.12%``; a
    non-zero share never reads ``0%`` nor a partial one ``100%``."""
    if x is None:
        return ""
    x = float(x)
    if not math.isfinite(x):
        return fmt(x)
    if x == 0:
        return "0%"
    p = 100 * x
    if 0 < p < 0.01:
        return "<0.01%"
    text = f"{p:.3g}"
    if text == "100" and x < 1:
        return ">99.9%"
    return text + "%"


def cell(key: str, value: float | None) -> str:
    """``value`` written as the column ``key`` writes its numbers."""
    column = BY_KEY.get(key)
    return pct(value) if column is not None and column.percent else fmt(value)


@dataclass(frozen=True)
class LayerTable:
    """The per-layer table at one step: ``rows`` (dicts keyed by column), the ``columns``
    recorded somewhere in it, and ``reference``, the layer that ``rms ÷ last`` divides by."""

    step: int | None
    rows: list[dict]
    columns: list[Column]
    reference: str | None


def per_layer(run: Run, step: int | None = None) -> LayerTable:
    """One row per watched module (and the input) in execution order at ``step`` (default:
    the last logged step that holds numbers). A weight's numbers go to the module that owns
    it. A value recorded as NaN is NaN here (shown as ``NaN``); one never recorded is None."""
    step = _step(run, step)
    if step is None:
        return LayerTable(None, [], [], None)
    recorded = {(layer, q, s): v for _, layer, q, s, v in run.rows(step)}
    weights = _weights(run)
    theory = {r["name"]: r for r in run.meta.get("theory") or [] if isinstance(r, dict)}
    rows = []
    for la in run.layers(None):
        if la.position is None or la.role == "param":
            continue
        row = {"layer": la.name, "type": la.module_type or "", "activation": la.activation}
        for c in COLUMNS:
            if c.quantity is None:
                continue
            name = weights.get(la.name) if c.role == "param" else la.name
            row[c.key] = recorded.get((name, c.quantity, c.stat))
        row["has_weight"] = la.name in weights
        grad_var = (theory.get(la.name) or {}).get("grad_var")
        row["theory_ratio"] = math.sqrt(grad_var) if _finite(grad_var) and grad_var >= 0 else None
        rows.append(row)
    reference = _ratio(rows)
    columns = [c for c in COLUMNS if any(r.get(c.key) is not None for r in rows)]
    return LayerTable(step, rows, columns, reference)


def layer_rows(run: Run, step: int | None = None) -> tuple[int | None, list[dict]]:
    """``(step, rows)`` of :func:`per_layer`."""
    table = per_layer(run, step)
    return table.step, table.rows


def _step(run: Run, step: int | None) -> int | None:
    steps = run.steps
    if step is not None or not steps:
        return step
    for s in reversed(steps):  # a step the probe began but never filled holds nothing
        if run.rows(s):
            return s
    return steps[-1]


def _weights(run: Run) -> dict[str, str]:
    """Module name -> the name of its weight (``weight``, else ``*_weight``)."""
    out: dict[str, str] = {}
    for la in run.layers("param"):
        owner, _, leaf = la.name.rpartition(".")
        owner = owner or "(model)"
        if leaf == "weight" or (leaf.endswith("weight") and owner not in out):
            out[owner] = la.name
    return out


def _ratio(rows: list[dict]) -> str | None:
    """Fill ``grad_ratio`` on weight layers: their ∂L/∂out rms over the last weight layer's
    (the ratio Glorot & Bengio 2010 plot; 1 = the gradient keeps its size with depth)."""
    weighted = [r for r in rows if r["has_weight"] and r.get("grad_rms") is not None]
    for r in rows:
        r["grad_ratio"] = None
    if not weighted:
        return None
    last = weighted[-1]
    ref = last["grad_rms"]
    if not _finite(ref) or ref <= 0:
        return None
    for r in weighted:
        r["grad_ratio"] = r["grad_rms"] / ref
    return last["layer"]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# ----------------------------------------------------------------------------- the verdict

#: what each kind of finding is, in a few plain words (the verdict's sentence, the reports)
WORDS = {
    "vanishing": "gradients vanish before they reach the first layers",
    "exploding": "gradients grow on their way to the first layers",
    "non_finite": "NaN/Inf",
    "saturated": "saturated units",
    "dead_units": "dead units",
    "large_updates": "updates too large for the weights",
    "small_updates": "updates too small to move the weights",
    "fluctuation": "gradients that fluctuate from step to step",
    "attention_logits": "attention logits so large that attention collapses onto a few tokens",
    "overflow": "values near the low-precision dtype's largest number, about to overflow",
    "not_learning": "the loss is not falling",
    "stalled": "the loss stopped improving",
    "diverging": "the loss diverges",
    "loss_spike": "the loss spiked",
    "oscillating": "the loss swings up and down instead of falling",
    "no_steps": "nothing was recorded",
}
_CAUSES_SHOWN = 2  # causes named per symptom in the verdict's sentence (the reports list all)


def words(kind: str) -> str:
    """A kind of finding in plain words (its name with spaces for a kind not listed)."""
    return WORDS.get(kind, kind.replace("_", " "))


def when(finding, training: bool = True) -> str:
    """When a finding was seen, in words: ``"steps 40–199"`` for a symptom's step range
    (``"at step 51"`` for one step), ``"from step 12"`` for what appeared during training,
    ``"from the start"`` for what was there at the first step of a training run; empty when
    nothing is known, and for step 0 of a run that is not training (a check: one step)."""
    onset, end = getattr(finding, "onset", None), getattr(finding, "end", None)
    if onset is None:
        return ""
    if end is not None:
        return f"steps {onset}–{end}" if end != onset else f"at step {onset}"
    if onset > 0:
        return f"from step {onset}"
    return "from the start" if training else ""


def causes(finding, limit: int | None = None) -> str:
    """The causes a symptom was linked to (``Finding.causes``), in words; ``limit``: name at
    most that many and count the rest."""
    said = [getattr(c, "summary", str(c)) for c in getattr(finding, "causes", ())]
    if limit is not None and len(said) > limit:
        return ", ".join(said[:limit]) + f" and {len(said) - limit} more"
    return ", ".join(said)


@dataclass(frozen=True)
class Verdict:
    """``word``: "healthy" | "warnings" | "errors"; ``sentence``: what happened, in words;
    ``counts``: findings per severity. ``exit_code``: the command line's rule (0 healthy,
    1 a warning or an error)."""

    word: str
    sentence: str
    counts: dict[str, int]

    @property
    def exit_code(self) -> int:
        return 0 if self.word == "healthy" else 1


def verdict(findings, run: Run | None = None) -> Verdict:
    """The verdict on ``findings`` (of ``run``, when given).

    With the run it also says what the findings alone cannot: a run with no recorded step is
    never healthy (nothing was measured); a step the guard skipped (``gp.guard`` or
    ``watch(..., guard=True)``) and from which training went on is named as such — the
    non-finite findings of that step are the reason for the skip, not a dead model.
    """
    findings = list(findings)
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    if run is not None and not run.steps:
        return Verdict(
            "warnings",
            "No step was recorded, so nothing was measured and nothing can be called healthy: "
            "call probe.step() after each backward(), or pass optimizer= to gp.watch.",
            counts,
        )
    parts: list[str] = []
    handled: set[int] = set()
    if run is not None:
        skip, handled = _guard(findings, run)
        parts += [skip] if skip else []
        problems = run.meta.get("warnings") or []
        if problems:
            parts.append(
                f"The probe met {len(problems)} problem(s) while recording (run.meta"
                "['warnings']): some numbers may be missing."
            )
    rest = [f for i, f in enumerate(findings) if i not in handled]
    errors = [f for f in rest if f.severity == "error"]
    warnings = [f for f in rest if f.severity == "warning"]
    training = run is not None and len(run.steps) > 1
    if errors:
        word = "errors"
        parts.append(f"{len(errors)} error(s): {_what(errors, training)}.")
    if warnings:
        word = "warnings" if not errors else word
        parts.append(
            f"{len(warnings)} warning(s): {_what(warnings, training)}; training may be slow "
            "or unstable."
        )
    if not errors and not warnings:
        if parts:
            word = "warnings"
            parts.append("No other warning or error.")
        else:
            word = "healthy"
            over = f" over {len(run.steps)} logged step(s)" if run is not None else ""
            parts.append(
                f"Healthy{over}: no warning or error; gradients reach every layer at a usable size."
            )
    infos = sum(f.severity == "info" for f in rest)
    if infos:
        parts.append(f"({infos} note(s) for information.)")
    return Verdict(word, " ".join(parts), counts)


def _what(findings, training: bool = False) -> str:
    """The findings in words, one phrase per kind (in order of first appearance): what it is,
    when it was first seen (:func:`when`), and for a symptom in the loss what preceded it."""
    phrases: list[str] = []
    seen: dict[str, int] = {}
    for f in findings:
        if f.kind == "non_finite":
            text = f"NaN/Inf at step {f.step}" if f.step is not None else words(f.kind)
            if text not in phrases:
                phrases.append(text)
            continue
        if f.kind in seen:  # the same kind again: the first one's onset and causes stand
            continue
        seen[f.kind] = len(phrases)
        same = [g for g in findings if g.kind == f.kind]
        first = min(same, key=lambda g: (g.onset is None, g.onset or 0))
        text = words(f.kind)
        w = when(first, training)
        if w:
            text += f" ({w})"
        linked = causes(first, _CAUSES_SHOWN)
        if linked:
            text += f", after {linked}"
        phrases.append(text)
    return "; ".join(phrases)


def _guard(findings, run: Run) -> tuple[str, set[int]]:
    """The guard's skipped steps in words, and the indices of the non-finite findings those
    skips explain (training went on past them and the last logged step is finite)."""
    skipped = [s for s in run.meta.get("guard_skipped") or [] if isinstance(s, dict)]
    if not skipped:
        return "", set()
    steps = sorted({int(s["step"]) for s in skipped if s.get("step") is not None})
    last = run.steps[-1]
    went_on = bool(steps) and last > steps[-1] and _finite_at(run, _step(run, None))
    handled = {
        i for i, f in enumerate(findings) if went_on and f.kind == "non_finite" and f.step in steps
    }
    causes = []
    for s in skipped[:3]:
        why = "NaN/Inf" if s.get("reason") == "non_finite" else str(s.get("reason", "bad"))
        where = _first_in(findings, s.get("step")) or s.get("origin")
        causes.append(f"{why} at step {s.get('step')}" + (f", first in {where}" if where else ""))
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    n = len(skipped)
    text = f"{n} step{'s' * (n != 1)} skipped by the guard ({'; '.join(causes)}{more})"
    if went_on:
        text += f"; training went on to step {last}, finite since."
    else:
        text += "; training did not recover after it."
    return text, handled


def _first_in(findings, step) -> str | None:
    for f in findings:
        if f.kind == "non_finite" and f.step == step and f.layer:
            return "the input data" if f.layer == "(input)" else f.layer
    return None


def _finite_at(run: Run, step: int | None) -> bool:
    """No NaN/Inf at ``step``: the probe's own counts (stat ``nonfinite``) are all 0."""
    if step is None:
        return False
    rows = run.rows(step)
    counts = [v for *_, stat, v in rows if stat == "nonfinite"]
    if counts:
        return all(v == 0 for v in counts)
    return all(math.isfinite(v) for *_, v in rows)
