"""The model's input, when its scale is the cause: data far from the unit scale every
initialisation assumes.

Xavier, Kaiming and LeCun choose σ² so that a layer keeps the variance of its input — an
input of variance ~1 (LeCun et al. 1998, "Efficient BackProp" §4.3: standardise the
inputs). Pixels in 0-255, prices, raw counts: an input of rms 100 makes the first layer's
pre-activations 100× what its init expects, so a tanh/sigmoid after it saturates, and (ReLU
being homogeneous) every ReLU layer's activations and the last layer's gradient grow by the
same factor, so plain SGD takes steps far larger than its lr suggests. The probe records the
model's float input as the layer ``"(input)"`` (integer token ids are not recorded).
Re-initialising does not help; standardising the input does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .context import Context
from .finding import Finding, Remedy

INPUT = "(input)"
#: the kinds an off-scale input causes (a saturated first layer, dead ReLUs, huge first steps)
KINDS = ("saturated", "dead_units", "large_updates")


def input_scale(ctx: Context) -> dict[str, float] | None:
    """The model input's rms, mean and max |x| (medians over the logged steps) when its rms
    is over ``input_rms`` (10); None otherwise, or when the input was not recorded."""
    rms = ctx.matrix("activation", "rms", [INPUT])[0]
    if not np.isfinite(rms).any() or not np.nanmedian(rms) > ctx.t.input_rms:
        return None
    mean = ctx.matrix("activation", "mean", [INPUT])[0]
    top = ctx.matrix("activation", "max_abs", [INPUT])[0]
    return {
        "input_rms": float(np.nanmedian(rms)),
        "input_mean": float(np.nanmedian(mean)) if np.isfinite(mean).any() else float("nan"),
        "input_max_abs": float(np.nanmedian(top)) if np.isfinite(top).any() else float("nan"),
    }


def standardise_first(ctx: Context, findings: list[Finding]) -> list[Finding]:
    """Findings of :data:`KINDS` in a run whose input is off scale (:func:`input_scale`) get
    standardising the input as their remedy, before their own (text and code kept after
    "then, if it persists")."""
    scale = input_scale(ctx)
    if scale is None:
        return findings
    rms, mean, top = scale["input_rms"], scale["input_mean"], scale["input_max_abs"]
    said = f"the model's input has rms {rms:.3g} (mean {mean:.3g}, max |x| {top:.3g})"
    code = (
        f"# {said}; initialisations assume ~1\n"
        "mean, std = x_train.mean(0), x_train.std(0) + 1e-8  # once, on the training data\n"
        "x = (x - mean) / std  # every batch (train and test), before model(x)"
    )

    def mended(f: Finding) -> Finding:
        if f.kind not in KINDS or f.severity == "info":
            return f
        then = f"; then, if it persists: {f.remedy.text}" if f.remedy.text else ""
        own = f"\n# then, if it persists:\n{f.remedy.code}" if f.remedy.code else ""
        return dataclasses.replace(
            f,
            evidence={**f.evidence, **scale, "input_rms_threshold": ctx.t.input_rms},
            remedy=Remedy(
                f"{said}, where every initialisation assumes ~1: standardise it ((x - mean) / "
                f"std per feature, from the training data){then}",
                None,
                code + own,
            ),
        )

    return [mended(f) for f in findings]
