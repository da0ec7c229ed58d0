"""Shapeset-3x2 (Glorot & Bengio 2010), generated: one or two shapes on a 32x32 grey image.

Shapes are triangle, parallelogram and ellipse; the 9 classes are :data:`CLASSES`. Each
shape is a canonical one (triangle with a random apex, parallelogram with a random skew,
ellipse with a random aspect ratio) under a random rotation, then stretched per axis so
that its bounding box spans a uniform 0.2-0.8 of the image per axis, and placed at a
uniform position inside a 1-pixel margin (so the border pixels are always background).
Each shape has its own grey level in [0.55, 1] over a background in [0, 0.45]; the
second shape is painted over the first and covers at most half of the smaller shape's
area; colours are inverted with probability 0.5; pixels are mapped to [-1, 1].

Vectorised in torch, on one thread (see ``_one_thread``). Measured on the 2-core
development machine with ``generate(20_000)``: about 16,000 images per CPU-second, and
8,000-16,000 images/s wall clock whether the machine was busy (load 4) or idle.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from ._common import Split, balanced_labels, check_count, check_seed, child_seeds

SIZE = 32
MARGIN = 1
SHAPES = ("triangle", "parallelogram", "ellipse")
TRIANGLE, PARALLELOGRAM, ELLIPSE = range(3)
CLASSES: tuple[tuple[int, ...], ...] = (
    (0,),
    (1,),
    (2,),
    (0, 1),
    (1, 2),
    (0, 2),
    (0, 0),
    (1, 1),
    (2, 2),
)
CLASS_NAMES = tuple("+".join(SHAPES[k] for k in c) for c in CLASSES)
_KINDS = torch.tensor([list(c) + [-1] * (2 - len(c)) for c in CLASSES])  # (9, 2), -1: absent
_CHUNK = 4096  # images rendered at once: bounds memory (4 edges x 1024 pixels per shape)
_MAX_TRIES = 200
N_TRAIN, N_TEST = 9_000, 1_800


@dataclass(frozen=True)
class Shapes:
    """What was drawn: ``kinds`` (N, 2) with -1 for no second shape, ``masks`` (N, 2, 32, 32)
    of each whole shape (before occlusion), ``grey`` (N, 2) and ``background`` (N,) levels
    in [0, 1] before inversion, and ``inverted`` (N,)."""

    kinds: torch.Tensor
    masks: torch.Tensor
    grey: torch.Tensor
    background: torch.Tensor
    inverted: torch.Tensor


def generate(n: int, seed: int = 0, *, return_shapes: bool = False):
    """``n`` images ``x`` (N, 1, 32, 32) in [-1, 1] and labels ``y`` (N,), balanced over 9
    classes; with ``return_shapes`` also a :class:`Shapes` record of what was drawn.

    >>> x, y = generate(18, seed=0)
    >>> x.shape, y.bincount().tolist()
    (torch.Size([18, 1, 32, 32]), [2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    n, seed = check_count("n", n), check_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    y = balanced_labels(n, len(CLASSES), gen)
    with _one_thread():
        parts = [_render(y[i : i + _CHUNK], gen) for i in range(0, n, _CHUNK)]
    x = torch.cat([p[0] for p in parts])
    shapes = Shapes(*(torch.cat([getattr(p[1], f) for p in parts]) for f in Shapes.__annotations__))
    return (x, y, shapes) if return_shapes else (x, y)


@contextlib.contextmanager
def _one_thread():
    """Many small ops: on a busy 2-core machine, two OpenMP threads wait on each other at
    every op and run 4x slower than one. The numbers do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load(n: int | None = None, n_test: int | None = None, seed: int = 0) -> Split:
    """Training and test sets from independent streams (default 9,000 and 1,800 images)."""
    train_seed, test_seed = child_seeds(seed)
    x, y = generate(N_TRAIN if n is None else n, train_seed)
    x_test, y_test = generate(N_TEST if n_test is None else n_test, test_seed)
    return Split(x, y, x_test, y_test)


def _render(y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, Shapes]:
    m = len(y)
    kinds = _KINDS[y]
    mask1 = torch.zeros(m, SIZE, SIZE, dtype=torch.bool)
    mask2 = torch.zeros_like(mask1)
    todo = torch.ones(m, dtype=torch.bool)
    for _ in range(_MAX_TRIES):  # rejection sampling of the pair: redraw both shapes
        idx = todo.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        mask1[idx] = _masks(kinds[idx, 0], gen)
        two = idx[kinds[idx, 1] >= 0]
        todo[idx] = False
        if len(two):
            mask2[two] = _masks(kinds[two, 1], gen)
            overlap = (mask1[two] & mask2[two]).sum((1, 2))
            smaller = torch.minimum(mask1[two].sum((1, 2)), mask2[two].sum((1, 2)))
            todo[two] = 2 * overlap > smaller
    else:  # pragma: no cover - each try succeeds with probability > 1/2
        raise RuntimeError("Shapeset: could not place two shapes; please report this")
    u = torch.rand(m, 4, generator=gen)
    background = 0.45 * u[:, 0]
    grey = 0.55 + 0.45 * u[:, 1:3]
    inverted = u[:, 3] < 0.5
    v = background[:, None, None].expand(m, SIZE, SIZE).clone()
    v = torch.where(mask1, grey[:, 0, None, None], v)
    v = torch.where(mask2, grey[:, 1, None, None], v)  # the second shape is on top
    v = torch.where(inverted[:, None, None], 1 - v, v)
    shapes = Shapes(kinds, torch.stack([mask1, mask2], 1), grey, background, inverted)
    return (2 * v - 1).unsqueeze(1), shapes


def _masks(kinds: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Boolean masks (m, 32, 32) of random shapes of the given kinds."""
    m = len(kinds)
    u = torch.rand(m, 6, generator=gen)
    theta = 2 * math.pi * u[:, 0]
    cos, sin = theta.cos(), theta.sin()
    a = 2 * u[:, 1] - 1  # triangle apex in [-1, 1]; parallelogram skew a/2; ellipse aspect
    skew, aspect = a / 2, 0.4 + 0.6 * u[:, 1]
    # canonical polygon (m, 4, 2); a triangle repeats its apex (a degenerate 4th edge)
    w = 1 - skew.abs()
    tri = torch.stack(
        [-1 + 0 * a, -1 + 0 * a, 1 + 0 * a, -1 + 0 * a, a, 1 + 0 * a, a, 1 + 0 * a], 1
    )
    par = torch.stack(
        [-skew - w, -1 + 0 * a, -skew + w, -1 + 0 * a, skew + w, 1 + 0 * a, skew - w, 1 + 0 * a], 1
    )
    poly = torch.where((kinds == TRIANGLE)[:, None], tri, par).view(m, 4, 2)
    rx = cos[:, None] * poly[..., 0] - sin[:, None] * poly[..., 1]
    ry = sin[:, None] * poly[..., 0] + cos[:, None] * poly[..., 1]
    is_ell = kinds == ELLIPSE
    # bounding box of the rotated shape (ellipse: exact, centred)
    hx = torch.sqrt(cos**2 + (aspect * sin) ** 2)
    hy = torch.sqrt(sin**2 + (aspect * cos) ** 2)
    x0 = torch.where(is_ell, -hx, rx.amin(1))
    x1 = torch.where(is_ell, hx, rx.amax(1))
    y0 = torch.where(is_ell, -hy, ry.amin(1))
    y1 = torch.where(is_ell, hy, ry.amax(1))
    # stretch per axis so the box spans 0.2-0.8 of the image, place it inside the margin
    bw, bh = SIZE * (0.2 + 0.6 * u[:, 2]), SIZE * (0.2 + 0.6 * u[:, 3])
    kx, ky = bw / (x1 - x0), bh / (y1 - y0)
    left = MARGIN + u[:, 4] * (SIZE - 2 * MARGIN - bw)
    top = MARGIN + u[:, 5] * (SIZE - 2 * MARGIN - bh)
    cx, cy = left - kx * x0, top - ky * y0
    p = torch.arange(SIZE, dtype=torch.float32) + 0.5  # pixel centres
    px, py = p[None, None, :], p[None, :, None]
    out = torch.empty(m, SIZE, SIZE, dtype=torch.bool)
    e = is_ell.nonzero().squeeze(1)
    if len(e):  # back to canonical coordinates: inside if u^2 + (v / aspect)^2 <= 1
        dx = (px - cx[e, None, None]) / kx[e, None, None]
        dy = (py - cy[e, None, None]) / ky[e, None, None]
        qu = cos[e, None, None] * dx + sin[e, None, None] * dy
        qv = -sin[e, None, None] * dx + cos[e, None, None] * dy
        out[e] = qu**2 + (qv / aspect[e, None, None]) ** 2 <= 1
    q = (~is_ell).nonzero().squeeze(1)
    if len(q):  # convex polygon: the pixel centre is on the inner side of every edge
        vx = (kx[q, None] * rx[q] + cx[q, None])[..., None, None]  # (k, 4, 1, 1)
        vy = (ky[q, None] * ry[q] + cy[q, None])[..., None, None]
        ex, ey = vx.roll(-1, 1) - vx, vy.roll(-1, 1) - vy
        cross = ex * (py[None] - vy) - ey * (px[None] - vx)  # (k, 4, 32, 32)
        out[q] = (cross >= 0).all(1)  # counter-clockwise: rotation and stretch keep it so
    return out
