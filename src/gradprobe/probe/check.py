"""``check(model, inputs)``: one watched forward + backward, the model left as it was."""

from __future__ import annotations

import io
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GradprobeError, InvalidInputError
from ..run import Run
from .modules import primary_tensor
from .watch import watch


class CheckResult:
    """What ``gp.check`` saw: ``.run`` (one logged step), a per-layer table when printed.

    ``.findings`` / ``.healthy`` come from :mod:`gradprobe.diagnose` (computed on first use).
    """

    def __init__(self, run: Run, loss: float) -> None:
        self.run = run
        self.loss = loss
        self._findings: list | None = None
        self.ranking = None  # set by check(..., try_remedies=True)

    @property
    def findings(self) -> list:
        if self._findings is None:
            try:
                from ..diagnose import diagnose
            except ImportError:
                raise GradprobeError(
                    "findings need gradprobe.diagnose, which is not available in this "
                    "installation; the recorded numbers are in result.run"
                ) from None
            self._findings = list(diagnose(self.run))
        return self._findings

    @property
    def healthy(self) -> bool:
        return not any(f.severity in ("error", "warning") for f in self.findings)

    def table(self):
        """A rich Table: one row per layer in execution order."""
        from rich.table import Table

        df = self.run.to_pandas()
        v = {(r.layer, r.quantity, r.stat): r.value for r in df.itertuples()}
        pnorm: dict[str, float] = {}
        for la in self.run.layers("param"):
            module = la.name.rpartition(".")[0] or "(model)"
            g = v.get((la.name, "param_grad", "norm"))
            if g is not None and la.name.endswith("weight"):
                pnorm[module] = g
        # ∂L/∂out of each weight layer relative to the output layer's (rms), and theory's
        # prediction of that ratio, √(E[δ_l²]/E[δ_L²]), where run.meta["theory"] holds one
        weighted = [n for n in pnorm if (n, "grad_output", "rms") in v]
        out_rms = v.get((weighted[-1], "grad_output", "rms")) if weighted else None
        theory = {r["name"]: r for r in self.run.meta.get("theory") or [] if "name" in r}
        t = Table(title=f"gradprobe check: loss {self.loss:.4g}", title_justify="left")
        columns = ("layer", "type", "act std", "act max|x|", "sat/dead", "∂L/∂out", "÷ output")
        for col in (*columns, "theory ÷", "‖∂L/∂W‖"):
            t.add_column(col, justify="left" if col in ("layer", "type") else "right")
        for la in self.run.layers(None):
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

    def __rich__(self):
        return self.table()

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=120, highlight=False, color_system=None).print(self.table())
        try:
            findings = self.findings
        except GradprobeError:  # no diagnosis available: the table alone
            return buf.getvalue()
        lines = [str(f) for f in findings] or ["no findings"]
        return buf.getvalue() + "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"CheckResult(loss={self.loss:.4g}, run={self.run!r})"

    def save_html(self, path) -> object:
        """Write the self-contained HTML report (findings, layer table, figures); returns the
        path. See gradprobe.report.html."""
        from ..report.html import write_html

        return write_html(self.run, path, self.findings, title=f"gradprobe check: {_model(self)}")

    def _repr_html_(self) -> str:
        """Jupyter's rich display: verdict, findings, layer table and the depth profile."""
        from ..report.html import render_html

        title = f"gradprobe check: {_model(self)}, loss {self.loss:.4g}"
        return render_html(self.run, self.findings, title=title, fragment=True, figures=["profile"])


def _model(result: CheckResult) -> str:
    return str(result.run.meta.get("model", "model"))


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


def _loss(output: torch.Tensor, target, loss_fn) -> torch.Tensor:
    if loss_fn is not None:
        loss = loss_fn(output) if target is None else loss_fn(output, target)
    elif target is None:  # L = ½ Σ y², so ∂L/∂y = y
        loss = 0.5 * output.float().pow(2).sum()
    elif isinstance(target, torch.Tensor) and not target.is_floating_point():
        loss = F.cross_entropy(output.float(), target)
    elif isinstance(target, torch.Tensor):
        if target.shape != output.shape:  # MSE would broadcast silently into wrong numbers
            raise InvalidInputError(
                f"a value target must have the output's shape {tuple(output.shape)}, got "
                f"{tuple(target.shape)}; pass a target that matches the output, or class "
                "indices (an integer tensor) for cross-entropy"
            )
        loss = F.mse_loss(output.float(), target.float())
    else:
        raise InvalidInputError(
            f"target must be a tensor (class indices or values), got {type(target).__name__}"
        )
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InvalidInputError("loss_fn must return a scalar tensor; reduce it with .mean()")
    return loss


