"""Regression tests for the probe's bugs of issue 14 (one test per bug, named after it)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeWarning, InvalidInputError
from gradprobe.probe import reducers


def _values(run, step=0):
    return {(r[1], r[2], r[3]): r[4] for r in run.rows(step)}


def _mlp(seed=0, width=16):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width), nn.Tanh(), nn.Linear(width, 3))


# ----------------------------------------------------------------- the guard and LR schedulers
SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 4], gamma=0.5),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1 / (1 + s)),
    "ReduceLROnPlateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0),
    "LinearLR": lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.5, total_iters=4),
    "SequentialLR": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o,
        [
            torch.optim.lr_scheduler.LinearLR(o, start_factor=0.5, total_iters=2),
            torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
        ],
        milestones=[2],
    ),
}


def _batches(steps=8, poison=3):
    g = torch.Generator().manual_seed(5)
    out = []
    for s in range(steps):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        if s == poison:
            x[0, 0] = float("nan")
        out.append((x, y))
    return out


def _train(sched_name, how, opt_cls=torch.optim.SGD):
    """``how``: "guard first" / "scheduler first" (gp.guard), "watch" (watch(guard=True)),
    or "by hand" (the poisoned step skipped by the loop: no backward, no optimizer step)."""
    model = _mlp()
    kw = {"lr": 0.05, "momentum": 0.9} if opt_cls is torch.optim.SGD else {"lr": 0.01}
    opt = opt_cls(model.parameters(), **kw)
    guard = probe = None
    if how == "guard first":
        guard = gp.guard(model, opt)
    sched = SCHEDULERS[sched_name](opt)
    if how == "scheduler first":
        guard = gp.guard(model, opt)
    if how == "watch":
        probe = gp.watch(model, optimizer=opt, guard=True)
    for s, (x, y) in enumerate(_batches()):
        loss = nn.functional.cross_entropy(model(x), y)
        if not (how == "by hand" and s == 3):
            loss.backward()
            opt.step()
            opt.zero_grad()
        metric = 1.0 if s == 3 else float(loss.detach())  # the scheduler sees the same numbers
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(metric)
        else:
            sched.step()
    for closer in (guard, probe):
        if closer is not None:
            closer.close()
    return model, opt, guard or (probe.guard if probe else None), probe


@pytest.mark.parametrize("how", ["guard first", "scheduler first", "watch"])
@pytest.mark.parametrize("sched_name", list(SCHEDULERS))
def test_guard_with_lr_scheduler_raised_attribute_error_step_count(sched_name, how):
    """gp.guard patched optimizer.step and the scheduler wrapped it again: 'SGD' object has
    no attribute 'step_count'. Now: step hooks; the skipped step is exactly a skipped step."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()"
        model, opt, guard, probe = _train(sched_name, how)
    ref, ref_opt, *_ = _train(sched_name, "by hand")
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
    assert [s.step for s in guard.skipped] == [3]
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    if probe is not None:
        assert probe.run.steps == list(range(8))


def test_guard_skip_leaves_adam_state_exactly_as_skipping_by_hand():
    model, opt, *_ = _train("StepLR", "scheduler first", torch.optim.Adam)
    ref, ref_opt, *_ = _train("StepLR", "by hand", torch.optim.Adam)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        sa, sb = opt.state[p], ref_opt.state[q]
        assert float(sa["step"]) == float(sb["step"]) == 7
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


