"""What the probe records on every step for the whole model ("(model)"): the loss, the
learning rate, the global gradient norm; and weights made NaN/Inf by the optimizer's step."""

import math

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.probe import reducers


def _mlp():
    torch.manual_seed(0)
    layers = [nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def _values(run, quantity, stat):
    names, steps, m = run.matrix(quantity, stat)
    assert names == ["(model)"]
    return dict(zip(steps, m[0].tolist(), strict=True))


def _train(steps=10, every=4, accumulate=1, **watch):
    """Returns the run, the losses and the global gradient norms by hand (torch's own)."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    losses, norms = [], []
    if every is not None:  # None: watch()'s default
        watch["every"] = every
    with gp.watch(model, **watch) as probe:
        for _ in range(steps):
            for _ in range(accumulate):
                loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
                loss.backward()
            grads = [p.grad for p in model.parameters()]
            norms.append(torch.nn.utils.get_total_norm(grads, norm_type=2.0).item())
            losses.append(loss.item())
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    return probe.run, losses, norms


@pytest.mark.parametrize("device_path", [False, True])
def test_loss_and_grad_norm_are_recorded_on_every_step_logged_or_not(monkeypatch, device_path):
    if device_path:  # the accelerator code path: values stay on the device until a logged step
        monkeypatch.setattr(reducers, "on_host", lambda device: False)
    run, losses, norms = _train(steps=11, every=4)
    assert run.steps == [0, 4, 8]  # logged steps; the loss is at every step
    assert _values(run, "loss", "value") == dict(enumerate(losses))
    got = _values(run, "grad_norm", "global")
    assert list(got) == list(range(11))  # steps 9 and 10 written at close
    assert list(got.values()) == pytest.approx(norms, rel=1e-6)


def test_grad_norm_is_of_the_accumulated_gradient_and_skips_frozen_parameters():
    run, _, norms = _train(steps=5, every=2, accumulate=3)  # three backwards per step
    assert list(_values(run, "grad_norm", "global").values()) == pytest.approx(norms, rel=1e-6)
    model = _mlp()
    model[0].weight.requires_grad_(False)
    want = []
    with gp.watch(model, every=2) as probe:
        for _ in range(3):
            model(torch.randn(4, 6)).sum().backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            want.append(torch.nn.utils.get_total_norm(grads).item())
            model.zero_grad()
            probe.step()
    assert list(_values(probe.run, "grad_norm", "global").values()) == pytest.approx(want)


def test_a_nonfinite_loss_is_data_and_numbers_are_accepted():
    model = _mlp()
    with gp.watch(model, every=2) as probe:
        for loss in (1.5, torch.tensor(float("nan")), torch.tensor([float("inf")]), 2):
            model(torch.randn(4, 6)).sum().backward()
            model.zero_grad()
            probe.step(loss=loss)
    got = _values(probe.run, "loss", "value")
    assert got[0] == 1.5 and math.isnan(got[1]) and got[2] == math.inf and got[3] == 2.0


@pytest.mark.parametrize(
    ("loss", "match"),
    [
        (torch.ones(4), r"shape \(4,\).*loss\.mean\(\)"),
        ("0.5", "a number or a one-value tensor, got str"),
        (True, "got bool"),
        (torch.tensor(1 + 2j), "complex"),
    ],
)
def test_a_loss_that_is_not_one_number_is_an_error(loss, match):
    model = _mlp()
    with gp.watch(model) as probe:
        model(torch.randn(4, 6)).sum().backward()
        with pytest.raises(gp.GradprobeError, match=match):
            probe.step(loss=loss)
        probe.step()


def test_the_learning_rate_of_every_step_and_of_each_group():
    model = _mlp()
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.01}, {"params": model[2:].parameters()}],
        lr=0.1,
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    used = []
    with gp.watch(model, every=3, optimizer=opt) as probe:
        for _ in range(5):
            model(torch.randn(4, 6)).sum().backward()
            used.append([g["lr"] for g in opt.param_groups])
            opt.step()  # ends the probe's step: the lr this step used
            opt.zero_grad()
            sched.step()
    assert list(_values(probe.run, "lr", "value").values()) == [u[0] for u in used]
    assert list(_values(probe.run, "lr", "group1").values()) == [u[1] for u in used]
    with gp.watch(model, every=1) as probe:  # no optimizer: lr= given by the caller
        model(torch.randn(4, 6)).sum().backward()
        probe.step(lr=[0.2, 0.2])
    assert ("lr", "group0") not in probe.run.quantities()  # the groups agree: one value
    assert _values(probe.run, "lr", "value") == {0: 0.2}


def test_the_optimizer_and_its_hyper_parameters_are_in_the_meta(tmp_path):
    """What the diagnosis reads of the optimizer (SGD's step is lr·g, Adam's eps), in the
    run's file too; a group whose lr differs says so."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    with gp.watch(model, optimizer=opt, path=tmp_path / "run.db") as probe:
        model(torch.randn(4, 6)).sum().backward()
        opt.step()
    meta = gp.Run.load(tmp_path / "run.db").meta["optimizer"]
    assert meta == probe.run.meta["optimizer"]
    assert meta["type"] == "SGD" and meta["momentum"] == 0.9 and meta["nesterov"] is True
    assert meta["groups"] == 1 and meta["groups_alike"] is True and "lr" not in meta
    adam = torch.optim.Adam(
        [{"params": model[0].parameters(), "lr": 0.01}, {"params": model[2:].parameters()}],
        lr=torch.tensor(1e-3), eps=0.0,
    )  # fmt: skip
    with gp.watch(model, optimizer=adam) as probe:
        model(torch.randn(4, 6)).sum().backward()
        adam.step()
    meta = probe.run.meta["optimizer"]
    assert meta["type"] == "Adam" and meta["eps"] == 0.0 and meta["betas"] == [0.9, 0.999]
    assert meta["groups"] == 2 and meta["groups_alike"] is False
    with gp.watch(model) as probe:  # no optimizer: nothing said about one
        model(torch.randn(4, 6)).sum().backward()
        probe.step()
    assert "optimizer" not in probe.run.meta


def test_step_with_the_loss_after_the_optimizer_ended_the_step_starts_no_other():
    """The DESIGN example: watch(optimizer=opt) and probe.step(loss=loss) after opt.step()."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(4):
            loss = model(torch.randn(8, 6)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
            losses.append(loss.item())
    assert probe.run.steps == [0, 1, 2, 3] and probe.step_index == 4
    assert list(_values(probe.run, "loss", "value").values()) == losses


def _blow_up(device_path, monkeypatch, poison=None, blow_at=5, skip_nan=False, search=True):
    """At ``blow_at`` the gradients are scaled by 1e30 after the probe read them (still finite)
    and the lr is 1e10: the optimizer's step takes the weights past float32's range.
    ``search``: ``first_nonfinite=`` (True: the exact search on every step)."""
    if device_path:
        monkeypatch.setattr(reducers, "on_host", lambda device: False)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(3)
    with gp.watch(model, every=3, optimizer=opt, first_nonfinite=search) as probe:
        for i in range(9):
            x = torch.randn(8, 6, generator=g)
            if poison == i:
                x[0, 0] = float("nan")
            loss = model(x).pow(2).mean()
            loss.backward()
            if skip_nan and not torch.isfinite(loss):  # the user's loop skips a NaN step
                opt.zero_grad()
                probe.step(loss=loss)
                continue
            if i == blow_at:
                for p in model.parameters():
                    p.grad.mul_(1e30)
            for group in opt.param_groups:
                group["lr"] = 1e10 if i == blow_at else 0.01
            opt.step()
            opt.zero_grad()
            if i == blow_at:
                bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    return probe.run, bad[0] if blow_at < 9 else None


@pytest.mark.parametrize("device_path", [False, True])
def test_weights_made_nonfinite_by_the_optimizer_step_are_an_update_event(monkeypatch, device_path):
    run, first_bad = _blow_up(device_path, monkeypatch)
    ev = run.first_nonfinite("update")
    assert ev is not None and (ev.step, ev.layer) == (5, first_bad), run.events()
    assert "became NaN/Inf in the optimizer step" in ev.detail
    assert math.isfinite(_values(run, "grad_norm", "global")[5])
    assert run.first_nonfinite("forward").step == 6  # the next forward, as before


@pytest.mark.parametrize("device_path", [False, True])
def test_a_nan_from_the_data_is_no_update_event(monkeypatch, device_path):
    run, _ = _blow_up(device_path, monkeypatch, poison=4, blow_at=99)  # exact every step
    assert run.first_nonfinite("forward").step == 4
    assert run.first_nonfinite("update") is None  # the step's gradients were NaN already


def test_no_host_read_on_unlogged_steps_on_the_device_path(monkeypatch):
    """On an accelerator an unlogged step must not synchronise: no value is read on the host
    (``item``, ``tolist``, ``float``, ``cpu``, ``numpy``) between two logged steps."""
    monkeypatch.setattr(reducers, "on_host", lambda device: False)
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **k):
            reads.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    with gp.watch(model, every=1000, optimizer=opt) as probe:
        for i in range(300):  # more than COMPACT values: stacked on the device meanwhile
            loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
            if i == 0:
                reads.clear()  # the logged step 0 copies once
        unlogged = list(reads)
    assert unlogged == []  # (the close then copies once)
    assert len(_values(probe.run, "loss", "value")) == 300  # all there after close


def test_the_guard_ends_the_step_and_step_with_the_loss_follows():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt, guard=True) as probe:
        for _ in range(3):
            loss = model(torch.randn(4, 6)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    assert probe.run.steps == [0, 1, 2]
    assert list(_values(probe.run, "loss", "value")) == [0, 1, 2]


def test_check_records_its_loss():
    result = gp.check(_mlp(), torch.randn(8, 6), target=torch.randint(0, 3, (8,)))
    assert _values(result.run, "loss", "value")[0] == pytest.approx(result.run.meta["loss"])


@pytest.mark.parametrize("device_path", [False, True])
def test_weights_made_nonfinite_after_a_nan_from_the_data_are_still_found(monkeypatch, device_path):
    """A NaN in the data at step 2 (the loop skips that step, the weights stay finite), then
    the optimizer's step 5 makes them Inf: the update event is still found."""
    run, first_bad = _blow_up(device_path, monkeypatch, poison=2, skip_nan=True)
    assert run.first_nonfinite("forward").step == 2
    ev = run.first_nonfinite("update")
    assert ev is not None and (ev.step, ev.layer) == (5, first_bad), run.events()


def test_step_with_the_loss_before_the_optimizer_step_ends_the_step_once():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(3):
            loss = model(torch.randn(8, 6)).pow(2).mean()
            loss.backward()
            probe.step(loss=loss)  # before opt.step(): this call ends the step
            opt.step()  # ... and this one ends none
            opt.zero_grad()
    assert probe.run.steps == [0, 1, 2] and probe.step_index == 3
    assert list(_values(probe.run, "lr", "value")) == [0, 1, 2]


@pytest.mark.parametrize("device_path", [False, True])
def test_auto_finds_the_update_event_and_names_the_step_it_saw_first(monkeypatch, device_path):
    """first_nonfinite="auto" (the default): a NaN in the data at unlogged step 4 is seen by
    the free check. On the CPU the model's output check finds it in that step's forward and
    names the input there (probe/_trail.py), with the finite weights that step used. On the
    device path the weights became NaN in that step's update (NaN gradients: no update
    event), so the step that locates it uses NaN weights, which the run says."""
    run, _ = _blow_up(device_path, monkeypatch, poison=4, blow_at=99, search="auto")
    assert run.first_nonfinite("update") is None
    [episode] = run.meta["nonfinite_seen"]
    ev = run.first_nonfinite("forward")
    if not device_path:
        assert episode["step"] == episode["located_step"] == ev.step == 4
        assert episode["seen_in"] == ["output"] and ev.layer == "(input)"
        assert "first seen" not in ev.detail and episode["weights_finite"] is True
        return
    assert episode["step"] == 4 and "gradient" in episode["seen_in"]
    assert ev.step == episode["located_step"] == 6 and "first seen at step 4" in ev.detail
    assert episode["weights_finite"] is False


@pytest.mark.parametrize("device_path", [False, True])
def test_auto_still_finds_weights_made_nonfinite_by_the_optimizer_step(monkeypatch, device_path):
    run, first_bad = _blow_up(device_path, monkeypatch, search="auto")
    ev = run.first_nonfinite("update")
    assert ev is not None and (ev.step, ev.layer) == (5, first_bad), run.events()


# -- the default schedule: every step of the first 20, then one in ten ----------------------


def test_the_schedules_docstring_examples_run():
    import doctest

    from gradprobe.probe import schedules

    result = doctest.testmod(schedules)
    assert result.attempted >= 3 and result.failed == 0


def test_dense_then_logs_the_first_steps_then_every_nth():
    from gradprobe.probe import DEFAULT, dense_then

    sched = dense_then(first=20, every=10)
    assert sched == DEFAULT and hash(sched) == hash(DEFAULT)  # frozen, comparable
    assert [s for s in range(45) if sched(s)] == [*range(20), 20, 30, 40]
    assert [s for s in range(5) if dense_then(first=0, every=2)(s)] == [0, 2, 4]
    for bad in (dict(first=-1), dict(first=2.5), dict(every=0), dict(every=True)):
        with pytest.raises(gp.GradprobeError, match=r"first|every"):
            dense_then(**bad)


def test_watch_logs_the_first_20_steps_then_one_in_ten_by_default():
    run, _, _ = _train(steps=35, every=None)
    assert run.steps == [*range(20), 20, 30]
    assert len(_values(run, "loss", "value")) == 35  # the loss of every step still
    assert run.meta["every"] == "DenseThen(first=20, every=10)"


def test_the_guard_keeps_the_search_on_every_step():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt, guard=True) as probe:
        model(torch.randn(4, 6)).pow(2).mean().backward()
        opt.step()
    assert probe.run.meta["first_nonfinite"] is True
    assert probe._first.search


