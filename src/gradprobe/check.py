"""``gp.check(model, inputs)``: one watched forward + backward at initialisation, judged.

check = the probe's :func:`~gradprobe.probe.record.record_step` (one logged step, the model
left as it was) + :func:`gradprobe.diagnose.diagnose` + theory's prediction, attached once
with the real input scale, so the terminal table, the JSON and the HTML report show the same
numbers and the same prediction.
"""

from __future__ import annotations

import io
import math
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .diagnose import Finding, diagnose
from .errors import InvalidInputError
from .probe.record import record_step, split_inputs
from .run import Run
from .theory import prediction_rows

if TYPE_CHECKING:  # pragma: no cover
    from .fix.ranking import Ranking

__all__ = ["CheckResult", "check", "input_scale"]


class CheckResult:
    """What ``gp.check`` saw: ``.run`` (one logged step), ``.findings``, ``.healthy``;
    a per-layer table when printed; ``.ranking`` when remedies were tried."""

    def __init__(self, run: Run, loss: float, findings: list[Finding] | None = None) -> None:
        self.run = run
        self.loss = loss
        self._findings = findings
        self.ranking: Ranking | None = None  # set by check(..., try_remedies=True)

    @property
    def findings(self) -> list[Finding]:
        if self._findings is None:
            self._findings = list(diagnose(self.run))
        return self._findings

    @property
    def healthy(self) -> bool:
        """No finding of severity "error" or "warning"."""
        return not any(f.severity in ("error", "warning") for f in self.findings)

    def table(self):
        """A rich Table: one row per layer in execution order."""
        from .report.tables import check_table

        return check_table(self.run, self.loss)

    def to_dict(self) -> dict[str, Any]:
        """What ``gradprobe check --json`` prints."""
        payload: dict[str, Any] = {
            "healthy": self.healthy,
            "loss": self.loss,
            "findings": [f.to_dict() for f in self.findings],
            "theory": self.run.meta.get("theory"),
        }
        ranking = self._ranking_rows()
        if ranking is not None:
            payload["ranking"] = ranking
        return payload

    def _ranking_rows(self) -> list[dict] | None:
        """The ranking as plain rows (``Ranking.rows()``, best first), or None."""
        return self.ranking.rows() if self.ranking is not None else None

    def __rich__(self):
        return self.table()

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=120, highlight=False, color_system=None).print(self.table())
        lines = [str(f) for f in self.findings] or ["no findings"]
        return buf.getvalue() + "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"CheckResult(loss={self.loss:.4g}, run={self.run!r})"

    def save_html(self, path) -> object:
        """Write the self-contained HTML report (findings, layer table, figures, and the
        ranking when remedies were tried); returns the path. See gradprobe.report.html."""
        from .report.html import write_html

        return write_html(
            self.run,
            path,
            self.findings,
            title=f"gradprobe check: {self._model}",
            ranking=self._ranking_rows(),
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display: verdict, findings, the ranking when remedies were tried,
        the layer table and the depth profile."""
        from .report.html import render_html

        title = f"gradprobe check: {self._model}, loss {self.loss:.4g}"
        return render_html(
            self.run,
            self.findings,
            title=title,
            fragment=True,
            figures=["profile"],
            ranking=self._ranking_rows(),
        )

    @property
    def _model(self) -> str:
        return str(self.run.meta.get("model", "model"))


def input_scale(inputs: object) -> float:
    """E[x²] of a single floating-point input tensor (theory's q⁰); 1.0 when there is no
    single float input or its scale is not a positive finite number."""
    try:
        args, kwargs = split_inputs(inputs)
    except InvalidInputError:
        return 1.0
    x = args[0] if len(args) == 1 and not kwargs else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() == 0:
        return 1.0
    if x.device.type == "meta":
        return 1.0
    scale = float(x.detach().double().pow(2).mean())
    return scale if math.isfinite(scale) and scale > 0 else 1.0


def check(
    model: nn.Module,
    inputs,
    target=None,
    loss_fn: Callable | None = None,
    *,
    histograms: bool = True,
    path=None,
    try_remedies: bool = False,
) -> CheckResult:
    """One watched forward + backward at initialisation, and nothing else changed.

    ``inputs``: a tensor, a tuple of positional tensors, or a dict of keyword tensors. The
    loss: ``loss_fn(output[, target])`` when given; else the loss the model returns itself
    (``output.loss``, as Hugging Face models do when given labels); cross-entropy when
    ``target`` holds class indices; MSE when it holds floats; ``½ Σ y²`` of the output when
    there is no target. Gradients, buffers (BatchNorm running stats) and the random number
    generators are restored afterwards, so checking changes nothing.

    ``try_remedies=True`` also re-checks copies of the model re-initialised with each
    candidate scheme and ranks them (``result.ranking``; see :mod:`gradprobe.fix`).
    """
    rows = prediction_rows(model, input_scale(inputs)) if isinstance(model, nn.Module) else None
    meta = {"theory": rows} if rows is not None else {}
    recorded = record_step(
        model, inputs, target, loss_fn, histograms=histograms, path=path, meta=meta
    )
    result = CheckResult(recorded.run, recorded.loss)
    if try_remedies:
        from .fix import try_remedies as rank

        result.ranking = rank(model, inputs, target, loss_fn)
    return result


class _CallableModule(types.ModuleType):
    """``gp.check(model, x)`` must stay the function once ``gradprobe.check`` (this module)
    has been imported as a submodule, which binds the name on the package: so the module
    itself is callable, and ``gp.check.CheckResult`` works as well."""

    def __call__(self, *args, **kwargs) -> CheckResult:
        return check(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
