"""Every threshold the diagnosis uses, in one place, with where its default comes from.

Override any of them: ``gp.diagnose(run, thresholds=Thresholds(vanishing_ratio=1e-3))``.

Gradients. A healthy (critical) initialisation multiplies the back-propagated gradient by
χ₁ = 1 per layer on average (Schoenholz et al. 2017), so the ratio of the gradient at the
lowest layer to the one at the output is 1 up to finite-width fluctuation; the spread of
log-norms grows like √(Σ 1/n_l) (Hanin & Rolnick 2018) and stays well inside a factor 10
for the depths and widths we test (e.g. 30 layers of width 256: √(5·30/256) ≈ 0.77 in
log, ×2.2). A ratio beyond 100× either way is therefore not fluctuation; beyond 10⁵× the
lowest layers effectively do not learn (or overflow).

Activations. Saturation: a tanh/sigmoid output within 1% of the function's range from one
of its bounds (|tanh| ≥ 0.98; probe definition, docs/PROBE.md); Glorot & Bengio saw the top
sigmoid layer at ~100% early in training. Dead ReLUs: a unit is dead when ≤ 0 for every
example of the batch. With zero biases and symmetric weights a unit is dead over a batch
with probability at most 1/2 even when the examples have become perfectly correlated,
which deep ReLU nets drive them towards (c* = 1, Schoenholz et al. 2017): a 30-layer
Kaiming net of width 64 measured 15-35% dead units in its deep layers. More than 60%
means negative biases, a bad init or a bad update.

Updates. ‖Δw‖/‖w‖ per step around 10⁻³ is the usual healthy range (Karpathy's rule of
thumb); above 10⁻¹ the weights change by 10% a step; below 10⁻⁶ they do not move.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    vanishing_ratio: float = 1e-2  # lowest/output gradient rms below this: vanishing (warning)
    vanishing_error_ratio: float = 1e-5  # ... below this: error
    exploding_ratio: float = 1e2  # lowest/output gradient rms above this: exploding (warning)
    exploding_error_ratio: float = 1e5  # ... above this: error
    time_ratio: float = 1e-2  # ∂L/∂x_t at t=0 over its largest value: vanishing through time
    saturated_fraction: float = 0.2  # saturated fraction of a tanh/sigmoid layer (warning)
    saturated_error_fraction: float = 0.5
    dead_fraction: float = 0.6  # dead ReLU units (warning); ≤ ~1/2 is expected at init, see above
    dead_error_fraction: float = 0.9
    large_update_ratio: float = 1e-1  # ‖Δw‖/‖w‖ per step
    small_update_ratio: float = 1e-6
    fluctuation_spread: float = 10.0  # max/min of per-layer gradient rms, between lowest and output
    min_layers: int = 3  # fewer weight layers: no depth profile to judge
