"""Every recorded number against an independent reference computed with plain autograd."""

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(12, 40), nn.Tanh(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 7)
    )  # fmt: skip


def _values(run, step=0):
    df = run.to_pandas()
    df = df[df.step == step]
    return {(r.layer, r.quantity, r.stat): r.value for r in df.itertuples()}


def _reference(model, x, y):
    """Run the Sequential by hand, retain_grad on every output: the independent reference."""
    outs, h = [], x
    for layer in model:
        h = layer(h)
        h.retain_grad()
        outs.append(h)
    loss = nn.functional.cross_entropy(h, y)
    loss.backward()
    return outs, loss


def test_activation_grad_and_param_stats_match_autograd():
    model = _mlp()
    x, y = torch.randn(32, 12) * 3, torch.randint(0, 7, (32,))
    with gp.watch(model) as probe:
        nn.functional.cross_entropy(model(x), y).backward()
        probe.step()
    v = _values(probe.run)
    ref = _mlp()
    outs, _ = _reference(ref, x, y)
    for i, o in enumerate(outs):
        a, g = o.detach(), o.grad
        name = str(i)
        assert v[(name, "activation", "mean")] == pytest.approx(a.mean().item(), abs=1e-6)
        assert v[(name, "activation", "std")] == pytest.approx(a.std().item(), rel=1e-5)
        assert v[(name, "activation", "rms")] == pytest.approx(a.pow(2).mean().sqrt().item(), 1e-5)
        assert v[(name, "activation", "max_abs")] == pytest.approx(a.abs().max().item(), 1e-6)
        assert v[(name, "activation", "nonfinite")] == 0
        assert v[(name, "grad_output", "norm")] == pytest.approx(g.norm().item(), rel=1e-5)
        assert v[(name, "grad_output", "std")] == pytest.approx(g.std().item(), rel=1e-5)
        assert v[(name, "grad_output", "max_abs")] == pytest.approx(g.abs().max().item(), 1e-6)
    for (pname, p), (_, pref) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert v[(pname, "param_grad", "norm")] == pytest.approx(pref.grad.norm().item(), 1e-5)
        assert v[(pname, "param_grad", "std")] == pytest.approx(pref.grad.std().item(), 1e-5)
        assert v[(pname, "param_grad", "max_abs")] == pytest.approx(
            pref.grad.abs().max().item(), 1e-6
        )
        assert v[(pname, "weight", "norm")] == pytest.approx(p.detach().norm().item(), 1e-6)
    assert v[("(input)", "activation", "std")] == pytest.approx(x.std().item(), rel=1e-5)


def test_dead_units_by_brute_force():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 50), nn.ReLU(), nn.Linear(50, 1))
    with torch.no_grad():
        model[0].bias[:20] = -100.0  # 20 units dead for sure, others by chance
    x = torch.randn(8, 6)
    with gp.watch(model) as probe:
        model(x).sum().backward()
        probe.step()
    h = model[1](model[0](x)).detach()
    dead = 0
    for unit in range(h.shape[1]):
        if all(h[b, unit].item() <= 0 for b in range(h.shape[0])):
            dead += 1
    assert dead >= 20
    frac_zeros = (h == 0).float().mean().item()
    got = _values(probe.run)[("1", "activation", "dead")]
    assert got == pytest.approx(dead / 50)
    assert got != pytest.approx(frac_zeros)  # units, not zeros


def test_dead_units_per_unit_over_batch_for_conv_maps():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 1, 1))
    x = torch.randn(4, 2, 5, 5)
    with gp.watch(model) as probe:
        model(x).sum().backward()
        probe.step()
    h = model[1](model[0](x)).detach()
    dead = sum(
        all(h[b, c, i, j] <= 0 for b in range(4))
        for c in range(3)
        for i in range(5)
        for j in range(5)
    )
    assert _values(probe.run)[("1", "activation", "dead")] == pytest.approx(dead / 75)