def test_no_host_read_on_unlogged_steps_when_the_check_fires_on_the_device_path(monkeypatch):
    """first_nonfinite="auto" on an accelerator: a NaN at unlogged step 5 stays a value on
    the device (no sync) until the logged step 10 reads it, which names the module."""
    monkeypatch.setattr(reducers, "on_host", lambda device: False)
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **k):
            reads.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    unlogged = []
    with gp.watch(model, every=10, optimizer=opt) as probe:
        for i in range(12):
            x = torch.randn(8, 6, generator=g)
            if i >= 5:
                x[0, 0] = float("nan")
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
            if i == 0:
                reads.clear()  # the logged step 0 copies once
            if i == 8:
                unlogged = list(reads)
    assert unlogged == []
    [episode] = probe.run.meta["nonfinite_seen"]
    assert episode["step"] == 5 and episode["located_step"] == 10
    assert probe.run.first_nonfinite("forward").layer == "(input)"


def _scaled_lanes(scaler, every, histograms, given=True):
    """The same model trained twice on the same data: plainly, and through ``scaler``
    (``scaler.scale(loss).backward()``, ``scaler.step(opt)``); power-of-two scales make the
    two trainings the same bit for bit. Returns both runs and the scale of each step."""
    runs, scales = [], []
    for lane in ("plain", "scaled"):
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(1)
        with gp.watch(
            model, every=every, optimizer=opt, histograms=histograms,
            scaler=scaler if lane == "scaled" and given else None,
        ) as probe:  # fmt: skip
            for _ in range(12):
                loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
                if lane == "plain":
                    loss.backward()
                    opt.step()
                else:
                    scales.append(scaler.get_scale())
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                opt.zero_grad()
                probe.step(loss=loss)
        runs.append(probe.run)
    return runs, scales


