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


# -- summary_f32 / reducers.summarise: everything a hook records of a tensor, in one call ----
def _by_torch_ops(x, sat, bins, r, pow2):
    """What the hooks queue without the kernel: moments, saturated_count of every value and
    the histogram of the sample, by torch's ops (FUSED off)."""
    fused, R.FUSED = R.FUSED, None
    try:
        mom = [float(v) for v in R.moments(x)]
        n_sat = None if sat is None else int(R.saturated_count(x, *sat))
        hist = None
        if bins:
            hist = R.histogram(R.sample_flat(x), bins, r, ext=tuple(mom[2:4]), pow2=pow2)
        return mom, n_sat, hist
    finally:
        R.FUSED = fused


SHAPES = [(7,), (3, 5), (128, 1000), (16, 64, 128), (16, 64, 512), (4, 3, 33, 40), (1, 9000, 8)]


OPTS = [(None, 64, None, False), ((-1.0, 1.0), 32, 2.5, False), ((0.0, 1.0), 64, None, True)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("opts", [*OPTS, (None, 0, None, False)])
def test_summarise_gives_the_numbers_of_the_torch_op_path(shape, opts):
    """Moments within float32 sums, the saturation count and the histogram of the sample
    (sample_view: the same values) bit for bit, the automatic range the same float."""
    sat, bins, r, pow2 = opts
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.tanh(torch.randn(shape, generator=g) * 2) if sat else torch.randn(shape, generator=g)
    x.view(-1)[:: max(x.numel() // 50, 1)] = 0.0
    got = R.summarise(x, R.Scratch(), sat, bins, r, pow2)
    mom, n_sat, hist = _by_torch_ops(x, sat, bins, r, pow2)
    _same(got.moments, _reference(x))
    assert got.moments[2:] == tuple(mom[2:])  # min, max, count: exact both ways
    assert got.saturated == n_sat
    if not bins:
        assert got.hist is None
        return
    assert got.hist[0] == hist[0]  # the range: the same float
    assert np.array_equal(got.hist[1], hist[1].numpy()) and got.hist[2] == int(hist[2])
    assert got.hist[3:] == (0, 0, 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: torch.randn(300, 200, generator=g).t(),  # strided: copied, then sampled
        lambda g: torch.randn(64, 80, generator=g).to(torch.bfloat16),
        lambda g: torch.randn(64, 700, generator=g).to(torch.float16),
    ],
)
def test_summarise_of_views_and_16_bit_tensors(make):
    x = make(torch.Generator().manual_seed(8))
    got = R.summarise(x, R.Scratch(), (-1.0, 1.0), 64)
    _, n_sat, hist = _by_torch_ops(x, (-1.0, 1.0), 64, None, False)
    _same(got.moments, _reference(x))
    assert got.saturated == n_sat and np.array_equal(got.hist[1], hist[1].numpy())


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_summarise_counts_nan_and_inf_and_leaves_their_histogram_to_the_torch_path(value):
    x = torch.randn(64, 1000, generator=torch.Generator().manual_seed(9))
    x[63, 999] = value  # a position the histogram's sample skips
    got = R.summarise(x, None, (-1.0, 1.0), 64)
    _same(got.moments, _reference(x))
    assert got.moments.nonfinite == 1 and got.hist is None
    assert got.saturated == int(R.saturated_count(x, -1.0, 1.0))  # Inf saturates, NaN not


def test_summary_reads_a_strided_view_row_by_row():
    """A view given by sizes and strides: the counts of exactly those values."""
    x = torch.randn(6, 10, 12, generator=torch.Generator().manual_seed(10))
    view = x[::2, ::3]  # (3, 4, 12), strides (240, 36, 1)
    counts = torch.zeros(18, dtype=torch.long)
    out = R.FUSED.summary_f32(
        x.data_ptr(), x.numel(), -1.0, -1.0, 16, 3.0, False, tuple(view.shape), view.stride(),
        counts.data_ptr(),
    )  # fmt: skip
    want = _torch_histogram(view.contiguous(), 16, 3.0)
    assert torch.equal(counts, want[1]) and out[7] == int(want[2]) and out[6] == 3.0


@pytest.mark.parametrize(
    "sizes, strides, msg",
    [((3, 4), (4, 2), "last stride"), ((3, 5), (4, 1), "inside"), ((0, 4), (4, 1), "sizes"),
     ((2, 4), (-4, 1), "strides"), ((2,), (4, 1), "tuples"),
     ((2, 2**62), (2**62, 1), "sizes")],
)  # fmt: skip
def test_summary_refuses_a_view_it_cannot_read_safely(sizes, strides, msg):
    x = torch.zeros(12)
    counts = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match=msg):
        R.FUSED.summary_f32(x.data_ptr(), 12, -1.0, -1.0, 8, 1.0, False, sizes, strides,
                            counts.data_ptr())  # fmt: skip


@pytest.mark.parametrize("args", [(0, 8, 1.0, 1), (12, 7, 1.0, 1), (12, 8, -1.0, 1),
                                  (12, 8, math.inf, 1), (12, 8, 1.0, 0)])  # fmt: skip
def test_summary_refuses_no_values_odd_bins_a_bad_range_or_no_counts(args):
    n, bins, r, with_counts = args
    x = torch.zeros(12)
    counts = torch.zeros(bins + 2, dtype=torch.long)
    with pytest.raises(ValueError, match="summary_f32"):
        R.FUSED.summary_f32(x.data_ptr(), n, -1.0, -1.0, bins, r, False, None, None,
                            counts.data_ptr() if with_counts else 0)  # fmt: skip


@pytest.mark.parametrize("shape", [(16, 64, 128), (128, 1000), (64, 3, 32, 32), (1, 4096, 64),
                                   (100, 1, 700), (2, 1, 9000), (40000,), (5, 5)])  # fmt: skip
def test_sample_spec_is_the_layout_of_sample_view(shape):
    from gradprobe.probe._sample import sample_spec, sample_view

    x = torch.empty(shape)
    v = sample_view(x)
    want = None if v is x else (tuple(v.shape), v.stride())
    assert sample_spec(shape) == want
    if want is not None:
        assert v.storage_offset() == 0


def test_the_probe_records_the_same_rows_with_and_without_the_kernel(monkeypatch):
    """In situ: a model with saturating, dying and plain layers, histograms on; the kernel's
    rows are the torch-op path's (moments within float32 sums, counts exactly)."""
    import gradprobe as gp

    def run():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(30, 400), torch.nn.Tanh(), torch.nn.Linear(400, 300),
            torch.nn.ReLU(), torch.nn.Linear(300, 5),
        )  # fmt: skip
        x, y = torch.randn(128, 30), torch.randint(0, 5, (128,))
        with gp.watch(model, every=1, histograms=True) as probe:
            for _ in range(2):
                model.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                probe.step()
        return probe.run

    fused = run()
    monkeypatch.setattr(R, "FUSED", None)
    ops = run()
    a, b = fused.to_pandas(), ops.to_pandas()
    assert len(a) == len(b) > 0
    keys = ["step", "layer", "quantity", "stat"]
    m = a.merge(b, on=keys, suffixes=("_f", "_o"), how="outer", indicator=True)
    assert (m["_merge"] == "both").all()
    assert np.allclose(m["value_f"], m["value_o"], rtol=2e-5, atol=1e-7, equal_nan=True)
    assert (m.loc[m["stat"] == "saturated", "value_f"] > 0).any()  # the count was taken
    for layer in ("0", "1", "3"):
        ha, hb = fused.histogram(layer, "activation", 1), ops.histogram(layer, "activation", 1)
        assert np.array_equal(ha.counts, hb.counts) and (ha.lo, ha.hi) == (hb.lo, hb.hi)