@pytest.mark.parametrize(
    ("act", "lo", "hi"),
    [(nn.Tanh(), -1, 1), (nn.Sigmoid(), 0, 1), (nn.Hardtanh(-2, 2), -2, 2)],
)
def test_saturation_against_the_functions_own_bounds(act, lo, hi):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 64), act, nn.Linear(64, 1))
    x = torch.randn(50, 5) * 4
    with gp.watch(model) as probe:
        model(x).sum().backward()
        probe.step()
    h = act(model[0](x)).detach().flatten().tolist()
    tol = 0.01 * (hi - lo)
    sat = sum((v - lo) <= tol or (hi - v) <= tol for v in h) / len(h)
    assert 0.05 < sat < 0.95  # the test data exercises both sides of the threshold
    assert _values(probe.run)[("1", "activation", "saturated")] == pytest.approx(sat)


@pytest.mark.parametrize("every", [1, 2])
def test_update_ratio_is_norm_of_step_over_norm_of_weights(every):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x, y = torch.randn(16, 12), torch.randint(0, 7, (16,))
    before = {}
    with gp.watch(model, every=every, updates=1) as probe:
        for _ in range(3):
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    v = _values(probe.run, step=2)
    for n, p in model.named_parameters():
        want = (p.detach() - before[n]).norm() / before[n].norm()
        assert v[(n, "update", "ratio")] == pytest.approx(want.item(), rel=1e-4)
    assert probe.run.steps == ([0, 2] if every == 2 else [0, 1, 2])


def test_weight_norm_is_of_the_weights_the_step_used():
    """‖w‖ is taken in the backward (the weights are in cache there): the weights that made
    the step's activations and gradients, before the optimizer's update; a parameter the
    backward did not reach gets it at probe.step()."""
    model = _mlp()
    unused = nn.Linear(3, 3)
    model.add_module("unused", unused)  # in the model, never called
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(16, 12), torch.randint(0, 7, (16,))
    with gp.watch(model) as probe:
        for _ in range(2):
            used = {n: p.detach().norm().item() for n, p in model.named_parameters()}
            nn.functional.cross_entropy(model[:-1](x), y).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    v = _values(probe.run, step=1)
    for n, p in model.named_parameters():
        want = used[n] if not n.startswith("unused") else p.detach().norm().item()
        assert v[(n, "weight", "norm")] == pytest.approx(want, rel=1e-6), n
    assert model[0].weight.norm().item() != pytest.approx(used["0.weight"], rel=1e-6)


@pytest.mark.parametrize(
    ("every", "updates", "want"),
    [
        # every logged step before EARLY_STEPS (20), then at least 10 steps apart (the default)
        (1, True, [*range(20), 20]),
        (3, True, [0, 3, 6, 9, 12, 15, 18, 24]),  # then the first logged step 10 or more after
        (1, 7, [*range(20), 21]),
        (5, 1, [0, 5, 10, 15, 20]),  # every logged step
        (1, False, []),
    ],
)
def test_update_ratio_is_measured_on_logged_steps_at_least_n_apart(every, updates, want):
    assert gp.probe.EARLY_STEPS == gp.probe.Probe.EARLY_STEPS == 20
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 12), torch.randint(0, 7, (8,))
    with gp.watch(model, every=every, updates=updates) as probe:
        for _ in range(25):
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    df = probe.run.to_pandas()
    got = sorted(set(df[(df.quantity == "update") & (df.stat == "ratio")].step))
    assert got == want
    assert set(df[df.quantity == "weight"].step) == set(probe.run.steps)  # ‖w‖: every logged


def test_histogram_counts_by_brute_force_with_special_bins():
    model = nn.Sequential(nn.Linear(4, 4), nn.Identity())
    x = torch.tensor(
        [[0.0, 1.0, -2.0, float("nan")], [float("inf"), -float("inf"), 0.5, 0.0]]
    ).repeat(3, 1)
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4))
        model[0].bias.zero_()
    with gp.watch(model, histograms=True, bins=8) as probe:
        model(x)
        probe.step()
    h = probe.run.histogram("(input)", "activation", 0)
    vals = x.flatten().tolist()
    finite = [v for v in vals if np.isfinite(v)]
    assert h.nan == sum(np.isnan(v) for v in vals)
    assert h.posinf == 3 and h.neginf == 3
    assert h.zero == sum(v == 0 for v in finite)
    assert h.hi == pytest.approx(2.0, rel=1e-3) and h.lo == -h.hi
    edges = h.edges
    for i in range(8):  # bins are (e_i, e_i+1], exact zeros excluded
        want = sum(edges[i] < v <= edges[i + 1] and v != 0 for v in finite)
        assert h.counts[i] == want, i
    assert h.counts.sum() + h.zero + h.nan + h.posinf + h.neginf + h.below + h.above == 24