@pytest.mark.parametrize("given", [True, False], ids=["scaler=", "found"])
@pytest.mark.parametrize("device_path", [False, True])
def test_a_grad_scalers_gradients_are_recorded_unscaled(monkeypatch, device_path, given):
    """Regression: under ``scaler.scale(loss).backward()`` every gradient was recorded times
    the scale (65536 by default, doubling as it grows): a healthy run read as exploding.
    Without ``scaler=``, the GradScaler whose ``step()`` called the optimizer's is found."""
    if device_path:
        monkeypatch.setattr(reducers, "on_host", lambda device: False)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    (plain, scaled), scales = _scaled_lanes(scaler, every=4, histograms=True, given=given)
    assert scaled.meta["grad_scaler"] == "GradScaler" + ("" if given else " (found)")
    assert len(set(scales)) == 4  # the scale grew three times during the run
    assert _values(scaled, "grad_scale", "value") == dict(enumerate(scales))
    compared = [("grad_norm", "global", None), ("param_grad", "norm", "param"),
                ("grad_output", "rms", None), ("grad_output", "max_abs", None)]  # fmt: skip
    for q, stat, role in compared:
        a, b = plain.matrix(q, stat, role=role), scaled.matrix(q, stat, role=role)
        assert a[0] == b[0] and a[1] == b[1], (q, stat)
        assert b[2] == pytest.approx(a[2], rel=1e-6), (q, stat)
    assert len(_values(scaled, "grad_norm", "global")) == 12  # unlogged steps too
    names = plain.matrix("grad_output", "rms")[0]
    for name in names:
        h, hs = plain.histogram(name, "grad_output", 8), scaled.histogram(name, "grad_output", 8)
        assert hs.hi == pytest.approx(h.hi, rel=1e-6) and hs.lo == pytest.approx(h.lo, rel=1e-6)
        assert (hs.counts == h.counts).all()


