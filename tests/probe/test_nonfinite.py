"""The first module that produced NaN/Inf is named exactly: forward, backward, or the input.

``first_nonfinite=True`` searches every step; ``"auto"`` (the default) searches logged steps
and, on the others, a free check (loss, gradient norm, weights) logs the next step to
locate the module (probe/_sentinel.py)."""

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.probe import reducers


class NaNAt(nn.Module):
    """Identity, except that on ``bad_steps`` its output holds a NaN."""

    def __init__(self):
        super().__init__()
        self.poison = False

    def forward(self, x):
        if self.poison:
            x = x.clone()
            x[0, 0] = float("nan")
        return x


class InfBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        g[0, 0] = float("inf")
        return g


class InfGrad(nn.Module):
    def __init__(self):
        super().__init__()
        self.poison = False

    def forward(self, x):
        return InfBackward.apply(x) if self.poison else x


def _model(k=3, cls=NaNAt):
    torch.manual_seed(0)
    layers = [nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6)]
    layers.insert(k, cls())
    return nn.Sequential(*layers, nn.Linear(6, 2))


def _train(model, probe, bad_step, steps, x=None, target_layer=None):
    for s in range(steps):
        target_layer.poison = s == bad_step
        inp = torch.randn(4, 6) if x is None else x(s)
        model(inp).pow(2).sum().backward()
        model.zero_grad()
        probe.step()


@pytest.mark.parametrize("every", [1, 5, 100])
@pytest.mark.parametrize("k", [0, 3])
def test_forward_nan_names_the_module(k, every):
    model = _model(k)
    with gp.watch(model, every=every, first_nonfinite=True) as probe:
        _train(model, probe, bad_step=3, steps=7, target_layer=model[k])
    ev = probe.run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (3, str(k))
    assert ev.phase == "forward"
    # the NaN flowed backwards too: its first appearance in backward is at the NaN module
    bw = probe.run.first_nonfinite("backward")
    assert bw is not None and bw.step == 3


@pytest.mark.parametrize("every", [1, 4])
@pytest.mark.parametrize("k", [2, 5])
def test_backward_inf_names_the_module_whose_backward_made_it(k, every):
    model = _model(k, InfGrad)
    with gp.watch(model, every=every, first_nonfinite=True) as probe:
        _train(model, probe, bad_step=2, steps=4, target_layer=model[k])
    ev = probe.run.first_nonfinite("backward")
    assert (ev.step, ev.layer, ev.phase) == (2, str(k), "backward")
    assert f"backward of {k}" in ev.detail
    assert probe.run.first_nonfinite("forward") is None


@pytest.mark.parametrize("every", [1, 10])
def test_nan_in_the_data_is_reported_as_the_input(every):
    model = _model(3)

    def data(s):
        x = torch.randn(4, 6)
        if s == 1:
            x[2, 3] = float("nan")
        return x

    with gp.watch(model, every=every, first_nonfinite=True) as probe:
        _train(model, probe, bad_step=-1, steps=3, x=data, target_layer=model[3])
    ev = probe.run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (1, "(input)")
    assert "input" in ev.detail


def test_event_is_kept_when_the_loop_raises_mid_step(tmp_path):
    model = _model(3)
    watched = gp.watch(model, every=50, path=tmp_path, first_nonfinite=True)
    with pytest.raises(FloatingPointError), watched as probe:
        for s in range(5):
            model[3].poison = s == 2
            loss = model(torch.randn(4, 6)).pow(2).sum()
            if not torch.isfinite(loss):
                raise FloatingPointError("loss is NaN")
            loss.backward()
            probe.step()
    run = gp.Run.load(tmp_path)
    ev = run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (2, "3")
    assert run.steps == [0]


def test_stats_keep_nan_as_data():
    model = _model(3)
    model[3].poison = True
    with gp.watch(model) as probe:
        model(torch.randn(4, 6)).sum().backward()
        probe.step()
    df = probe.run.to_pandas()
    nf = df[(df.quantity == "activation") & (df.stat == "nonfinite")].set_index("layer").value
    assert nf["3"] == pytest.approx(1 / 24)
    assert nf["2"] == 0
    assert df[(df.layer == "3") & (df.stat == "mean")].value.isna().all()  # NaN stored as NULL


def test_unlogged_steps_keep_no_history_once_settled():
    model = _model(3)
    with gp.watch(model, every=5, first_nonfinite=True) as probe:
        _train(model, probe, bad_step=-1, steps=23, target_layer=model[3])
        kept = {phase: len(seqs) for phase, seqs in probe._first._seqs.items()}
    assert max(kept.values()) <= 3  # steps 21, 22 (and 23 pending): not the whole run
    assert probe.run.events() == []