@pytest.mark.parametrize("bins", [254, 256, 600])  # uint8 bin indices up to 254 bins
def test_histogram_counts_by_brute_force_for_many_bins(bins):
    torch.manual_seed(bins)
    model = nn.Sequential(nn.Linear(4, 300), nn.Identity())
    x = torch.randn(50, 4)
    with gp.watch(model, histograms=True, bins=bins) as probe:
        model(x)
        probe.step()
    h = probe.run.histogram("1", "activation", 0)
    vals = model(x).detach().flatten().double().numpy()
    edges = h.edges
    want = [
        int(((vals > edges[i]) & (vals <= edges[i + 1]) & (vals != 0)).sum()) for i in range(bins)
    ]
    assert h.counts.tolist() == want
    assert h.counts.sum() + h.zero == vals.size and h.below == h.above == 0


def test_fixed_range_histogram_counts_out_of_range_values():
    model = nn.Sequential(nn.Linear(3, 200), nn.Identity())
    torch.manual_seed(4)
    with gp.watch(model, histograms=True, bins=4, hist_range=0.1) as probe:
        model(torch.randn(5, 3) * 3).sum().backward()
        probe.step()
    h = probe.run.histogram("1", "activation", 0)
    assert (h.lo, h.hi) == pytest.approx((-0.1, 0.1))
    assert h.below > 0 and h.above > 0
    assert h.counts.sum() + h.below + h.above + h.zero == 1000
    g = probe.run.histogram("1", "grad_output", 0)
    assert g.counts.sum() + g.below + g.above + g.zero == 1000


def test_finite_data_gives_no_nan_in_the_table():
    """Undefined stats (std of one value, update ratio of all-zero weights) are left out
    rather than stored as NaN, which would read as a NaN in the data."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 1))
    nn.init.zeros_(model[0].bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, updates=1) as probe:
        for _ in range(2):
            model(torch.randn(5, 3)).sum().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    df = probe.run.to_pandas()
    assert np.isfinite(df.value).all(), df[~np.isfinite(df.value)]
    v = _values(probe.run, step=0)
    assert ("1.weight", "param_grad", "std") not in v  # PReLU's single slope
    assert ("0.bias", "update", "ratio") not in v  # ‖w_prev‖ = 0
    assert ("0.bias", "update", "ratio") in _values(probe.run, step=1)


def test_range_used_of_bfloat16_tensors_and_the_layer_dtypes():
    """``max|x| / finfo(dtype).max`` of low-precision outputs and gradients, by hand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).to(torch.bfloat16)
    outs, grads = {}, {}
    for name, m in model.named_children():
        m.register_forward_hook(lambda m, a, o, name=name: outs.__setitem__(name, o.detach()))
        m.register_full_backward_hook(
            lambda m, gi, go, name=name: grads.__setitem__(name, go[0].detach())
        )
    x = (torch.randn(5, 8, dtype=torch.bfloat16) * 100).requires_grad_()
    with gp.watch(model) as probe:
        (model(x).float() * 3e3).sum().backward()
        probe.step()
    v = {(la, q, s): val for _, la, q, s, val in probe.run.rows()}
    top = torch.finfo(torch.bfloat16).max
    for name in ("0", "1", "2"):
        want = outs[name].abs().max().float().item() / top
        assert v[(name, "activation", "range_used")] == pytest.approx(want, rel=1e-6)
        want = grads[name].abs().max().float().item() / top
        assert v[(name, "grad_output", "range_used")] == pytest.approx(want, rel=1e-6)
    assert v[("0.weight", "param_grad", "range_used")] == pytest.approx(
        model[0].weight.grad.abs().max().float().item() / top, rel=1e-6
    )
    assert probe.run.meta["layer_dtypes"] == {
        "(input)": "bfloat16", "0": "bfloat16", "1": "bfloat16", "2": "bfloat16"
    }  # fmt: skip
    f32 = _mlp()  # float32 tensors have no range_used row
    with gp.watch(f32) as probe:
        f32(torch.randn(4, 12)).sum().backward()
        probe.step()
    assert not any(s == "range_used" for _, s in probe.run.quantities())
    assert set(probe.run.meta["layer_dtypes"].values()) == {"float32"}


