"""Which values of a large tensor the sampled statistics read (docs/PROBE.md, "What is exact,
what is sampled").

Histograms of an activation or output gradient of more than ``CAP`` values, and the sums
(mean, std, rms, norm), saturation and dead-unit maxima of one of more than ``MOMENT_CAP``,
read a view: whole examples at an even stride along dim 0, then, when one example is still
too big, an even stride along one more dim — never the last, so every feature (a Linear's
output unit) is in the sample in the same proportion and no stride can alias with a feature
dimension. Deterministic: the same shape gives the same positions. Min, max and NaN/Inf
counts always read every value (``reducers.moments``); parameter gradients and weights are
never sampled.
"""

from __future__ import annotations

import functools
import math

import torch

CAP = 1 << 15  # values: saturation and histograms of a larger tensor read a sample
MOMENT_CAP = 1 << 20  # values: the sums of a larger activation or output gradient too
MIN_EXAMPLES = 16  # a sample keeps at least this many examples (dim 0), when there are
DEAD_EXAMPLES = 64  # dead units: judged on at least this many examples, every unit kept


def _steps(shape: tuple[int, ...], cap: int, keep: int) -> tuple[int, int, int]:
    """``(s0, j, s1)`` for a tensor of ``shape``: keep every ``s0``-th example (dim 0), at
    least ``keep`` of them, and when that is still over ``cap`` values every ``s1``-th index
    of dim ``j``."""
    b, dim = shape[0], len(shape)
    per = max(math.prod(shape) // max(b, 1), 1)
    k = min(b, max(keep, cap // per, 1))
    s0 = -(-b // k)  # ceil: at most k examples, evenly spread
    m = -(-b // s0) * per
    if m <= cap or dim < 3:
        return s0, 0, 1
    j = dim - 2  # sequence positions (B, L, D), image rows (B, C, H, W): never the last
    if shape[j] == 1:
        j = max(range(1, dim - 1), key=lambda d: shape[d])
    return s0, j, min(-(-m // cap), shape[j])


def sample_view(x: torch.Tensor, cap: int = CAP) -> torch.Tensor:
    """A view of about ``cap`` values of ``x`` spread evenly over it (``x`` itself when it
    holds at most ``cap``): every ``s0``-th example (dim 0, at least ``MIN_EXAMPLES``), then,
    if one example is still too big, every ``s1``-th index of the second-to-last dim (a
    sequence position, an image row). Whole rows of the last dim are kept, so no stride can
    alias with a feature dimension. A 0/1-dim tensor is never sampled."""
    if x.numel() <= cap or x.dim() < 2:
        return x
    s0, j, s1 = _steps(tuple(x.shape), cap, MIN_EXAMPLES)
    v = x[::s0] if s0 > 1 else x
    if s1 > 1:
        index = [slice(None)] * x.dim()
        index[j] = slice(None, None, s1)
        v = v[tuple(index)]
    return v


@functools.lru_cache(maxsize=1024)
def sample_spec(shape: tuple[int, ...], cap: int = CAP) -> tuple[tuple, tuple] | None:
    """:func:`sample_view` of a contiguous tensor of ``shape`` as ``(sizes, strides)`` in
    values from its first one (what ``_fused.summary_f32`` reads); None: every value."""
    if math.prod(shape) <= cap or len(shape) < 2:
        return None
    s0, j, s1 = _steps(shape, cap, MIN_EXAMPLES)
    strides, step = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d], step = step, step * shape[d]
    sizes = list(shape)
    sizes[0], strides[0] = -(-shape[0] // s0), strides[0] * s0
    if s1 > 1:
        sizes[j], strides[j] = -(-shape[j] // s1), strides[j] * s1
    return tuple(sizes), tuple(strides)


def dead_view(x: torch.Tensor, cap: int = MOMENT_CAP) -> torch.Tensor:
    """The examples the dead-unit maxima are taken over: every ``s0``-th example (dim 0), at
    least ``DEAD_EXAMPLES`` of them (all of a smaller batch), every unit kept."""
    if x.numel() <= cap or x.dim() < 2:
        return x
    s0 = _steps(tuple(x.shape), cap, DEAD_EXAMPLES)[0]
    return x[::s0] if s0 > 1 else x


def unit_max(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-unit max over the batch (dim 0) — over :func:`dead_view`'s examples for a large
    tensor — and how many examples that was: a unit is dead when its max is ``<= 0``."""
    xf = x.detach()
    if xf.dim() < 2:
        return xf.amax().reshape(1), xf.numel()
    xf = dead_view(xf)
    return xf.reshape(xf.shape[0], -1).amax(0), xf.shape[0]