class CountingSGD(torch.optim.Optimizer):
    """An optimizer that moves its state (and the weights) even without gradients."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                st["k"] = st.get("k", 0) + 1
                with torch.no_grad():
                    p.mul_(0.99)
                    if p.grad is not None:
                        p.sub_(group["lr"] * p.grad)


@pytest.mark.parametrize("closure", [False, True])
def test_guard_skip_of_an_optimizer_that_updates_without_gradients_is_exact(closure):
    """Clearing the gradients is not enough for every optimizer (nor with a closure, which
    computes new ones): their weights and state are put back after the step."""

    def run(opt_cls, skip_by_hand):
        model = _mlp()
        opt = opt_cls(model.parameters(), lr=0.1) if opt_cls is torch.optim.SGD else None
        opt = opt or opt_cls(model.parameters())
        g = None if skip_by_hand else gp.guard(model, opt)
        for s, (x, y) in enumerate(_batches()):
            if skip_by_hand and s == 3:
                continue

            def fn(x=x, y=y):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss

            if closure:
                opt.step(fn)
            else:
                fn()
                opt.step()
        if g is not None:
            g.close()
        return model, opt, g

    opt_cls = torch.optim.SGD if closure else CountingSGD
    model, opt, g = run(opt_cls, False)
    ref, _, _ = run(opt_cls, True)
    assert [s.step for s in g.skipped] == [3]
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    if not closure:
        assert [opt.state[p]["k"] for p in model.parameters()] == [7] * 4


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2)])
def test_guards_closed_in_any_order_leave_the_optimizer_as_it_was(order):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    guards = [gp.guard(model, opt), gp.guard(model, opt, snapshot_every=0), gp.guard(model, opt)]
    x, y = _batches(1, poison=-1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sched.step()
    for i in order:
        guards[i].close()
        guards[i].close()  # idempotent
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert "step" not in opt.__dict__ or hasattr(opt.step, "_wrapped_by_lr_sched")
    before = [p.detach().clone() for p in model.parameters()]
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()  # the plain optimizer again
    assert all(guards[i].step_count == 1 for i in range(3))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_guard_with_sparse_gradients_crashed_in_foreach_norm():
    class Emb(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lin = nn.Embedding(10, 4, sparse=True), nn.Linear(4, 1)

        def forward(self, i):
            return self.lin(self.emb(i)).sum()

    model = Emb()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt, guard=True) as probe:
        for _ in range(2):
            model(torch.randint(0, 10, (5,))).backward()
            opt.step()
            opt.zero_grad()
    assert not probe.warnings  # moments of a sparse .grad failed inside the hook
    v = _values(probe.run)
    assert v[("emb.weight", "param_grad", "norm")] > 0
    assert probe.run.steps == [0, 1]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bogus": 1}, "unknown guard option.*'bogus'.*explode_factor"),
        ({"explode_factor": float("nan")}, "explode_factor"),
        ({"explode_factor": "big"}, "explode_factor"),
        ({"max_bad": 1.5}, "whole numbers"),
        ({"warmup": -1}, "whole numbers"),
        ({"ema": 0}, "ema"),
        ({"on_skip": 3}, "on_skip must be a function"),
    ],
)
def test_bad_guard_options_were_a_typeerror_or_silently_accepted(options, match):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidInputError, match=match):
        gp.guard(model, opt, **options)
    with pytest.raises(InvalidInputError, match=match):
        gp.watch(model, optimizer=opt, guard=options)
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


# ------------------------------------------------------------ moments across the float range
class Scale(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k


def _ref(a: torch.Tensor) -> dict:
    v = a.detach().double().numpy().ravel()
    return {
        "mean": v.mean(),
        "std": v.std(ddof=1),
        "rms": math.sqrt(np.mean(v * v)),
        "max_abs": np.abs(v).max(),
        "norm": math.sqrt(np.sum(v * v)),
    }


@pytest.mark.parametrize("magnitude", [1e-30, 1e30])
@pytest.mark.parametrize("device_path", [False, True])
def test_moments_were_inf_or_zero_at_extreme_magnitudes(monkeypatch, magnitude, device_path):
    """x·1e30: std recorded as inf (Σx² overflowed float32); gradients of 1e-30: rms 0 (Σx²
    underflowed). Now against float64 numpy on the very tensors, activations and gradients,
    on the CPU path and on the accelerator path."""
    if device_path:
        monkeypatch.setattr(reducers, "on_host", lambda device: False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), Scale(magnitude), nn.Linear(32, 3))
    x = torch.randn(64, 6) + 0.5
    outs = {}
    model[1].register_forward_hook(lambda m, a, o: outs.setdefault("a", o))
    with gp.watch(model) as probe:
        out = model(x)
        out.retain_grad()
        h = outs["a"]
        h.retain_grad()
        (out.sum() / magnitude).backward()  # ∂L/∂h ~ 1/magnitude: the other extreme
        probe.step()
    v = _values(probe.run)
    act, grad = _ref(h), _ref(h.grad)
    for stat in ("mean", "std", "rms", "max_abs"):
        assert v[("1", "activation", stat)] == pytest.approx(act[stat], rel=1e-5), stat
    for stat in ("std", "rms", "max_abs", "norm"):
        assert v[("1", "grad_output", stat)] == pytest.approx(grad[stat], rel=1e-5), stat
    w = _ref(model[2].weight.grad)
    assert v[("2.weight", "param_grad", "norm")] == pytest.approx(w["norm"], rel=1e-5)


def test_deep_tanh_net_reported_rms_zero_for_gradients_below_1e_23():
    """41 Linear+Tanh layers with weights of std 0.01, cross-entropy: the gradient shrinks
    ~0.06x per layer, below 1e-23 within ten layers and below float32's last denormal
    (1.4e-45) further down. Before: 48 of 81 modules read rms 0, 12 had max|x| 0. An rms of
    0 now means every value was 0, and the others match float64."""
    torch.manual_seed(0)
    layers = []
    for _ in range(41):
        lin = nn.Linear(32, 32)
        nn.init.normal_(lin.weight, std=0.01)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Tanh()]
    model = nn.Sequential(*layers[:-1])
    outs = []

    def keep(module, args, out):
        out.retain_grad()
        outs.append(out)

    for m in model:
        m.register_forward_hook(keep)
    x, y = torch.randn(64, 32), torch.randint(0, 32, (64,))
    with gp.watch(model) as probe:
        nn.functional.cross_entropy(model(x), y).backward()
        probe.step()
    v = _values(probe.run)
    rms = [v[(str(i), "grad_output", "rms")] for i in range(len(model))]
    mx = [v[(str(i), "grad_output", "max_abs")] for i in range(len(model))]
    assert [r == 0 for r in rms] == [m == 0 for m in mx]
    assert sum(0 < m < 1e-23 for m in mx) > 0  # the range that read 0 before
    for i, o in enumerate(outs):
        if mx[i] > 0:
            assert rms[i] == pytest.approx(_ref(o.grad)["rms"], rel=1e-5), i


def test_reducer_norm_of_tiny_and_huge_values_was_zero_or_inf():
    g = torch.Generator().manual_seed(0)
    for scale in (1e-30, 1e-22, 1e25, 1e30):
        t = torch.randn(1000, generator=g) * scale
        assert reducers.norm(t).item() == pytest.approx(_ref(t)["norm"], rel=1e-6), scale
    assert reducers.norm(torch.zeros(5)).item() == 0


def test_update_norms_of_tiny_updates_underflowed_to_zero():
    """Weights of 1e-20 moved by 1e-24: ‖Δw‖² ~ 1e-46 is below float32's range."""
    model = _mlp()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 1e-20)
    with gp.watch(model, updates=1) as probe:
        before = [p.detach().clone() for p in model.parameters()]
        model(torch.randn(4, 6)).sum().backward()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1e-24)
        probe.step()
    v = _values(probe.run)
    for (name, p), w0 in zip(model.named_parameters(), before, strict=True):
        true = (p.detach().double() - w0.double()).norm().item()
        assert v[(name, "update", "norm")] == pytest.approx(true, rel=1e-5), name
        assert v[(name, "update", "ratio")] == pytest.approx(true / w0.double().norm().item(), 1e-5)