# -- large tensors: what is exact, what is sampled (docs/PROBE.md) ----------------------------
from gradprobe.probe import _sample  # noqa: E402
from gradprobe.probe import reducers as R  # noqa: E402


@pytest.mark.parametrize("shape", [(128, 1000), (16, 64, 512), (8, 64, 32, 32), (4, 3, 1, 9000)])
def test_a_sample_keeps_every_feature_and_spreads_over_examples(shape):
    x = torch.randn(shape)
    v = _sample.sample_view(x)
    assert v.shape[-1] == shape[-1]  # whole rows: no stride can alias with the features
    assert v.shape[0] >= min(shape[0], _sample.MIN_EXAMPLES) or v.numel() <= _sample.CAP
    assert v.numel() <= 2 * _sample.CAP
    assert torch.equal(v, _sample.sample_view(x.clone()))  # deterministic
    assert _sample.sample_view(torch.randn(10**6)).numel() == 10**6  # 1-dim: never sampled


def _one_forward(x, model=None):
    model = model or nn.Sequential(nn.Linear(x.shape[-1], 4), nn.Tanh())
    with gp.watch(model, histograms=True) as probe:
        model(x).pow(2).sum().div(2).backward()
        probe.step()
    return _values(probe.run), probe.run


def test_sampled_stats_of_a_large_tensor_are_within_their_stated_error(torch_ops):
    """2**21 Gaussian values (over MOMENT_CAP), torch's ops: the sums come from a 2**15-value
    sample; rms and std within 2 % (their standard error is ~0.4 %), the mean within 0.02
    std."""
    torch.manual_seed(0)
    x = torch.randn(64, 128, 256) * 3 + 0.5
    v, run = _one_forward(x)
    key = ("(input)", "activation")
    assert v[(*key, "rms")] == pytest.approx(x.pow(2).mean().sqrt().item(), rel=0.02)
    assert v[(*key, "std")] == pytest.approx(x.std().item(), rel=0.02)
    assert abs(v[(*key, "mean")] - x.mean().item()) < 0.02 * x.std().item()
    assert v[(*key, "max_abs")] == pytest.approx(x.abs().max().item(), rel=1e-7)  # exact
    assert v[(*key, "sampled")] == pytest.approx(R.sample_flat(x).numel() / x.numel())
    h = run.histogram("(input)", "activation", 0)
    assert int(h.counts.sum()) + h.below + h.above + h.zero == R.sample_flat(x).numel()
    # small tensors and parameter gradients are exact, with no "sampled" row
    assert ("0", "activation", "sampled") not in v
    assert ("0.weight", "param_grad", "sampled") not in v


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30])
def test_max_abs_and_nonfinite_are_exact_at_a_position_the_sample_skips(value):
    x = torch.randn(64, 128, 256)
    x[1, 3, 5] = value  # example 1 is not in the sample (every 4th example is)
    assert not (R.sample_flat(x) == value).any()
    v, run = _one_forward(x)
    key = ("(input)", "activation")
    if value == 1e30:
        assert v[(*key, "max_abs")] == pytest.approx(1e30, rel=1e-7)
        assert v[(*key, "nonfinite")] == 0
    else:
        assert v[(*key, "nonfinite")] == pytest.approx(1 / x.numel())
        assert not np.isfinite(v[(*key, "rms")])  # NaN/Inf data: NaN/Inf moments, as always
        assert run.first_nonfinite("forward").layer == "(input)"


