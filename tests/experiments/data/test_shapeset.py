import math

import pytest
import torch

from gradprobe.errors import GradprobeError
from gradprobe.experiments.data import shapeset
from gradprobe.experiments.data.shapeset import CLASSES, ELLIPSE, PARALLELOGRAM, TRIANGLE

# Flusser's first affine moment invariant (mu20 mu02 - mu11^2) / mu00^4 of the continuous
# shapes: the same for every triangle, every parallelogram, every ellipse. An independent
# reference: it is computed from the pixels, not from what the generator says it drew.
INVARIANT = {TRIANGLE: 1 / 108, PARALLELOGRAM: 1 / 144, ELLIPSE: 1 / (16 * math.pi**2)}


def affine_invariant(mask: torch.Tensor) -> torch.Tensor:
    m = mask.double()
    yy, xx = torch.meshgrid(
        *(torch.arange(s, dtype=torch.float64) for s in m.shape[-2:]), indexing="ij"
    )
    area = m.sum((-2, -1))
    cx, cy = (m * xx).sum((-2, -1)) / area, (m * yy).sum((-2, -1)) / area
    dx, dy = xx - cx[..., None, None], yy - cy[..., None, None]
    mu20, mu02, mu11 = ((m * a * b).sum((-2, -1)) for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    return (mu20 * mu02 - mu11**2) / area**4


def nearest_kind(invariant: torch.Tensor) -> torch.Tensor:
    ref = torch.tensor([INVARIANT[k] for k in (TRIANGLE, PARALLELOGRAM, ELLIPSE)])
    return (invariant[:, None] - ref).abs().argmin(1)


@pytest.fixture(scope="module")
def drawn():
    return shapeset.generate(2700, seed=0, return_shapes=True)


def test_shapes_and_pixel_range(drawn):
    x, y, _ = drawn
    assert x.shape == (2700, 1, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(9))
    assert x.min() >= -1 and x.max() <= 1


def test_classes_are_balanced(drawn):
    counts = drawn[1].bincount(minlength=9)
    assert counts.max() - counts.min() <= 1
    odd = shapeset.generate(100, seed=1)[1].bincount(minlength=9)
    assert odd.max() - odd.min() <= 1


def test_each_class_has_the_right_kinds_of_shapes(drawn):
    _, y, s = drawn
    for c, kinds in enumerate(CLASSES):
        got = s.kinds[y == c]
        assert (got[:, 0] == kinds[0]).all()
        assert (got[:, 1] == (kinds[1] if len(kinds) == 2 else -1)).all()
        second_drawn = s.masks[y == c, 1].flatten(1).any(1)
        assert second_drawn.all() if len(kinds) == 2 else not second_drawn.any()
    assert shapeset.CLASS_NAMES[3] == "triangle+parallelogram"
    assert shapeset.CLASS_NAMES[6] == "triangle+triangle"


def test_drawn_masks_are_the_shapes_they_claim(drawn):
    """The pixel masks' affine invariant names the same shape as the generator did."""
    _, _, s = drawn
    for slot in (0, 1):
        present = s.kinds[:, slot] >= 0
        kinds, inv = s.kinds[present, slot], affine_invariant(s.masks[present, slot])
        for k, ref in INVARIANT.items():
            assert inv[kinds == k].mean().item() == pytest.approx(ref, rel=0.03)
        accuracy = (nearest_kind(inv) == kinds).float().mean().item()
        assert accuracy > 0.97


def test_single_shape_images_show_their_shape(drawn):
    """From the image alone: the margin pixel is background, the rest is the shape."""
    x, y, _ = drawn
    single = y < 3
    img = x[single, 0]
    foreground = img != img[:, :1, :1]
    assert (nearest_kind(affine_invariant(foreground)) == y[single]).float().mean() > 0.97


def test_image_is_background_plus_the_two_shapes(drawn):
    x, _, s = drawn
    v = s.background[:, None, None].expand(-1, 32, 32)
    v = torch.where(s.masks[:, 0], s.grey[:, :1, None], v)
    v = torch.where(s.masks[:, 1], s.grey[:, 1:, None], v)
    v = torch.where(s.inverted[:, None, None], 1 - v, v)
    assert torch.allclose(x[:, 0], 2 * v - 1)
    border = torch.cat(
        [s.masks[..., 0, :], s.masks[..., -1, :], s.masks[..., 0], s.masks[..., -1]], -1
    )
    assert not border.any()  # the 1-pixel margin
    assert ((s.background >= 0) & (s.background <= 0.45)).all()
    assert ((s.grey >= 0.55) & (s.grey <= 1)).all()
    assert 0.4 < s.inverted.float().mean() < 0.6


def test_scale_and_overlap(drawn):
    _, _, s = drawn
    present = s.masks.flatten(2).any(2)
    rows, cols = s.masks.any(3), s.masks.any(2)  # (N, 2, 32): which rows/cols a shape touches
    for extent in (rows.sum(2)[present], cols.sum(2)[present]):
        # bounding box 0.2-0.8 of 32 pixels = 6.4-25.6, counted in whole pixels
        assert extent.min() >= 5 and extent.max() <= 27
    two = present[:, 1]
    overlap = (s.masks[two, 0] & s.masks[two, 1]).sum((1, 2))
    smaller = s.masks[two].sum((2, 3)).min(1).values
    assert (2 * overlap <= smaller).all()
    assert (overlap > 0).any()  # overlap is allowed, and happens


def test_seeded():
    a, ya = shapeset.generate(50, seed=7)
    b, yb = shapeset.generate(50, seed=7)
    c, _ = shapeset.generate(50, seed=8)
    assert torch.equal(a, b) and torch.equal(ya, yb) and not torch.equal(a, c)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_n(n):
    with pytest.raises(GradprobeError, match="positive integer"):
        shapeset.generate(n)
