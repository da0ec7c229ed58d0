"""What the stored weights say about the init a model already has.

A weight matrix's variance times its fan-in, ``g² = fan_in · ‖W‖² / numel`` (its squared
gain), is what the variance-preserving schemes set (He et al. 2015; LeCun et al. 1998):
2 for Kaiming before a ReLU, 1 for LeCun, 1/3 for PyTorch's ``reset_parameters``
(``kaiming_uniform(a=√5)``), ``gain² · 2 fan_in / (fan_in + fan_out)`` for Xavier. A remedy
that would re-initialise with the scheme the model already has is no remedy: the depth
rule then names the architecture instead (width, normalisation, a residual path).
"""

from __future__ import annotations

import math

import numpy as np

from .blocks import _WEIGHT_TYPES
from .context import Context

# the squared gain g² = σ² · fan_in each scheme gives a hidden layer (nonlinearity="auto")
SCHEME_GAIN2 = {
    ("kaiming_normal", "relu"): 2.0,
    ("kaiming_normal", "gelu"): 2.35,  # gp.init.gain("gelu")²: numeric
    ("kaiming_normal", "silu"): 2.81,
    ("lecun_normal", None): 1.0,
}
SAME_SCALE = 0.3  # |log g²_model - log g²_scheme| below log(1.3): the same init


def fan_in(module_type: str, shape: tuple[int, ...]) -> int:
    """Inputs per output unit: ``in_features`` of a Linear (Hugging Face's Conv1D stores the
    transpose), ``in_channels/groups · kernel`` of a convolution."""
    if module_type == "Conv1D":
        return int(shape[0])
    return int(math.prod(shape[1:]))


def hidden_gains(ctx: Context, with_size: bool = False) -> dict:
    """g² of each hidden weight matrix at the first logged step (the weights as initialised):
    the chain's weight layers, not embeddings, norms or the output layer. A parameter of a
    module that is not a known weight type with one dimension above 1 is a per-channel
    vector stored for broadcasting (RWKV's (1, 1, d) time-mix coefficients, up to 1 each:
    "σ² · fan_in" 11.5), not a matrix with a fan-in."""
    if not ctx.steps or ("weight", "norm") not in set(ctx.run.quantities()):
        return {}
    shapes = {la.name: la.shape for la in ctx.run.layers("param")}
    names, types = [], {}
    for b in ctx.chain:
        for la in b.layers:
            for p in la.matrices:
                shape = shapes.get(p)
                vector = la.module_type not in _WEIGHT_TYPES and sum(n > 1 for n in shape or ()) < 2
                if la.module_type != "Embedding" and shape and not vector:
                    names.append(p)
                    types[p] = la.module_type
    if not names:
        return {}
    norms = ctx.matrix("weight", "norm", names)[:, 0]
    out = {}
    for name, norm in zip(names, norms, strict=True):
        shape = shapes[name]
        if shape and np.isfinite(norm) and norm > 0:
            g2 = fan_in(types[name], shape) * float(norm) ** 2 / math.prod(shape)
            out[name] = (g2, math.prod(shape)) if with_size else g2
    return out


def has_scale(ctx: Context, gain2: float) -> bool:
    """Whether most hidden layers (three in four) already have squared gain ``gain2``: within
    ``SAME_SCALE``, or three standard errors of a variance estimated from ``numel`` Gaussian
    draws (√(2/numel): ±85% for a 5×5 layer) where that is wider."""
    gains = hidden_gains(ctx, with_size=True)
    if not gains:
        return False
    close = [
        abs(math.log(g / gain2)) < math.log(1 + max(SAME_SCALE, 3 * math.sqrt(2 / n)))
        for g, n in gains.values()
    ]
    return sum(close) >= 0.75 * len(close)


def typical_gain2(ctx: Context) -> float | None:
    """The median squared gain of the hidden layers (None without weight norms)."""
    gains = list(hidden_gains(ctx).values())
    return float(np.median(gains)) if gains else None


def narrow_sum(ctx: Context) -> tuple[float, list[int]]:
    """Σ 1/n_l over the hidden widths of a plain stack (Hanin & Rolnick 2018's β), and the
    widths: the output features (channels) of every weight layer of the chain but the first
    one's input."""
    shapes = {la.name: la.shape for la in ctx.run.layers("param")}
    widths = []
    for b in ctx.chain:
        for la in b.layers:
            for p in la.matrices:
                shape = shapes.get(p)
                if shape and la.module_type != "Embedding":
                    widths.append(int(shape[1] if la.module_type == "Conv1D" else shape[0]))
    return float(sum(1 / n for n in widths if n > 0)), widths