def test_a_sample_that_misses_every_nonzero_value_falls_back_to_all_of_them():
    """Only the last sequence position is nonzero (a last-token head): the strided sample
    misses it; its sums are 0 while max|x| > 0, so the sums are taken over every value."""
    x = torch.zeros(32, 64, 1024)
    x[:, -1, :] = torch.randn(32, 1024)
    assert (R.sample_flat(x) == 0).all()
    v, _ = _one_forward(x)
    assert v[("(input)", "activation", "rms")] == pytest.approx(
        x.pow(2).mean().sqrt().item(), rel=1e-5
    )
    assert ("(input)", "activation", "sampled") not in v  # the sums read every value


def test_sampled_row_only_when_the_sums_were_sampled(torch_ops):
    """Regression (sampled row written after a fallback): a large tensor whose sums came from
    every value (the sample missed every nonzero value) gets no ``sampled`` row; one whose
    sums came from the sample does."""
    x = torch.zeros(32, 64, 1024)
    x[:, -1, :] = 1.0
    assert R.moments_from(x, None, R.sample_flat(x))[1] is False
    y = torch.randn(32, 64, 1024)
    assert R.moments_from(y, None, R.sample_flat(y))[1] is True
    v, _ = _one_forward(x)
    assert ("(input)", "activation", "sampled") not in v


@pytest.mark.skipif(R.FUSED is None, reason="the compiled one-pass reduction is not built")
def test_the_one_pass_reduction_reads_every_value_of_a_large_tensor():
    """With reducers.FUSED (one read gives min, max and float64 sums) a tensor over
    MOMENT_CAP gets exact sums, no ``sampled`` row; its histogram still reads the sample."""
    torch.manual_seed(0)
    x = torch.randn(64, 128, 256) * 3 + 0.5
    v, run = _one_forward(x)
    key = ("(input)", "activation")
    xd = x.double()
    assert v[(*key, "rms")] == pytest.approx(xd.pow(2).mean().sqrt().item(), rel=1e-9)
    assert v[(*key, "std")] == pytest.approx(xd.std().item(), rel=1e-9)
    assert v[(*key, "mean")] == pytest.approx(xd.mean().item(), rel=1e-9)
    assert (*key, "sampled") not in v
    h = run.histogram("(input)", "activation", 0)
    assert int(h.counts.sum()) + h.below + h.above + h.zero == R.sample_flat(x).numel()


def test_dead_units_of_a_large_tensor_keep_every_unit_and_say_on_how_many_examples():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 4096), nn.ReLU())
    with torch.no_grad():
        model[0].bias[:100] = -1e3  # 100 units dead on every example
    v, _ = _one_forward(torch.randn(512, 16), model)
    assert v[("1", "activation", "dead")] == pytest.approx(100 / 4096)
    assert v[("1", "activation", "dead_samples")] == 256  # every 2nd of 512 examples


@pytest.mark.parametrize("n", [10, 2**17, 2**19 + 7])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_amin_and_amax_propagate_nan_and_inf_on_the_cpu(n, bad):
    """What exactness rests on (torch 2.13): min and max of a tensor holding NaN/Inf are
    non-finite, with either kernel (``moments`` uses aminmax; histograms and others amin/amax)."""
    x = torch.randn(n)
    x[n // 3] = bad
    for lo, hi in (torch.aminmax(x), (x.amin(), x.amax())):
        assert not (np.isfinite(lo.item()) and np.isfinite(hi.item()))
    m = R.moments(x)
    assert int(m.nonfinite) == 1


@pytest.mark.parametrize("act", [nn.GELU(), nn.SiLU(), nn.ELU(), nn.LeakyReLU(), nn.Mish()])
def test_smooth_activation_got_a_meaningless_dead_row(act):
    """Issue 15: a negative output of GELU/SiLU/ELU still has a gradient; "<= 0 on every
    example" is no dead unit, so no dead / dead_samples row (ReLU keeps them)."""
    model = nn.Sequential(nn.Linear(8, 16), act)
    with torch.no_grad():
        model[0].bias[:4] = -50.0
    v, _ = _one_forward(torch.randn(32, 8), model)
    assert ("1", "activation", "dead") not in v
    assert ("1", "activation", "dead_samples") not in v
    relu = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    relu[0].load_state_dict(model[0].state_dict())
    v, _ = _one_forward(torch.randn(32, 8), relu)
    assert v[("1", "activation", "dead")] >= 4 / 16