# -------------------------------------------------------------------- zero recorded steps
def test_watch_without_step_recorded_zero_steps_without_a_warning():
    model = _mlp()
    with pytest.warns(GradprobeWarning, match="no step"), gp.watch(model) as probe:
        model(torch.randn(4, 6)).sum().backward()  # neither optimizer= nor probe.step()
    assert probe.run.steps == []
    assert probe.run.meta["steps_recorded"] == 0


def test_steps_recorded_is_stored_and_no_warning_when_steps_were_made():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt, every=2) as probe:
        for _ in range(5):
            model(torch.randn(4, 6)).sum().backward()
            opt.step()
            opt.zero_grad()
    assert probe.run.meta["steps_recorded"] == 3 == len(probe.run.steps)


def test_no_empty_run_warning_over_the_loops_own_exception():
    model = _mlp()
    with pytest.raises(ZeroDivisionError), gp.watch(model) as probe:
        model(torch.randn(4, 6))
        _ = 1 / 0
    assert probe.run.meta["steps_recorded"] == 0


# ------------------------------------------------------------------------- frozen parameters
def test_frozen_parameters_got_update_ratios_of_zero():
    """Fine-tuning with a frozen first layer: its update ratio read 0 (small_updates)."""
    model = _mlp()
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = _batches(1, poison=-1)[0]
    with gp.watch(model, optimizer=opt, updates=1) as probe:
        for step in range(4):
            if step == 2:  # unfrozen: its gradients and update ratio from this step on
                for p in model[0].parameters():
                    p.requires_grad_(True)
                opt.add_param_group({"params": list(model[0].parameters())})
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
    for step in (0, 1):
        v = _values(probe.run, step)
        for name in ("0.weight", "0.bias"):
            assert (name, "update", "ratio") not in v and (name, "param_grad", "norm") not in v
            assert (name, "weight", "norm") in v  # still known, and still recorded
        assert v[("2.weight", "update", "ratio")] > 0
    v = _values(probe.run, 2)  # w_prev is copied in its gradient hook: step 2's update too
    assert v[("0.weight", "param_grad", "norm")] > 0 and v[("0.weight", "update", "ratio")] > 0
    assert _values(probe.run, 3)[("0.weight", "update", "ratio")] > 0
    assert probe.run.meta["frozen_params"] == []  # the last logged step: none frozen


