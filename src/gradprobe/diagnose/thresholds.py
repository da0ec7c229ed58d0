"""Every threshold the diagnosis uses, in one place, with where its default comes from.

Override any of them: ``gp.diagnose(run, thresholds=Thresholds(vanishing_ratio=1e-3))``.

Gradients. A healthy (critical) initialisation multiplies the back-propagated gradient by
χ₁ = 1 per layer on average (Schoenholz et al. 2017), so the ratio of the gradient at the
lowest layer to the one at the output is 1 up to finite-width fluctuation; the spread of
log-norms grows like √(Σ 1/n_l) (Hanin & Rolnick 2018) and stays well inside a factor 10
for the depths and widths we test (e.g. 30 layers of width 256: √(5·30/256) ≈ 0.77 in
log, ×2.2). A ratio beyond 100× either way is therefore not fluctuation; beyond 10⁵× the
lowest layers effectively do not learn (or overflow).

Depth is judged per block (``diagnose/blocks.py``) on two profiles, the per-example
back-propagated gradient at each block's output and the relative gradient ‖∂L/∂θ‖/‖θ‖ of
each block's parameters, with the same ratio lines. Residual, normalised stacks drift
polynomially with depth (the stream's variance grows like the block count, De & Smith
2020): a healthy BatchNorm ResNet of 24 blocks reads ×36-40 (×1.17 per block), a Pre-LN
Transformer of 24 ×4-7. So a block structure is flagged only where the change is also
exponential, more than ``block_rate`` = 1.25 per block; a stack whose every block holds a
norm only beyond the error lines (its weights are scale-invariant: a Hugging Face
MobileNetV2 reads ×54-113 and trains), a plain stack only where its median layer factor
compounds past the line too (a VGG's two std-0.01 head layers are not depth). Post-LN
stacks of ``post_ln_blocks`` = 18 or more need warm-up (Xiong et al. 2020; Liu et al. 2020
saw 18 Post-LN layers fail where 6 trained), whatever their gradient shows at init (1.02
for a 24-layer BERT at width 32); ``post_ln_growth`` says whether it already grows (1.6-4.9
at 18-48 layers of torch's Post-LN layer). A plain
ReLU stack with Σ 1/n_l ≥ ``narrow_width`` over its hidden widths is too narrow: the
log-variance of its signal is about 5 Σ 1/n_l (Hanin & Rolnick 2018). Every number:
docs/DIAGNOSIS.md.

Activations. Saturation: a tanh/sigmoid output within 1% of the function's range from one
of its bounds (|tanh| ≥ 0.98; probe definition, docs/PROBE.md); Glorot & Bengio saw the top
sigmoid layer at ~100% early in training. One saturated layer alone (no other crosses) cuts
the gradient once, as a healthy ReLU layer's zeros do: info up to
``saturated_alone_fraction`` = 90% (raw ``make_blobs`` inputs: 30-62% in the first layer).
Dead ReLUs: a unit is dead when ≤ 0 for every example of the batch. With zero biases and
symmetric weights a unit is dead over a batch with probability at most 1/2 even when the
examples have become perfectly correlated, which deep ReLU nets drive them towards (c* = 1,
Schoenholz et al. 2017). More than 60%
means negative biases, a bad init or a bad update.

"Dead over the batch" needs a batch: on one example a healthy unit is ≤ 0 half the time,
so a layer of 64 units shows 50% ± 6% "dead" by chance. Measured on He-initialised ReLU
stacks of width 64 (max over layers of the dead fraction, 10 seeds, mean / max): 30
layers, batch 1: 0.62 / 0.67; 2: 0.56 / 0.61; 4: 0.54 / 0.58; 8: 0.51 / 0.56; 16: 0.48 /
0.55; 128: 0.43 / 0.53 (6 layers, batch 16: 0.14 / 0.20). So dead units are judged only
on steps whose batch has at least ``min_dead_batch = 16`` examples: below that the 60%
line is crossed by chance.

Updates. ‖Δw‖/‖w‖ per step around 10⁻³ is the usual healthy range (Karpathy's rule of
thumb); above 10⁻¹ the weights change by 10% a step; below 10⁻⁶ they do not move.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidInputError


@dataclass(frozen=True)
class Thresholds:
    vanishing_ratio: float = 1e-2  # lowest/output gradient rms below this: vanishing (warning)
    vanishing_error_ratio: float = 1e-5  # ... below this: error
    exploding_ratio: float = 1e2  # lowest/output gradient rms above this: exploding (warning)
    exploding_error_ratio: float = 1e5  # ... above this: error
    time_ratio: float = 1e-2  # ∂L/∂x_t at or above this share of its largest: within reach
    time_reach_fraction: float = 0.08  # reach below this share of the sequence: vanishing
    time_min_reach: int = 5  # ... or below this many steps (healthy gated init: 8-38)
    time_ungated_reach: int = 12  # an RNN without gates: below this many (orthogonal: 15-52)
    saturated_fraction: float = 0.2  # saturated fraction of a tanh/sigmoid layer (warning)
    saturated_error_fraction: float = 0.5
    saturated_alone_fraction: float = 0.9  # one saturated layer alone is info up to this
    dead_fraction: float = 0.6  # dead ReLU units (warning); ≤ ~1/2 is expected at init, see above
    dead_error_fraction: float = 0.9
    large_update_ratio: float = 1e-1  # ‖Δw‖/‖w‖ per step
    small_update_ratio: float = 1e-6
    # -- depth in blocks (docs/DIAGNOSIS.md, "Depth"): healthy zoo spans 0.1-40, see there
    block_rate: float = 1.25  # ×/block a residual, normalised stack may drift (zoo max 1.17)
    block_growth: float = 10.0  # one block scaling the stream's rms by more (zoo max 2.5)
    weight_gain2: float = 4.0  # Pre-LN stack: upper-quartile σ²·fan_in / critical (healthy ≤ 1)
    post_ln_blocks: int = 18  # Post-LN this deep needs warm-up (Liu et al. 2020: 18 failed)
    post_ln_growth: float = 1.25  # its gradient already grows this much towards the output
    narrow_width: float = 1.0  # Σ 1/width over a plain ReLU stack's hidden layers
    min_layers: int = 3  # fewer weight layers: no depth profile to judge
    min_dead_batch: int = 16  # examples a step needs before its dead units are judged
    # -- training time (docs/DIAGNOSIS.md, "Training-time"): the loss curve, then the layers
    min_loss_steps: int = 20  # loss values needed before the curve is judged (NaN/Inf always)
    not_learning_drop: float = 0.1  # the smoothed loss fell less than this share of its start
    # a fall of more than this many step-to-step sigmas is movement, whatever the loss's level:
    # a flat curve's start − best is ~0.4 ± 0.8 σ̂ (the median of 3 losses less the minimum of
    # the smoothed curve); on the corpus's flat runs 0.1–1.9 σ̂, a loss + 100 that learns 37 σ̂
    not_learning_noise: float = 3.0
    stall_level: float = 0.5  # a plateau above this share of the start is a stall, not the end
    stall_fraction: float = 0.3  # ... when it lasts at least this share of the run
    diverge_rise: float = 0.5  # rise above the best, as a share of max(fall so far, best)
    spike_mads: float = 10.0  # a loss above the rolling median by this many robust sigmas ...
    spike_rise: float = 0.25  # ... and by this share of the median is a spike
    spike_start_share: float = 0.1  # spikes rising less than this share of the start: info
    oscillation_amplitude: float = 0.15  # robust σ of the late loss's scatter, share of the start
    early_update_steps: int = 20  # update ratios judged step by step up to this step
    attention_logit: float = 100.0  # max q·k/√d: softmax is one-hot long before (e^100)
    input_rms: float = 10.0  # the model's float input: rms over this is off the unit scale
    logit_rms: float = 4.0  # the head's logits at init: softmax near one-hot above it
    attention_growth: float = 2.0  # ... and grown this many times its first recorded value
    overflow_fraction: float = 0.1  # max|x| / the dtype's largest finite value (float16 65504)
    time_exploding_ratio: float = 1e2  # ∂L/∂x at t=0 over its value at the last time step
    grad_norm_growth: float = 1e2  # global gradient norm over its median of the first steps
    early_update_ratio: float = 0.25  # ‖Δw‖/‖w‖ of one of the first steps (Adam's ≈ lr/rms w)
    stream_growth: float = 1e3  # a transformer block's output rms over its first logged value

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            integer = f.type in (int, "int")
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds):
                what = "an integer" if integer else "a number"
                raise InvalidInputError(f"Thresholds.{f.name} must be {what}, got {value!r}")
            if not math.isfinite(value):
                raise InvalidInputError(f"Thresholds.{f.name} must be finite, got {value}")
        for rule in _RULES:
            rule(self)


def _between(*names_and_bounds):
    """A check that each named field lies in its (low, high, low_open, high_open) range."""

    def check(t: Thresholds) -> None:
        for name, lo, hi, lo_open, hi_open in names_and_bounds:
            v = getattr(t, name)
            if (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
                left, right = "(" if lo_open else "[", ")" if hi_open else "]"
                default = _DEFAULTS[name]
                raise InvalidInputError(
                    f"Thresholds.{name} = {v:g} is outside its range {left}{lo:g}, {hi:g}{right}"
                    f" (default {default:g})"
                )

    return check


def _ordered(low: str, high: str, what: str):
    def check(t: Thresholds) -> None:
        if getattr(t, low) > getattr(t, high):
            raise InvalidInputError(
                f"Thresholds.{low} = {getattr(t, low):g} is above {high} = "
                f"{getattr(t, high):g}: {what} (defaults {_DEFAULTS[low]:g} and"
                f" {_DEFAULTS[high]:g})"
            )

    return check


_EXTREME = "the error line must be the more extreme one"
_RULES = (
    _between(
        ("vanishing_ratio", 0, 1, True, False),
        ("vanishing_error_ratio", 0, 1, True, False),
        ("exploding_ratio", 1, math.inf, False, True),
        ("exploding_error_ratio", 1, math.inf, False, True),
        ("time_ratio", 0, 1, True, False),
        ("time_reach_fraction", 0, 1, False, False),
        ("time_min_reach", 1, math.inf, False, True),
        ("time_ungated_reach", 1, math.inf, False, True),
        ("saturated_fraction", 0, 1, False, True),
        ("saturated_error_fraction", 0, 1, False, True),
        ("saturated_alone_fraction", 0, 1, False, False),
        ("dead_fraction", 0, 1, False, True),
        ("dead_error_fraction", 0, 1, False, True),
        ("min_dead_batch", 1, math.inf, False, True),
        ("large_update_ratio", 0, math.inf, True, True),
        ("small_update_ratio", 0, math.inf, True, True),
        ("block_rate", 1, math.inf, False, True),
        ("block_growth", 1, math.inf, True, True),
        ("weight_gain2", 0, math.inf, True, True),
        ("post_ln_blocks", 2, math.inf, False, True),
        ("post_ln_growth", 1, math.inf, False, True),
        ("narrow_width", 0, math.inf, True, True),
        ("min_layers", 2, math.inf, False, True),
        ("min_loss_steps", 4, math.inf, False, True),
        ("not_learning_drop", 0, 1, True, True),
        ("not_learning_noise", 0, math.inf, True, True),
        ("stall_level", 0, 1, False, True),
        ("stall_fraction", 0, 1, True, True),
        ("diverge_rise", 0, math.inf, True, True),
        ("spike_mads", 0, math.inf, True, True),
        ("spike_rise", 0, math.inf, False, True),
        ("spike_start_share", 0, math.inf, False, True),
        ("oscillation_amplitude", 0, math.inf, True, True),
        ("early_update_steps", 1, math.inf, False, True),
        ("attention_logit", 0, math.inf, True, True),
        ("attention_growth", 1, math.inf, False, True),
        ("input_rms", 0, math.inf, True, True),
        ("logit_rms", 0, math.inf, True, True),
        ("overflow_fraction", 0, 1, True, True),
        ("time_exploding_ratio", 1, math.inf, True, True),
        ("grad_norm_growth", 1, math.inf, True, True),
        ("early_update_ratio", 0, math.inf, True, True),
        ("stream_growth", 1, math.inf, True, True),
    ),
    _ordered("vanishing_error_ratio", "vanishing_ratio", _EXTREME),
    _ordered("exploding_ratio", "exploding_error_ratio", _EXTREME),
    _ordered("saturated_fraction", "saturated_error_fraction", "the error fraction is the larger"),
    _ordered("saturated_fraction", "saturated_alone_fraction", "a lone layer's line is the larger"),
    _ordered("dead_fraction", "dead_error_fraction", "the error fraction is the larger"),
    _ordered("small_update_ratio", "large_update_ratio", "small updates are the smaller ratio"),
)

_FIELDS = tuple(f.name for f in dataclasses.fields(Thresholds))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Thresholds)}

if not TYPE_CHECKING:  # type checkers see the dataclass __init__ (and catch typos there)
    _dataclass_init = Thresholds.__init__

    @functools.wraps(_dataclass_init)
    def _init(self, *args, **kwargs):
        unknown = [k for k in kwargs if k not in _FIELDS]
        if unknown:
            hints = {k: difflib.get_close_matches(k, _FIELDS, n=1) for k in unknown}
            said = ", ".join(
                f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items()
            )
            raise InvalidInputError(f"Thresholds has no {said}; valid names: {', '.join(_FIELDS)}")
        if len(args) > len(_FIELDS):
            raise InvalidInputError(
                f"Thresholds takes at most {len(_FIELDS)} values, got {len(args)}; pass them by"
                f" name ({', '.join(_FIELDS)})"
            )
        _dataclass_init(self, *args, **kwargs)

    Thresholds.__init__ = _init