def test_a_disabled_grad_scaler_scales_nothing():
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    (plain, scaled), _ = _scaled_lanes(scaler, every=1, histograms=False)
    a, b = (
        plain.matrix("param_grad", "norm", role="param"),
        scaled.matrix("param_grad", "norm", role="param"),
    )
    assert (a[2] == b[2]).all()
    assert set(_values(scaled, "grad_scale", "value").values()) == {1.0}


def test_a_scaler_that_is_not_a_grad_scaler_is_an_error():
    with pytest.raises(gp.GradprobeError, match=r"scaler must be a torch\.amp\.GradScaler"):
        gp.watch(_mlp(), scaler=65536.0)


def test_accelerates_prepared_optimizer_ends_the_steps():
    """Regression: ``accelerator.prepare``'s AcceleratedOptimizer passed as ``optimizer=``
    raised AttributeError (it has no hook lists of its own): the torch optimizer it wraps
    is the one hooked."""
    accelerate = pytest.importorskip("accelerate")
    acc = accelerate.Accelerator(cpu=True)
    model = _mlp()
    model, opt = acc.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert type(opt).__name__ == "AcceleratedOptimizer"
    g = torch.Generator().manual_seed(0)
    with gp.watch(model, optimizer=opt, every=1) as probe:
        for _ in range(3):
            loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
            acc.backward(loss)
            opt.step()
            opt.zero_grad()
    assert probe.run.steps == [0, 1, 2]
    assert probe.run.meta["optimizer"]["type"] == "SGD"
    assert list(_values(probe.run, "lr", "value").values()) == [0.1] * 3