def test_frozen_parameters_are_listed_in_the_run():
    model = _mlp()
    model[2].bias.requires_grad_(False)
    with gp.watch(model) as probe:
        model(torch.randn(4, 6)).sum().backward()
        probe.step()
    assert probe.run.meta["frozen_params"] == ["2.bias"]


# ------------------------------------------------------------------------------ dead units
@pytest.mark.parametrize("batch", [1, 256])
def test_dead_units_on_a_batch_of_one_did_not_say_how_big_the_batch_was(batch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))
    with gp.watch(model) as probe:
        model(torch.randn(batch, 8)).sum().backward()
        model(torch.randn(3, 8)).sum().backward()  # a second call: same units, more examples
        probe.step()
    v = _values(probe.run)
    assert v[("1", "activation", "dead_samples")] == batch + 3


# ------------------------------------------------------ more of the same kinds (found here)
def test_complex_activations_were_a_probe_failure():
    class FFT(nn.Module):
        def forward(self, x):
            return torch.fft.fft(x)

    model = nn.Sequential(nn.Linear(4, 4), FFT())
    with gp.watch(model) as probe:
        z = model(torch.randn(3, 4))
        z.abs().sum().backward()
        probe.step()
    assert not probe.warnings
    ref = torch.view_as_real(z.detach()).reshape(-1).double()
    v = _values(probe.run)
    assert v[("1", "activation", "rms")] == pytest.approx(ref.pow(2).mean().sqrt().item(), 1e-5)


def test_zero_size_gradients_were_a_probe_failure():
    class Empty(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(0, 4))
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x) + (x @ self.w.T).sum()

    model = Empty()
    with gp.watch(model) as probe:
        model(torch.randn(3, 4)).sum().backward()
        probe.step()
    assert not probe.warnings
    assert _values(probe.run)[("w", "weight", "norm")] == 0


def test_dataclass_outputs_were_not_recorded():
    @dataclasses.dataclass
    class Out:
        mask: torch.Tensor
        y: torch.Tensor

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            y = self.lin(x)
            return Out(y > 0, y)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block, self.head = Block(), nn.Linear(4, 1)

        def forward(self, x):
            return self.head(self.block(x).y)

    model = Net()
    with gp.watch(model) as probe:
        model(torch.randn(5, 4)).sum().backward()
        probe.step()
    v = _values(probe.run)
    assert ("block", "activation", "rms") in v and ("block", "grad_output", "norm") in v


def test_huge_finite_values_were_a_nan_event_on_the_accelerator_path(monkeypatch):
    """Unlogged steps off the CPU kept Σx: finite values of 3e38 overflow it, and the first
    non-finite event named a layer that held no NaN/Inf."""
    monkeypatch.setattr(reducers, "on_host", lambda device: False)

    class Huge(nn.Module):
        def forward(self, x):
            return torch.full_like(x, 3e38)

    model = nn.Sequential(nn.Linear(3, 4), Huge(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight.fill_(1.0)  # 4 · 3e38: a real Inf in layer "2"
    with gp.watch(model, every=lambda step: step == 1, first_nonfinite=True) as probe:
        model(torch.randn(5, 3))
        probe.step()
        probe.step()
    assert [(e.step, e.layer) for e in probe.run.events()] == [(0, "2")]


def test_a_schedule_that_raises_reached_the_training_loop():
    model = _mlp()

    def schedule(step):
        if step == 2:
            raise KeyError(step)
        return True

    with gp.watch(model, every=schedule) as probe:
        for _ in range(4):
            model(torch.randn(4, 6)).sum().backward()
            probe.step()
    assert probe.run.steps == [0, 1, 3]
    assert any("KeyError" in w for w in probe.warnings)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"every": lambda: True}, "every= must be"),
        ({"hist_range": float("inf")}, "hist_range"),
        ({"hist_range": "wide"}, "hist_range"),
        ({"hist_range": True}, "hist_range"),
        ({"first_nonfinite": "yes"}, "first_nonfinite"),
    ],
)
def test_bad_watch_options_were_a_raw_error_or_silently_accepted(options, match):
    with pytest.raises(InvalidInputError, match=match):
        gp.watch(_mlp(), **options)