def test_nan_in_keyword_input_is_reported_as_the_input():
    class KwModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, *, features):
            return self.lin(features)

    model = KwModel()
    x = torch.randn(4, 3)
    x[1, 1] = float("inf")
    with gp.watch(model) as probe:
        model(features=x).sum().backward()
        probe.step()
    ev = probe.run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (0, "(input)")


class Huge(nn.Module):
    """Finite values whose float32 sum overflows: 3e38 + 3e38 = inf."""

    def forward(self, x):
        return torch.full_like(x, 3e38)


def test_a_sum_that_overflows_is_no_event_but_a_real_inf_is():
    """Unlogged steps check Σx; on the CPU an overflowed Σx of finite values is told apart
    from NaN/Inf by counting them, so only the real Inf (the next module's output) is named."""
    model = nn.Sequential(nn.Linear(3, 4), Huge(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight.fill_(1.0)  # 4 · 3e38 overflows: a real Inf in layer "2"
    never = lambda step: False  # noqa: E731 (no step logged)
    with gp.watch(model, every=never, first_nonfinite=True) as probe:
        model(torch.randn(5, 3))
        probe.step()
    events = probe.run.events()
    assert [(e.step, e.phase, e.layer) for e in events] == [(0, "forward", "2")]


def test_a_forward_event_does_not_stop_the_backward_search_of_the_same_step():
    """On the CPU an unlogged step finds the forward NaN at once; the modules after it must
    still hook their outputs' gradients, so the backward event is the first one in
    backward order (the last layer's output gradient), not a parameter's gradient."""
    model = _model()
    x = torch.randn(4, 6)
    x[1, 2] = float("nan")
    with gp.watch(model, every=lambda step: False, first_nonfinite=True) as probe:
        model(x).pow(2).sum().backward()
        probe.step()
    first = {e.phase: e for e in probe.run.events()}
    assert first["forward"].layer == "(input)"
    assert first["backward"].layer == "6"
    assert "the output of 6" in first["backward"].detail


# -- first_nonfinite="auto": the free check of unlogged steps, and the step it logs ------------


def _train_with_loss(model, probe, poison_steps, steps, layer):
    g = torch.Generator().manual_seed(0)
    for s in range(steps):
        layer.poison = s in poison_steps
        loss = model(torch.randn(4, 6, generator=g)).pow(2).sum()
        loss.backward()
        model.zero_grad()
        probe.step(loss=loss)


def _seen(run):
    return run.meta.get("nonfinite_seen")


@pytest.mark.parametrize("k", [0, 3])
def test_auto_names_the_module_of_a_forward_nan_on_the_unlogged_step_itself(k):
    """On the CPU the model's output check of an unlogged step reads the module outputs its
    forward noted (probe/_trail.py) when the output is NaN: the module is named at that
    step, with the weights that made it, and no extra step is logged. Before, step 4 was
    logged to name it, and "first seen at step 3" was all step 3 said."""
    model = _model(k)
    with gp.watch(model, every=100) as probe:  # step 0 logged, then none by the schedule
        _train_with_loss(model, probe, range(3, 99), steps=8, layer=model[k])
    ev = probe.run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (3, str(k))
    assert "first seen" not in ev.detail and "read at the end of this unlogged" in ev.detail
    assert "(0.0417 of its values)" in ev.detail  # one value of 4 x 6
    assert probe.run.steps == [0]
    [episode] = _seen(probe.run)
    assert episode["step"] == episode["located_step"] == 3 and episode["seen_in"] == ["output"]
    assert episode["weights_finite"] is True


def test_auto_sees_a_backward_inf_on_an_unlogged_step_and_the_next_step_names_the_module():
    """A NaN/Inf the forward did not make (the output is finite) is seen in the gradients;
    the next step is logged to name the module."""
    model = _model(3, InfGrad)
    with gp.watch(model, every=100) as probe:
        _train_with_loss(model, probe, range(3, 99), steps=8, layer=model[3])
    ev = probe.run.first_nonfinite("backward")
    assert ev.step == 4 and "first seen at step 3" in ev.detail
    assert probe.run.first_nonfinite("forward") is None
    assert probe.run.steps == [0, 4]  # one extra logged step, not every step after
    [episode] = _seen(probe.run)
    assert episode["step"] == 3 and episode["located_step"] == 4
    assert episode["seen_in"] == ["gradient"]  # the loss and the output were finite
    # on the CPU each parameter gradient's ‖g‖² is on the host: those it reached are named
    assert set(episode["params"]) >= {"0.weight"}


def test_auto_on_the_device_path_reads_the_check_at_the_next_logged_step(monkeypatch):
    monkeypatch.setattr(reducers, "on_host", lambda device: False)
    model = _model(3)
    with gp.watch(model, every=5) as probe:
        _train_with_loss(model, probe, range(2, 99), steps=8, layer=model[3])
    ev = probe.run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (5, "3")  # the logged step 5 read it and named the module
    assert "first seen at step 2" in ev.detail
    [episode] = _seen(probe.run)
    assert (episode["step"], episode["located_step"], episode["params"]) == (2, 5, [])
    assert probe.run.steps == [0, 5]


@pytest.mark.parametrize("device_path", [False, True])
def test_auto_says_a_transient_nan_was_finite_again(monkeypatch, device_path):
    if device_path:
        monkeypatch.setattr(reducers, "on_host", lambda device: False)
    model = _model(3)
    with gp.watch(model, every=5) as probe:
        _train_with_loss(model, probe, {2}, steps=8, layer=model[3])
    [episode] = _seen(probe.run)
    if not device_path:  # named in step 2's own forward (probe/_trail.py)
        [ev] = probe.run.events()
        assert (ev.step, ev.phase, ev.layer) == (2, "forward", "3")
        assert episode["located_step"] == 2 and episode["finite_at"] is None
        return
    assert probe.run.events() == []  # no module to name: it never came back
    assert episode["step"] == 2 and episode["located_step"] is None
    assert episode["finite_at"] == 5


def test_auto_at_a_logged_step_is_exact_as_before():
    model = _model(3)
    with gp.watch(model) as probe:  # the default schedule: steps 0-19, 20, 30, ...
        _train_with_loss(model, probe, {30}, steps=35, layer=model[3])
    ev = probe.run.first_nonfinite("forward")
    assert (ev.step, ev.layer) == (30, "3") and "first seen" not in ev.detail
    assert probe.run.first_nonfinite("backward").step == 30
    assert _seen(probe.run) is None


def test_auto_logs_few_steps_when_the_nan_cannot_be_located():
    """A loss that is NaN while the model is finite (a loss of the user's own) arms the next
    step only a few times, not on every step to the end."""
    model = _model(3)
    with gp.watch(model, every=100) as probe:
        for _ in range(30):
            model(torch.randn(4, 6)).pow(2).sum().backward()
            model.zero_grad()
            probe.step(loss=float("nan"))
    assert len(probe.run.steps) <= 1 + 3
    assert _seen(probe.run)[0]["seen_in"] == ["loss"]


def test_first_nonfinite_true_searches_every_step_and_false_nothing():
    for mode, want in ((True, (3, "3")), (False, None)):
        model = _model(3)
        with gp.watch(model, every=100, first_nonfinite=mode) as probe:
            _train_with_loss(model, probe, {3}, steps=6, layer=model[3])
        ev = probe.run.first_nonfinite("forward")
        assert (ev and (ev.step, ev.layer)) == want
        assert probe.run.steps == [0] and _seen(probe.run) is None


def test_auto_does_no_per_module_work_on_unlogged_steps(monkeypatch):
    calls = []

    def finite_sum(t, *a, **k):
        calls.append(tuple(t.shape))
        return t.detach().sum()

    monkeypatch.setattr(reducers, "finite_sum", finite_sum)
    model = _model(3)
    with gp.watch(model, every=100) as probe:
        on_logged = sum(len(m._forward_hooks) for m in model.modules() if m is not model)
        _train_with_loss(model, probe, (), steps=5, layer=model[3])
        on_unlogged = sum(len(m._forward_hooks) for m in model.modules() if m is not model)
        own = len(model._forward_hooks)
    # unlogged: the statistics hooks paused; one forward hook per module that only notes
    # its output (probe/_trail.py), read when the model's output is NaN/Inf
    assert on_logged == 7 and on_unlogged == 7
    assert own == 1  # the model's own: its output, one sum a step
    assert calls == [(4, 2)] * 4 and not probe.warnings  # steps 1-4: the output, no module
    assert len(probe._trail) == 0  # nothing held after a step
    assert probe.run.meta["first_nonfinite"] == "auto"


def test_first_nonfinite_must_be_auto_true_or_false():
    with pytest.raises(gp.GradprobeError, match="'auto', True or False"):
        gp.watch(_model(3), first_nonfinite="always")
