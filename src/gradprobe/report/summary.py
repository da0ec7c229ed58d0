"""What a report says about a run, as plain data: the verdict and one row per layer.

The terminal summary, the HTML report and ``_repr_html_`` all read these, so they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..run import Run

#: (key, column title, quantity, stat, role): the per-layer table at one step
COLUMNS = (
    ("act_std", "act std", "activation", "std", "module"),
    ("act_max", "act max|x|", "activation", "max_abs", "module"),
    ("saturated", "saturated", "activation", "saturated", "module"),
    ("dead", "dead", "activation", "dead", "module"),
    ("nonfinite", "NaN/Inf", "activation", "nonfinite", "module"),
    ("grad_std", "∂L/∂out std", "grad_output", "std", "module"),
    ("grad_norm", "‖∂L/∂out‖", "grad_output", "norm", "module"),
    ("weight_grad", "‖∂L/∂W‖", "param_grad", "norm", "param"),
    ("update_ratio", "‖Δw‖/‖w‖", "update", "ratio", "param"),
)


@dataclass(frozen=True)
class Verdict:
    word: str  # "healthy" | "warnings" | "errors"
    sentence: str
    counts: dict[str, int]


def verdict(findings) -> Verdict:
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    if counts["error"]:
        word = "errors"
        sentence = f"{counts['error']} error(s): gradients will not train this model as it is."
    elif counts["warning"]:
        word = "warnings"
        sentence = f"{counts['warning']} warning(s): training may be slow or unstable."
    else:
        word = "healthy"
        sentence = "Healthy: no warning or error; gradients reach every layer at a usable size."
    if counts["info"]:
        sentence += f" ({counts['info']} note(s) for information.)"
    return Verdict(word, sentence, counts)


def _at(run: Run, quantity: str, stat: str, role: str, step: int) -> dict[str, float]:
    names, steps, values = run.matrix(quantity, stat, role=role)
    if step not in steps:
        return {}
    j = steps.index(step)
    return {n: float(values[i, j]) for i, n in enumerate(names)}


def layer_rows(run: Run, step: int | None = None) -> tuple[int | None, list[dict]]:
    """``(step, rows)``: one dict per watched module in execution order at ``step`` (default
    the last logged), with the :data:`COLUMNS` (None where not recorded); a weight's numbers
    go to the module that owns it."""
    steps = run.steps
    if not steps:
        return None, []
    step = steps[-1] if step is None else step
    values = {key: _at(run, q, s, role, step) for key, _, q, s, role in COLUMNS}
    rows = []
    for la in run.layers():
        row = {"layer": la.name, "type": la.module_type or ""}
        for key, _, _, _, role in COLUMNS:
            name = f"{la.name}.weight" if role == "param" else la.name
            if role == "param" and la.name == "":
                name = "weight"
            v = values[key].get(name)
            row[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
        rows.append(row)
    return step, rows


def fmt(x: float | None) -> str:
    if x is None:
        return ""
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return f"{x:.3g}"