# -- sumsq_f32: weight norms and ‖w - w_prev‖ in one pass -----------------------------------
@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000, (1 << 20) + 3])
@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30])  # squares beyond float32's range
def test_sumsq_and_sqdiff_against_numpy_in_float64(n, scale):
    g = torch.Generator().manual_seed(n)
    x, y = torch.randn(n, generator=g) * scale, torch.randn(n, generator=g) * scale
    a, b = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
    assert R.FUSED.sumsq_f32(x.data_ptr(), n) == pytest.approx(float(np.dot(a, a)), rel=1e-12)
    want = float(np.dot(a - b, a - b))
    assert R.FUSED.sumsq_f32(x.data_ptr(), n, y.data_ptr()) == pytest.approx(want, rel=1e-12)


def test_sumsq_of_nan_and_inf_is_not_finite():
    x = torch.randn(100)
    x[37] = math.nan
    assert math.isnan(R.FUSED.sumsq_f32(x.data_ptr(), 100))
    x[37] = -math.inf
    assert R.FUSED.sumsq_f32(x.data_ptr(), 100) == math.inf


@pytest.mark.parametrize("args", [(0,), (-3,)])
def test_sumsq_refuses_no_values(args):
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="sumsq_f32"):
        R.FUSED.sumsq_f32(x.data_ptr(), *args)


def test_norm_of_and_norm_diff_agree_with_the_torch_path_and_leave_inputs_alone():
    g = torch.Generator().manual_seed(11)
    w, prev = torch.randn(300, 70, generator=g), torch.randn(300, 70, generator=g)
    kept = prev.clone()
    assert isinstance(R.norm_of(w), float)
    assert R.norm_of(w) == pytest.approx(float(torch.linalg.vector_norm(w.double())), rel=1e-12)
    d = R.norm_diff(prev, w)
    assert d == pytest.approx(
        float(torch.linalg.vector_norm(kept.double() - w.double())), rel=1e-12
    )
    assert torch.equal(prev, kept)  # nothing written
    strided = w.t()  # not contiguous: the torch path, a tensor
    assert float(R.norm_of(strided)) == pytest.approx(R.norm_of(w), rel=1e-6)