@pytest.mark.parametrize("device_path", [False, True])
def test_a_backward_that_begins_on_the_last_steps_gradients_is_noted(monkeypatch, device_path):
    """A forgotten ``zero_grad()``: step 1's backward finds step 0's ``.grad`` unchanged.
    Zeroed in place, set to None, zeroed just before the backward, or several backwards
    accumulated inside one step: nothing noted."""
    if device_path:
        monkeypatch.setattr(reducers, "on_host", lambda device: False)

    def loop(zero, accumulate=1):
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(0)
        with gp.watch(model, optimizer=opt) as probe:
            for _ in range(4):
                for _ in range(accumulate):
                    loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
                    if zero == "before backward":
                        opt.zero_grad()
                    loss.backward()
                opt.step()
                if zero in ("to none", "in place"):
                    opt.zero_grad(set_to_none=zero == "to none")
                probe.step(loss=loss)
        return probe.run.meta.get("grads_not_zeroed")

    assert loop("never") == {"step": 1, "param": "0.weight"}
    assert loop("to none") is None and loop("in place") is None
    assert loop("before backward") is None and loop("to none", accumulate=3) is None


def _gan(zero_d, set_to_none, steps=5):
    """A tiny GAN: D on real and detached fakes, then G through D (which adds to D's .grad
    between D's steps); each model under its own watch(). Returns D's and G's runs' notes."""
    torch.manual_seed(0)
    g_net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    d_net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    d_opt = torch.optim.Adam(d_net.parameters(), lr=1e-3)
    g_opt = torch.optim.Adam(g_net.parameters(), lr=1e-3)
    bce = nn.functional.binary_cross_entropy_with_logits
    g = torch.Generator().manual_seed(0)
    with gp.watch(d_net, optimizer=d_opt) as dp, gp.watch(g_net, optimizer=g_opt) as gq:
        for _ in range(steps):
            fake = g_net(torch.randn(16, 4, generator=g))
            if zero_d:
                d_opt.zero_grad(set_to_none=set_to_none)
            out_r, out_f = d_net(torch.randn(16, 2, generator=g)), d_net(fake.detach())
            d_loss = bce(out_r, torch.ones_like(out_r)) + bce(out_f, torch.zeros_like(out_f))
            d_loss.backward(), d_opt.step(), dp.step(loss=d_loss)
            g_opt.zero_grad(set_to_none=set_to_none)
            out = d_net(fake)
            g_loss = bce(out, torch.ones_like(out))
            g_loss.backward(), g_opt.step(), gq.step(loss=g_loss)
    return dp.run.meta.get("grads_not_zeroed"), gq.run.meta.get("grads_not_zeroed")