def _is_float_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() > 0


def _check_devices(model, inputs) -> None:
    """Inputs must live where the model's parameters live (a clear error, not a traceback)."""
    if not isinstance(model, nn.Module):
        return
    param = next(model.parameters(), None)
    for x in inputs:
        if param is not None and isinstance(x, torch.Tensor) and x.device != param.device:
            raise InvalidInputError(
                f"the inputs are on {x.device} but the model is on {param.device}; move them "
                f"with inputs.to({str(param.device)!r})"
            )


def check(
    model: nn.Module,
    inputs,
    target=None,
    loss_fn=None,
    *,
    histograms: bool = True,
    path=None,
    try_remedies: bool = False,
) -> CheckResult:
    """One watched forward + backward at initialisation, and nothing else changed.

    ``inputs``: a tensor, a tuple of positional tensors, or a dict of keyword tensors.
    Default loss: ``½ Σ y²`` of the output; cross-entropy when ``target`` holds class
    indices; MSE when it holds floats. Gradients, buffers (BatchNorm running stats) and the
    random number generators are restored afterwards, so checking changes nothing.

    ``try_remedies=True`` also re-checks copies of the model re-initialised with each
    candidate scheme and ranks them (``result.ranking``; see gradprobe.diagnose.ranking).
    """
    if isinstance(inputs, torch.Tensor):
        args, kwargs = (inputs,), {}
    elif isinstance(inputs, (tuple, list)) and inputs:
        args, kwargs = tuple(inputs), {}
    elif isinstance(inputs, dict):
        args, kwargs = (), dict(inputs)
    else:
        raise InvalidInputError(
            f"inputs must be a tensor, a tuple of tensors or a dict, got {type(inputs).__name__}; "
            "pass a batch of data, e.g. torch.randn(64, 784)"
        )
    _check_devices(model, [*args, *kwargs.values()])
    grads = {p: p.grad for p in model.parameters()} if isinstance(model, nn.Module) else {}
    buffers = {}
    probe = watch(model, every=1, histograms=histograms, path=path, updates=False)
    try:
        buffers = {b: b.detach().clone() for b in model.buffers()}
        for p in grads:
            p.grad = None
        cuda = sorted({p.device.index or 0 for p in grads if p.device.type == "cuda"})
        # fork_rng: dropout in the checked forward must not move the caller's random stream
        with probe, torch.random.fork_rng(devices=cuda):
            try:
                out = model(*args, **kwargs)
            except GradprobeError:
                raise
            except Exception as err:
                raise InvalidInputError(
                    f"the model's forward failed on the inputs given to check: {err}; "
                    "pass a batch shaped as the model expects"
                ) from err
            y = primary_tensor(out)
            if y is None:
                raise InvalidInputError("the model returned no floating-point tensor to check")
            try:
                loss = _loss(y, target, loss_fn)
            except GradprobeError:
                raise
            except Exception as err:
                shape = tuple(target.shape) if isinstance(target, torch.Tensor) else None
                raise InvalidInputError(
                    f"the loss could not be computed from the output of shape {tuple(y.shape)} "
                    f"and the target of shape {shape} ({err}); pass a target that matches the "
                    "output (class indices of shape (batch,) or values shaped like the output)"
                ) from None
            loss.backward()
            probe.step()
    finally:
        with torch.no_grad():
            for b, saved in buffers.items():
                b.copy_(saved)
        for p, g in grads.items():
            p.grad = g
    result = CheckResult(probe.run, float(loss.detach()))
    from ..theory import attach

    x = args[0] if len(args) == 1 and not kwargs else None
    scale = float(x.detach().float().pow(2).mean()) if _is_float_tensor(x) else 1.0
    attach(result.run, model, scale if math.isfinite(scale) and scale > 0 else 1.0)
    if try_remedies:
        from ..diagnose import try_remedies as rank

        result.ranking = rank(model, inputs, target, loss_fn)
    return result