# -- attention_f32: the attention sample without a mask -----------------------------------


def _attention_reference(q, k, heads, kv, rows, scale, causal):
    """max logit, Σ entropy, min per-head mean entropy, in float64 numpy, by the definition:
    z = scale·q·k over the keys a row sees, p = softmax(z), H = -Σ p ln p."""
    q, k = q.double().numpy(), k.double().numpy()
    best, total, means = -np.inf, 0.0, []
    for h, g in zip(heads, kv, strict=True):
        ents = []
        for i in rows:
            keys = k[g, : min(i + 1, k.shape[1])] if causal else k[g]
            z = scale * keys @ q[h, i]
            p = np.exp(z - z.max())
            p /= p.sum()
            ents.append(float(-(p * np.log(p)).sum()))
            best = max(best, float(z.max()))
        total += sum(ents)
        means.append(np.mean(ents))
    return best, total, min(means)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("H", "Hk", "L", "S", "E"), [(4, 4, 64, 64, 32), (8, 2, 50, 70, 12), (3, 3, 5, 1, 7)]
)
def test_attention_f32_against_numpy_in_float64(H, Hk, L, S, E, causal):
    g = torch.Generator().manual_seed(H * 100 + S)
    # (B, L, H, E) transposed to (B, H, L, E), as attention code hands SDPA its q and k
    q = (torch.randn(2, L, H, E, generator=g) * 2).transpose(1, 2)[0]
    k = torch.randn(2, S, Hk, E, generator=g).transpose(1, 2)[0]
    heads = tuple(range(0, H, max(H // 4, 1)))[:4]
    kv = tuple(h // (H // Hk) for h in heads)
    rows = tuple(range(0, L, 3))
    got = R.FUSED.attention_f32(
        q.data_ptr(), q.stride(), k.data_ptr(), k.stride(), heads, kv, rows, S, E, 0.3, causal
    )
    want = _attention_reference(q, k, heads, kv, rows, 0.3, causal)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_attention_f32_of_a_nan_query_is_nan_like_amax():
    q, k = torch.randn(2, 8, 4), torch.randn(2, 8, 4)
    q[1, 3, 0] = math.nan
    got = R.FUSED.attention_f32(
        q.data_ptr(), q.stride(), k.data_ptr(), k.stride(), (0, 1), (0, 1), (0, 3), 8, 4, 1.0, False
    )
    assert math.isnan(got[0]) and math.isnan(got[1]) and math.isnan(got[2])


@pytest.mark.parametrize(
    "change",
    [{"heads": ()}, {"kv": (0,)}, {"rows": (-1,)}, {"S": 0}, {"q_strides": (4, 1)}],
    ids=["no heads", "kv heads differ", "negative row", "no keys", "two strides"],
)
def test_attention_f32_refuses_what_it_cannot_read(change):
    q = torch.randn(2, 8, 4)
    args = {"q_strides": q.stride(), "heads": (0, 1), "kv": (0, 1), "rows": (0, 1), "S": 8}
    args.update(change)
    with pytest.raises(ValueError, match="attention_f32"):
        R.FUSED.attention_f32(
            q.data_ptr(), args["q_strides"], q.data_ptr(), q.stride(), args["heads"],
            args["kv"], args["rows"], args["S"], 4, 1.0, False,
        )  # fmt: skip


def test_the_sdpa_sample_is_the_same_with_and_without_the_kernel(monkeypatch):
    from gradprobe.probe import _attention as A

    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 100, 6, 16, generator=g).transpose(1, 2)  # 6 heads, 100 queries
    k = torch.randn(2, 100, 3, 16, generator=g).transpose(1, 2)  # grouped key heads
    fused = [float(v) for v in A.sdpa_sample(q, k, is_causal=True)]
    monkeypatch.setattr(A, "_kernel", lambda: False)
    ops = [float(v) for v in A.sdpa_sample(q, k, is_causal=True)]
    assert fused == pytest.approx(ops, rel=1e-5, abs=1e-5)


def test_the_kernel_path_never_reads_past_what_sdpa_would_accept():
    """Shapes SDPA refuses (q and k of other widths, query heads that are no multiple of
    the key heads) never reach the kernel, which trusts its shapes: the general path
    raises (the probe's hook reports it), as SDPA then does."""
    from gradprobe.probe import _attention as A

    q = torch.randn(1, 6, 8, 16)
    for k in (torch.randn(1, 6, 8, 12), torch.randn(1, 4, 8, 16)):
        with pytest.raises((RuntimeError, IndexError)):
            A.sdpa_sample(q, k)
        with pytest.raises(RuntimeError):
            torch.nn.functional.scaled_dot_product_attention(q, k, k)
