"""probe/_fused.c, the one-pass Σx, Σx², min, max, NaN/Inf count, against numpy in float64
(an independent reference), and against the torch-op path of ``reducers.moments``."""

import math

import numpy as np
import pytest
import torch

from gradprobe.probe import reducers as R

pytestmark = pytest.mark.skipif(R.FUSED is None, reason="the compiled module is not built")


def _reference(x: torch.Tensor):
    a = x.detach().float().numpy().astype(np.float64).ravel()
    bad = int((~np.isfinite(a)).sum())
    if np.isnan(a).any():
        lo = hi = math.nan
    else:
        lo, hi = float(a.min()), float(a.max())
    return float(a.sum()), float(np.dot(a, a)), lo, hi, bad


def _same(got, want):
    for g, w in zip(got, want, strict=True):
        if isinstance(w, float) and math.isnan(w):
            assert math.isnan(g)
        else:
            assert g == pytest.approx(w, rel=1e-12, abs=0.0), (got, want)


# every length around the 16 lanes and the tail loop, and large ones
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 31, 33, 1000, 4097, (1 << 20) + 5])
def test_sums_min_max_of_every_length(n):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 3 + 0.25
    _same(R.FUSED.moments_f32(x.data_ptr(), n), _reference(x))


@pytest.mark.parametrize("scale", [1e38, 1e19, 1e-20, 1e-40])
def test_exact_at_the_ends_of_the_float32_range(scale):
    """Squares beyond float32's range (1e38² overflows, 1e-40 is subnormal, its square
    underflows) are exact in the float64 accumulators."""
    x = (torch.rand(999, generator=torch.Generator().manual_seed(1)) + 0.5) * scale
    x[::2] *= -1
    assert torch.isfinite(x).all() and (x != 0).all()
    _same(R.FUSED.moments_f32(x.data_ptr(), x.numel()), _reference(x))


@pytest.mark.parametrize("where", [0, 7, 16, 998])  # first lane, a lane, a block, the tail
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_anywhere_are_counted_and_make_min_max_like_aminmax(where, value):
    x = torch.randn(999, generator=torch.Generator().manual_seed(2))
    x[where] = value
    x[500] = value
    got = R.FUSED.moments_f32(x.data_ptr(), x.numel())
    _same(got, _reference(x))
    lo, hi = torch.aminmax(x)
    assert (math.isnan(got[2]) and math.isnan(lo.item())) or got[2] == lo.item()
    assert (math.isnan(got[3]) and math.isnan(hi.item())) or got[3] == hi.item()
    assert got[4] == 2


def test_all_nan():
    x = torch.full((40,), math.nan)
    s, q, lo, hi, bad = R.FUSED.moments_f32(x.data_ptr(), 40)
    assert all(math.isnan(v) for v in (s, q, lo, hi)) and bad == 40


def test_an_empty_tensor_is_refused_not_read():
    with pytest.raises(ValueError, match="positive"):
        R.FUSED.moments_f32(0, 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: torch.randn(37, 53, generator=g).t(),  # non-contiguous: copied first
        lambda g: torch.randn(64, 40, generator=g)[:, ::3],
        lambda g: torch.randn(300, generator=g).to(torch.float16),
        lambda g: torch.randn(300, generator=g).to(torch.bfloat16),
        lambda g: torch.randn(5, 7, generator=g)[2],  # a view at an offset in its storage
        lambda g: torch.tensor(2.5),  # 0-dim
    ],
)
def test_moments_of_views_and_16_bit_tensors(make):
    x = make(torch.Generator().manual_seed(3))
    got = R.moments(x, R.Scratch())
    _same(got, _reference(x))


def test_the_torch_op_path_agrees(monkeypatch):
    """The two paths of ``reducers.moments`` give the same numbers (within float32 sums)."""
    x = torch.randn(128, 1000, generator=torch.Generator().manual_seed(4))
    fused = R.moments(x)
    monkeypatch.setattr(R, "FUSED", None)
    ops = [float(v) for v in R.moments(x)]
    assert fused[2:] == pytest.approx(ops[2:], rel=0, abs=0)  # min, max, count: exact both
    assert fused[0] == pytest.approx(ops[0], rel=1e-4, abs=1e-2)
    assert fused[1] == pytest.approx(ops[1], rel=1e-5)


def _torch_histogram(x, bins, r):
    """reducers.histogram by torch's ops (FUSED off): the reference the kernel must equal."""
    fused, R.FUSED = R.FUSED, None
    try:
        return R.histogram(x, bins, r)
    finally:
        R.FUSED = fused


@pytest.mark.parametrize("bins", [2, 8, 64, 254, 300])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 511, 512, 513, 5000])  # vector tail, block edges
def test_histogram_counts_are_those_of_torchs_ops_bit_for_bit(bins, n):
    g = torch.Generator().manual_seed(bins * n)
    r = 3.0
    # values on bin edges (ceil at an integer), just beside them, beyond the range, zeros
    edges = torch.randint(-bins, bins + 1, (n,), generator=g).float() * (r / (bins // 2))
    jitter = torch.randn(n, generator=g) * 1e-6
    x = torch.where(torch.rand(n, generator=g) < 0.5, edges, edges + jitter) * 1.1
    x[::5] = 0.0
    x[::11] = -0.0
    counts = torch.zeros(bins + 2, dtype=torch.long)
    got = R.FUSED.histogram_f32(x.data_ptr(), n, bins, r, counts.data_ptr())
    want = _torch_histogram(x, bins, r)
    assert torch.equal(counts, want[1])
    assert got == (int(want[2]), 0, 0, 0)


def test_histogram_of_nan_and_inf_bins_them_as_zero_and_counts_them():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(6))
    x[[3, 500]], x[17], x[999] = math.nan, math.inf, -math.inf
    counts = torch.zeros(66, dtype=torch.long)
    got = R.FUSED.histogram_f32(x.data_ptr(), 1000, 64, 2.0, counts.data_ptr())
    want = _torch_histogram(x, 64, 2.0)
    assert torch.equal(counts, want[1])
    assert got == tuple(int(v) for v in want[2:]) == (int(want[2]), 2, 1, 1)


@pytest.mark.parametrize(
    "args", [(8, 3, 1.0), (8, 64, 0.0), (8, 64, math.inf), (8, 64, math.nan), (-1, 64, 1.0)]
)
def test_histogram_refuses_odd_bins_a_bad_range_or_length(args):
    n, bins, r = args
    counts = torch.zeros(bins + 2, dtype=torch.long)
    x = torch.zeros(8)
    with pytest.raises(ValueError, match="histogram_f32"):
        R.FUSED.histogram_f32(x.data_ptr(), n, bins, r, counts.data_ptr())


def test_reducers_histogram_of_a_strided_view_uses_the_kernel_and_agrees():
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(7))[:, ::3]
    got = R.histogram(x, 32, scratch=R.Scratch())
    want = _torch_histogram(x, 32, None)
    assert got[0] == want[0] and torch.equal(got[1], want[1]) and int(got[2]) == int(want[2])
