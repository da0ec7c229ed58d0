"""Any model: in-place ops, odd outputs, shared modules, RNNs, autocast, accumulation, compile."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import gradprobe as gp


def _values(run, step=0):
    df = run.to_pandas()
    return {(r.layer, r.quantity, r.stat): r.value for r in df[df.step == step].itertuples()}


def _one_step(model, *args, loss=lambda out: out.pow(2).sum(), **kw):
    with gp.watch(model, **kw) as probe:
        loss(model(*args)).backward()
        probe.step()
    return probe.run


def test_inplace_relu_records_pre_and_post_activation_correctly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 20), nn.ReLU(inplace=True), nn.Linear(20, 3))
    x = torch.randn(9, 5)
    v = _values(_one_step(model, x))
    pre = model[0](x)
    pre.retain_grad()
    post = torch.relu(pre)
    post.retain_grad()
    model[2](post).pow(2).sum().backward()
    assert v[("0", "activation", "mean")] == pytest.approx(pre.mean().item(), abs=1e-6)
    assert v[("0", "activation", "max_abs")] == pytest.approx(pre.abs().max().item())
    assert v[("1", "activation", "mean")] == pytest.approx(post.mean().item(), abs=1e-6)
    assert v[("0", "grad_output", "norm")] == pytest.approx(pre.grad.norm().item(), rel=1e-5)
    assert v[("1", "grad_output", "norm")] == pytest.approx(post.grad.norm().item(), rel=1e-5)


class Odd(nn.Module):
    """Children returning a tuple, a dict, None, and an integer tensor."""

    class Tup(nn.Module):
        def forward(self, x):
            return (torch.arange(3), x * 2, x)

    class Dic(nn.Module):
        def forward(self, x):
            return {"mask": x > 0, "y": x - 1}

    class Nothing(nn.Module):
        def forward(self, x):
            return None

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.tup, self.dic, self.nothing = self.Tup(), self.Dic(), self.Nothing()

    def forward(self, x):
        h = self.tup(self.lin(x))[1]
        self.nothing(h)
        return self.dic(h)["y"]


def test_tuple_dict_and_none_outputs_record_the_first_float_tensor():
    torch.manual_seed(0)
    model = Odd()
    x = torch.randn(3, 4)
    run = _one_step(model, x, loss=lambda out: out.sum())
    v = _values(run)
    h = model.lin(x) * 2
    assert v[("tup", "activation", "mean")] == pytest.approx(h.mean().item(), abs=1e-6)
    assert v[("dic", "activation", "mean")] == pytest.approx((h - 1).mean().item(), abs=1e-6)
    assert ("nothing", "activation", "mean") not in v
    assert v[("(model)", "grad_output", "norm")] == pytest.approx(12**0.5)  # d(sum)/dy = 1
    assert [la.name for la in run.layers()] == ["lin", "tup", "nothing", "dic", "(model)"]


def test_packed_sequence_lstm():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5, batch_first=True)
    model = nn.Sequential()
    model.add_module("lstm", lstm)
    x = torch.randn(4, 6, 3)
    packed = pack_padded_sequence(x, torch.tensor([6, 5, 3, 2]), batch_first=True)
    run = _one_step(model, packed, loss=lambda out: out[0].data.pow(2).sum())
    v = _values(run)
    out, _ = lstm(packed)
    assert v[("lstm", "activation", "std")] == pytest.approx(out.data.std().item(), rel=1e-5)
    assert ("lstm", "grad_output", "norm") in v


def test_module_called_several_times_aggregates_calls():
    torch.manual_seed(0)

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, 8)
            self.block = nn.Linear(8, 8)

        def forward(self, x):
            h = self.inp(x)
            for _ in range(3):
                h = torch.tanh(self.block(h))
            return h

    model = Shared()
    x = torch.randn(5, 4)
    run = _one_step(model, x)
    v = _values(run)
    outs, h = [], model.inp(x)
    for _ in range(3):
        o = model.block(h)
        o.retain_grad()
        outs.append(o)
        h = torch.tanh(o)
    h.pow(2).sum().backward()
    cat = torch.cat([o.detach().flatten() for o in outs])
    gcat = torch.cat([o.grad.flatten() for o in outs])
    assert v[("block", "activation", "calls")] == 3
    assert v[("block", "activation", "mean")] == pytest.approx(cat.mean().item(), abs=1e-6)
    assert v[("block", "activation", "std")] == pytest.approx(cat.std().item(), rel=1e-5)
    assert v[("block", "grad_output", "norm")] == pytest.approx(gcat.norm().item(), rel=1e-5)
    per_call = run.series("block", "grad_output_norm_per_call", 0)
    # gradient hooks fire in backward order: last call first
    want = [o.grad.norm().item() for o in reversed(outs)]
    assert per_call == pytest.approx(want, rel=1e-5)


def test_rnn_cell_in_a_loop_gives_dl_dh_t_per_time_step():
    torch.manual_seed(0)

    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.RNNCell(3, 6)
            self.head = nn.Linear(6, 1)

        def forward(self, xs):
            h = torch.zeros(xs.shape[1], 6)
            for x in xs:
                h = self.cell(x, h)
            return self.head(h)

    model = Loop()
    xs = torch.randn(7, 2, 3)
    run = _one_step(model, xs)
    hs, h = [], torch.zeros(2, 6)
    for x in xs:
        h = model.cell(x, h)
        h.retain_grad()
        hs.append(h)
    model.head(h).pow(2).sum().backward()
    got = run.series("cell", "grad_output_norm_per_call", 0)[::-1]  # back to time order
    assert got == pytest.approx([h.grad.norm().item() for h in hs], rel=1e-5)
    assert got[0] < got[-1]  # vanishing through time is visible


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_time_step_gradients(batch_first):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5, num_layers=2, batch_first=batch_first)
    head = nn.Linear(5, 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = lstm, head

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1] if batch_first else out[-1])

    x = torch.randn(2, 9, 3) if batch_first else torch.randn(9, 2, 3)
    run = _one_step(Net(), x)
    xr = x.clone().requires_grad_(True)
    out, _ = lstm(xr)
    out.retain_grad()
    head(out[:, -1] if batch_first else out[-1]).pow(2).sum().backward()
    t = 1 if batch_first else 0
    norms = lambda g: [g.select(t, i).norm().item() for i in range(9)]  # noqa: E731
    assert run.series("lstm", "rnn_grad_input_t", 0) == pytest.approx(norms(xr.grad), rel=1e-5)
    # the zero norms (outputs the loss does not read) send the probe to float64 sums: the
    # float32 reference is then the less exact one (relative 1e-7)
    assert run.series("lstm", "rnn_grad_output_t", 0) == pytest.approx(
        norms(out.grad), rel=1e-6, abs=1e-7
    )


def test_autocast_bfloat16_stats_are_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
    x = torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        run = _one_step(model, x, loss=lambda out: out.float().pow(2).sum(), histograms=True)
        ref = model[0](x)
    assert ref.dtype == torch.bfloat16
    v = _values(run)
    r = ref.float()
    assert v[("0", "activation", "std")] == pytest.approx(r.std().item(), rel=1e-5)
    assert v[("0", "activation", "mean")] == pytest.approx(r.mean().item(), abs=1e-6)
    assert v[("0.weight", "param_grad", "norm")] > 0


def test_gradient_accumulation_records_the_accumulated_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xs = [torch.randn(5, 4) for _ in range(3)]
    acts = torch.cat([model[0](x).detach().flatten() for x in xs])
    with gp.watch(model) as probe:
        for x in xs:
            model(x).pow(2).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        opt.step()
        opt.zero_grad()
        probe.step()
    v = _values(probe.run)
    for n, g in grads.items():
        assert v[(n, "param_grad", "norm")] == pytest.approx(g.norm().item(), rel=1e-5)
    assert v[("0", "activation", "calls")] == 3
    assert v[("0", "activation", "std")] == pytest.approx(acts.std().item(), rel=1e-4)


def test_torch_compile_does_not_crash_and_records():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    compiled = torch.compile(model, backend="aot_eager")
    run = _one_step(compiled, torch.randn(3, 4))
    v = _values(run)
    assert {"0", "1", "2"} <= {la.name for la in run.layers()}
    assert v[("2", "grad_output", "norm")] > 0 and v[("0.weight", "param_grad", "norm")] > 0


def test_eval_mode_forward_without_grad_records_forward_only():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with gp.watch(model) as probe, torch.no_grad():
        model(torch.randn(3, 4))
        probe.step()
    quantities = set(probe.run.to_pandas().quantity)
    assert "activation" in quantities and "grad_output" not in quantities


def test_check_changes_nothing_and_prints_a_table():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)
    )  # fmt: skip
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model[0].weight.grad = torch.ones_like(model[0].weight)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    rng = torch.get_rng_state()
    result = gp.check(model, x, y)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert model[4].bias.grad is None
    assert result.run.steps == [0] and result.loss > 0
    text = str(result.table().title) + "".join(c.header for c in result.table().columns)
    assert "loss" in text and "∂L/∂out" in text
    assert result.run.histogram("2", "activation", 0) is not None
    with pytest.raises(gp.GradprobeError, match="inputs must be"):
        gp.check(model, "x")
    with pytest.raises(gp.GradprobeError, match="forward failed"):
        gp.check(model, torch.randn(8, 5))


def test_batchnorm_check_with_one_example_says_to_pass_a_larger_batch():
    """Regression (BatchNorm batch-1 error text): the error names the BatchNorm and the
    batch size to pass, not "a batch shaped as the model expects"."""
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(gp.GradprobeError, match="at least 2 examples") as err:
        gp.check(model, torch.randn(1, 4))
    assert "BatchNorm" in str(err.value) and "shaped as the model" not in str(err.value)
    assert gp.check(model, torch.randn(2, 4)).run.steps == [0]


def test_the_probe_reports_its_own_time():
    """probe.seconds: host time inside the hooks and step(); part of the watched time, and
    stored in the run at close."""
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, histograms=True) as probe:
        for _ in range(5):
            model(torch.randn(16, 4)).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
        during = probe.seconds
    meta = probe.run.meta
    assert 0 < during <= probe.seconds == pytest.approx(meta["probe_seconds"], abs=1e-6)
    assert meta["probe_seconds"] < meta["watched_seconds"]


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_an_evaluation_between_training_steps_is_not_recorded_and_starts_no_step(with_optimizer):
    """Regression: a ``torch.no_grad()`` evaluation after ``opt.step()`` and before
    ``probe.step(loss=loss)`` started a step of its own (the loss went to an empty step,
    every later step index was shifted), and its forwards were recorded as the next step's
    calls (another batch, in eval mode)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 4)
    with gp.watch(model, every=1, optimizer=opt if with_optimizer else None) as probe:
        for step in range(6):
            model.train()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step % 2 == 0:
                model.eval()
                with torch.no_grad():
                    model(torch.randn(64, 4))
            probe.step(loss=loss)
    run = probe.run
    assert run.steps == list(range(6))
    _, steps, losses = run.matrix("loss", "value")
    assert steps == list(range(6)) and np.isfinite(losses).all()
    _, _, calls = run.matrix("activation", "calls")
    assert (calls == 1).all()  # the training forward only
