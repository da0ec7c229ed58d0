"""The per-layer table of a one-step check (rich), from the stored run only."""

from __future__ import annotations

import math

from ..run import Run


def check_table(run: Run, loss: float):
    """A rich Table: one row per layer in execution order.

    ``∂L/∂out`` is the norm of the gradient of the loss w.r.t. the layer's output; ``÷ output``
    the rms of that gradient at a weight layer over the output layer's (the Glorot ratio), and
    ``theory ÷`` theory's prediction of that ratio, √(E[δ_l²]/E[δ_L²]), where the run holds one.
    """
    from rich.table import Table

    df = run.to_pandas()
    v = {(r.layer, r.quantity, r.stat): r.value for r in df.itertuples()}
    pnorm: dict[str, float] = {}
    for la in run.layers("param"):
        module = la.name.rpartition(".")[0] or "(model)"
        g = v.get((la.name, "param_grad", "norm"))
        if g is not None and la.name.endswith("weight"):
            pnorm[module] = g
    weighted = [n for n in pnorm if (n, "grad_output", "rms") in v]
    out_rms = v.get((weighted[-1], "grad_output", "rms")) if weighted else None
    theory = {r["name"]: r for r in run.meta.get("theory") or [] if "name" in r}
    t = Table(title=f"gradprobe check: loss {loss:.4g}", title_justify="left")
    columns = ("layer", "type", "act std", "act max|x|", "sat/dead", "∂L/∂out", "÷ output")
    for col in (*columns, "theory ÷", "‖∂L/∂W‖"):
        t.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for la in run.layers(None):
        if la.position is None or la.role == "param":
            continue
        n = la.name
        health = v.get((n, "activation", "saturated"), v.get((n, "activation", "dead")))
        label = ""
        if health is not None:
            label = f"{health:.1%} " + ("sat" if la.activation != "relu" else "dead")
        t.add_row(
            n,
            la.module_type or "",
            _fmt(v.get((n, "activation", "std"))),
            _fmt(v.get((n, "activation", "max_abs"))),
            label,
            _fmt(v.get((n, "grad_output", "norm"))),
            _ratio(v.get((n, "grad_output", "rms")), out_rms) if n in pnorm else "",
            _predicted_ratio(theory.get(n)),
            _fmt(pnorm.get(n)),
        )
    return t


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference or not math.isfinite(reference):
        return ""
    return _fmt(value / reference)


def _predicted_ratio(row: dict | None) -> str:
    if not row or row.get("grad_var") is None:
        return ""
    return _fmt(math.sqrt(row["grad_var"]))


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"
