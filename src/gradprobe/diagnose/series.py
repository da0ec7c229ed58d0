"""Per-step series of the whole model (the loss, the learning rate, the global gradient
norm) and the robust statistics the training-time rules read them with.

The probe stores them at the layer ``"(model)"``: ``("loss", "value")`` and ``("lr",
"value")`` and ``("grad_norm", "global")``, on every step (logged or not). A series is
read as it was stored: a NaN/Inf loss is a value, not a gap.

Smoothing is by rolling medians, and spread by the median absolute deviation (MAD),
σ̂ = 1.4826 · MAD (a consistent estimate of σ for Gaussian noise): a single outlier moves
neither (Hampel 1974; Rousseeuw & Croux 1993), so a spike does not hide itself by raising
the level it is judged against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..run import Run

MODEL = "(model)"
MAD_SIGMA = 1.4826  # σ / MAD for Gaussian noise


@dataclass(frozen=True)
class Series:
    """``values[i]`` at ``steps[i]`` (steps increasing; NaN/Inf kept)."""

    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.steps.size)

    @property
    def first_nonfinite(self) -> int | None:
        """Index of the first NaN/Inf value, or None."""
        bad = np.nonzero(~np.isfinite(self.values))[0]
        return int(bad[0]) if bad.size else None

    def finite_prefix(self) -> Series:
        """The values before the first NaN/Inf."""
        k = self.first_nonfinite
        return self if k is None else Series(self.steps[:k], self.values[:k])

    def at(self, step: int) -> float | None:
        """The value at ``step``, or at the last step before it; None before the first."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        return None if i < 0 else float(self.values[i])

    def before(self, step: int) -> Series:
        keep = self.steps < step
        return Series(self.steps[keep], self.values[keep])


def model_series(run: Run, quantity: str, stat: str) -> Series | None:
    """The model-level series ``(quantity, stat)`` at ``"(model)"``, or None if not recorded."""
    if (quantity, stat) not in set(run.quantities()):
        return None
    names, steps, values = run.matrix(quantity, stat, role=None)
    if MODEL in names:
        row = values[names.index(MODEL)]
    elif len(names) == 1:  # stored under another name for the root (a hand-written run)
        row = values[0]
    else:
        return None
    steps = np.asarray(steps, dtype=int)
    if not steps.size:
        return None
    return Series(steps, np.asarray(row, dtype=float))


def loss_series(run: Run) -> Series | None:
    return model_series(run, "loss", "value")


def without_guard_skips(s: Series | None, run: Run) -> Series | None:
    """``s`` without the steps the guard skipped (``meta["guard_skipped"]``): their update was
    never applied and the report names the skip itself, so a skipped NaN batch is neither a
    diverging loss nor an exploding gradient."""
    skipped = {int(e["step"]) for e in run.meta.get("guard_skipped") or [] if "step" in e}
    if s is None or not skipped:
        return s
    keep = np.array([int(step) not in skipped for step in s.steps], dtype=bool)
    return Series(s.steps[keep], s.values[keep])


def examples_per_step(run: Run) -> int | None:
    """The examples of a step's batch, where the run says (``activation/dead_samples``, the
    examples a ReLU layer's dead fraction was taken over): the median over the logged steps
    of the largest layer's count; None when not recorded."""
    if ("activation", "dead_samples") not in set(run.quantities()):
        return None
    _names, _steps, values = run.matrix("activation", "dead_samples")
    with np.errstate(invalid="ignore"):
        per_step = np.nanmax(np.where(np.isfinite(values), values, np.nan), axis=0)
    per_step = per_step[np.isfinite(per_step) & (per_step > 0)]
    return int(np.median(per_step)) if per_step.size else None


def skipped_steps(run: Run) -> set[int]:
    """Steps whose gradient norm was NaN/Inf while their loss was finite, before a later
    step whose loss and gradient norm are both finite: the update was not applied (it would
    have made the weights NaN for good). A GradScaler skips every step whose scaled
    gradients overflow while it lowers its scale (Micikevicius et al. 2018); the probe's
    guard too. Such a step says nothing about the gradients' growth."""
    norms, loss = model_series(run, "grad_norm", "global"), loss_series(run)
    if norms is None or loss is None or not len(loss):
        return set()
    finite_loss = {int(t) for t, v in zip(loss.steps, loss.values, strict=True) if np.isfinite(v)}
    fine = [int(t) for t, v in zip(norms.steps, norms.values, strict=True) if np.isfinite(v)]
    last_ok = max((t for t in fine if t in finite_loss), default=-1)  # weights still numbers
    return {
        int(t)
        for t, v in zip(norms.steps, norms.values, strict=True)
        if not np.isfinite(v) and int(t) in finite_loss and int(t) < last_ok
    }


def data_nonfinite_steps(run: Run) -> set[int]:
    """Steps whose first non-finite value was already in the input or the target: a NaN
    there says nothing about growth of the gradients or of the loss."""
    return {
        e.step for e in run.events() if e.phase == "forward" and e.layer in ("(input)", "(target)")
    }


def window(n: int) -> int:
    """The smoothing window for a curve of ``n`` values: a tenth of it, 5 to 50 values (odd)."""
    w = int(min(50, max(5, n // 10)))
    return w + 1 if w % 2 == 0 else w


def centred_median(x: np.ndarray, w: int) -> np.ndarray:
    """Median of ``x`` over a centred window of ``w`` values (shrinking at the edges)."""
    n = x.size
    h = w // 2
    if n == 0:
        return x.copy()
    padded = np.concatenate([np.full(h, np.nan), x, np.full(h, np.nan)])
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * h + 1)
    return np.nanmedian(view, axis=1)


def trailing(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """For each index t ≥ w: the median and the robust σ̂ = 1.4826·MAD of ``x[t−w:t]`` (the
    ``w`` values before t, t excluded); NaN for t < w."""
    n = x.size
    med = np.full(n, np.nan)
    sig = np.full(n, np.nan)
    if n <= w:
        return med, sig
    view = np.lib.stride_tricks.sliding_window_view(x[:-1], w)  # view[i] = x[i : i+w]
    m = np.median(view, axis=1)
    mad = np.median(np.abs(view - m[:, None]), axis=1)
    med[w:] = m
    sig[w:] = MAD_SIGMA * mad
    return med, sig


def robust_sigma(x: np.ndarray) -> float:
    """1.4826 · median |x − median x| (0 for fewer than two values)."""
    if x.size < 2:
        return 0.0
    return float(MAD_SIGMA * np.median(np.abs(x - np.median(x))))


def noise(x: np.ndarray, w: int) -> float:
    """The step-to-step noise of a curve: σ̂ of its residuals around the centred median."""
    return robust_sigma(x - centred_median(x, w))


def sig(x: float, digits: int = 2) -> float:
    """``x`` rounded to ``digits`` significant digits (a number to write in code)."""
    if not math.isfinite(x) or x == 0:
        return x
    return float(f"{x:.{digits}g}")