@pytest.mark.parametrize("how", ["optimizer", "model", "by hand"])
def test_zero_grad_set_to_none_false_was_read_as_never_zeroed_regression(how):
    """``zero_grad(set_to_none=False)`` zeroes the same tensor, and the next backward adds to
    it (a new version too): a GAN's D, whose .grad G's backward through D had added to after
    D's step, was noted "never zeroed" (step 1, an error in the diagnosis) although D's loop
    zeroes before each of its backwards. Now the check looks at ``.grad`` just before each
    accumulation: changed in place since the last one is zeroed. A loop that never zeroes is
    still noted, plain or a GAN's D, and in-place clipping between backward and step is no
    zeroing."""
    if how == "optimizer":
        assert _gan(zero_d=True, set_to_none=False) == (None, None)
        assert _gan(zero_d=True, set_to_none=True) == (None, None)
        assert _gan(zero_d=False, set_to_none=False)[0] == {"step": 1, "param": "0.weight"}

    def loop(zero, clip=False):
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(0)
        with gp.watch(model, optimizer=opt) as probe:
            for _ in range(4):
                loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
                loss.backward()
                if clip:
                    nn.utils.clip_grad_norm_(model.parameters(), 0.01)
                opt.step()
                if zero and how == "optimizer":
                    opt.zero_grad(set_to_none=False)
                elif zero and how == "model":
                    model.zero_grad(set_to_none=False)
                elif zero:
                    for p in model.parameters():
                        p.grad.zero_()
                probe.step(loss=loss)
        return probe.run.meta.get("grads_not_zeroed")

    assert loop(True) is None and loop(True, clip=True) is None
    assert loop(False) == loop(False, clip=True) == {"step": 1, "param": "0.weight"}


def test_the_zero_grad_check_leaves_training_bit_identical():
    """Its hook on a gradient before accumulation returns nothing: with and without the probe
    the weights are the same bits (in-place zeroing, a loop that never zeroes)."""

    def train(watched, zero):
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(0)
        probe = gp.watch(model, optimizer=opt, every=1) if watched else None
        for _ in range(4):
            model(torch.randn(8, 6, generator=g)).pow(2).mean().backward()
            opt.step()
            if zero:
                opt.zero_grad(set_to_none=False)
            if probe is not None:
                probe.step()
        if probe is not None:
            probe.close()
        return [p.detach().clone() for p in model.parameters()]

    for zero in (True, False):
        for a, b in zip(train(False, zero), train(True, zero), strict=True):
            assert torch.equal(a, b)


def test_the_run_meta_had_no_device_regression(tmp_path):
    """Where the model's parameters live was not recorded: a report of a stored run could not
    say whether it trained on the CPU or a GPU. ``meta["device"]`` now says it at watch()
    (the buffers' device for a model without parameters; several joined in order)."""
    from gradprobe.probe.watch import model_device

    model = _mlp()
    with gp.watch(model, path=tmp_path / "a.sqlite") as probe:
        model(torch.randn(4, 6)).sum().backward()
        probe.step()
    assert gp.Run.load(tmp_path / "a.sqlite").meta["device"] == "cpu"
    assert gp.check(model, torch.randn(4, 6)).run.meta["device"] == "cpu"
    assert model_device(nn.BatchNorm1d(3, affine=False)) == "cpu"
    assert model_device(nn.ReLU()) is None
    split = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2, device="meta"), nn.Linear(2, 2)])
    assert model_device(split) == "cpu, meta"


def test_the_noted_gradients_are_not_kept_alive():
    """The zero_grad check holds the last step's ``.grad`` weakly: set to None, it is freed
    at once, as without the probe (an LLM's embedding gradient is hundreds of MB)."""
    import weakref

    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gp.watch(model, optimizer=opt):
        model(torch.randn(8, 6)).pow(2).mean().backward()
        opt.step()
        first = weakref.ref(model[0].weight.grad)
        opt.zero_grad(set_to_none=True)
        assert first() is None