def test_a_model_on_the_meta_device_was_watched():
    with torch.device("meta"):
        model = _mlp()
    with pytest.raises(InvalidInputError, match="meta"):
        gp.watch(model)


def test_probe_md_wrote_gp_probe_log_spaced_which_a_fresh_import_lacks():
    from pathlib import Path

    from gradprobe.probe import log_spaced

    doc = (Path(__file__).parents[2] / "docs" / "PROBE.md").read_text()
    assert "gp.probe." not in doc and "from gradprobe.probe import log_spaced" in doc
    assert log_spaced(10)(0) and log_spaced(10)(10) and not log_spaced(10)(5)


def test_a_float64_model_could_not_be_watched():
    """``norm`` asked float64 weights for a float32 norm (a narrowing error at ``watch()``);
    float64 tensors were cast to float32, so values beyond 3.4e38 read as Inf."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(16, 4, dtype=torch.float64) * 1e40
    with gp.watch(model) as probe:
        model(x).sum().backward()
        probe.step()
    v = _values(probe.run)
    assert probe.run.events() == []  # no NaN/Inf anywhere
    assert v[("(input)", "activation", "std")] == pytest.approx(_ref(x)["std"], rel=1e-9)
    assert v[("0.weight", "weight", "norm")] == pytest.approx(_ref(model[0].weight)["norm"])


def test_a_torchscript_model_raised_a_raw_runtime_error():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates it
        scripted = torch.jit.script(_mlp())
    with pytest.raises(InvalidInputError, match="TorchScript"):
        gp.watch(scripted)


# ----------------------------------------------------------------- issue 16: training time
def test_a_step_call_after_the_optimizer_hook_added_an_empty_step():
    """``watch(optimizer=opt)`` plus ``probe.step()`` after ``opt.step()`` (the DESIGN loop)
    ended two steps per iteration: every other step was empty. Now the call gives the step
    the optimizer ended its loss, and starts no other."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(3):
            loss = model(torch.randn(4, 6)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    assert probe.run.steps == [0, 1, 2] and probe.run.meta["closed_at_step"] == 3
    _, steps, _ = probe.run.matrix("loss", "value")
    assert steps == [0, 1, 2]


def test_weights_made_nan_by_the_optimizer_step_were_blamed_on_the_forward():
    """SGD at a huge lr: the gradients were finite, the optimizer's step put Inf in the
    weights, and the run only said the next forward's Linear "contained NaN/Inf". Now an
    event of phase "update" names the step and the parameter."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, every=10, optimizer=opt, first_nonfinite=True) as probe:
        for i in range(4):
            model(torch.randn(4, 6)).pow(2).mean().backward()
            if i == 1:
                for p in model.parameters():
                    p.grad.mul_(1e30)  # after the probe read them: finite, but huge
                opt.param_groups[0]["lr"] = 1e10
            opt.step()
            opt.zero_grad()
    event = probe.run.first_nonfinite("update")
    assert event is not None and event.step == 1 and event.layer.endswith(("weight", "bias"))
    assert probe.run.first_nonfinite("forward").step == 2


def test_the_loss_of_a_sequential_model_had_no_layer_to_be_stored_at():
    """A model whose root is a container has no "(model)" module; its loss is stored at a
    layer "(model)" of role "model", which is not among the modules."""
    model = _mlp()
    with gp.watch(model) as probe:
        loss = model(torch.randn(4, 6)).sum()
        loss.backward()
        probe.step(loss=loss)
    assert probe.warnings == []
    assert probe.run.matrix("loss", "value")[2][0, 0] == loss.item()
    assert "(model)" not in [la.name for la in probe.run.layers()]
    assert [la.role for la in probe.run.layers(None) if la.name == "(model)"] == ["model"]
