"""A probe never changes training, and always removes its hooks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeWarning
from gradprobe.probe import _attention, hooks, log_spaced


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.layer(x).mean(1))


class GPT(nn.Module):
    """Causal self-attention through F.scaled_dot_product_attention, with attention dropout."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln(x)).view(B, L, 3, 4, 4).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=0.1 if self.training else 0.0, is_causal=True
        )
        return self.head((x + a.transpose(1, 2).reshape(B, L, D)).mean(1))


class BF16(nn.Module):
    """A forward under CPU autocast: bfloat16 outputs (range_used is recorded)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 32), nn.GELU(), nn.Linear(32, 4))

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(x).float()


CASES = {
    "mlp": (
        lambda: nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(),
                              nn.Linear(32, 4)),
        lambda g: torch.randn(16, 10, generator=g),
    ),
    "cnn_bn": (CNN, lambda g: torch.randn(8, 3, 6, 6, generator=g)),
    "lstm": (LSTMNet, lambda g: torch.randn(8, 7, 5, generator=g)),
    "transformer": (Encoder, lambda g: torch.randn(8, 6, 16, generator=g)),
    "sdpa": (GPT, lambda g: torch.randn(8, 6, 16, generator=g)),
    "bf16": (BF16, lambda g: torch.randn(16, 10, generator=g)),
}  # fmt: skip


def _train(name, probe_kwargs, tmp_path=None, steps=20):
    make_model, make_x = CASES[name]
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    losses = []

    def loop(probe=None):
        for _ in range(steps):
            x, y = make_x(g), torch.randint(0, 4, (make_x(g).shape[0],), generator=g)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.detach().clone())
            if probe is not None:
                probe.step(loss=loss)

    if probe_kwargs is None:
        loop()
        return losses, model, None
    with gp.watch(model, **probe_kwargs) as probe:
        loop(probe)
    return losses, model, probe.run


@pytest.mark.parametrize("search", [True, "auto"])
@pytest.mark.parametrize("name", list(CASES))
def test_probe_never_changes_training(name, search, tmp_path):
    base_losses, base_model, _ = _train(name, None)
    options = dict(every=1, histograms=True, updates=True, first_nonfinite=search)
    losses, model, run = _train(name, {**options, "path": tmp_path / "run.sqlite"})
    assert all(torch.equal(a, b) for a, b in zip(base_losses, losses, strict=True))
    for (n, p), (_, q) in zip(
        base_model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), n
    assert run.steps == list(range(20))
    quantities = set(run.quantities())
    assert {("loss", "value"), ("grad_norm", "global")} <= quantities
    if name in ("transformer", "sdpa"):
        assert ("attention", "entropy") in quantities
    if name == "bf16":
        assert ("activation", "range_used") in quantities


@pytest.mark.parametrize(
    "options",
    [
        dict(every=log_spaced(3), histograms=True),
        {},  # the default: dense_then(20, 10), first_nonfinite="auto"
        dict(every=7, first_nonfinite=True),
        dict(every=7, first_nonfinite=False),
    ],
)
@pytest.mark.parametrize("name", ["lstm", "sdpa"])
def test_probe_never_changes_training_when_steps_are_skipped(name, options):
    base_losses, base_model, _ = _train(name, None, steps=34)
    losses, model, run = _train(name, options, steps=34)
    assert all(torch.equal(a, b) for a, b in zip(base_losses, losses, strict=True))
    for p, q in zip(base_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)
    if not options:
        assert run.steps == [*range(20), 20, 30]


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.mid = nn.Linear(8, 8)
        self.head = nn.Linear(8, 11, bias=False)
        self.head.weight = self.emb.weight  # GPT-2's tied head

    def forward(self, x):
        return self.head(self.mid(self.emb(x)))


def test_tied_parameters_are_in_the_meta():
    with gp.watch(Tied(), every=1) as probe:
        pass_ = probe.model(torch.randint(0, 11, (2, 5))).sum()
        pass_.backward()
        probe.step()
    assert probe.run.meta["tied_params"] == {"head.weight": "emb.weight"}
    with gp.watch(CASES["mlp"][0]()) as probe:
        probe.step()
    assert "tied_params" not in probe.run.meta


def _hook_count(model):
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
    for p in model.parameters():
        n += len(getattr(p, "_post_accumulate_grad_hooks", None) or {})
    return n


def test_hooks_are_removed_on_exit_and_when_the_loop_raises():
    model = CASES["cnn_bn"][0]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert _hook_count(model) == 0
    with pytest.warns(GradprobeWarning, match="no step"), gp.watch(model, optimizer=opt) as probe:
        assert _hook_count(model) > 0
        assert len(probe.hooks) == _hook_count(model) + 1  # + the optimizer hook
    assert _hook_count(model) == 0 and len(opt._optimizer_step_post_hooks) == 0

    with pytest.raises(RuntimeError, match="boom"), gp.watch(model, optimizer=opt) as probe:
        model(torch.randn(2, 3, 6, 6)).sum().backward()
        raise RuntimeError("boom")
    assert _hook_count(model) == 0 and len(opt._optimizer_step_post_hooks) == 0
    probe.close()  # idempotent
    with pytest.raises(gp.GradprobeError, match="closed"):
        probe.step()


def test_hooks_are_removed_when_setup_fails(monkeypatch):
    model = CASES["mlp"][0]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def broken(self, optimizer, fn):  # the last hook to install fails
        raise RuntimeError("cannot hook the optimizer")

    monkeypatch.setattr(hooks.HookSet, "optimizer_step", broken)
    with pytest.raises(RuntimeError, match="cannot hook"):
        gp.watch(model, optimizer=opt)
    assert _hook_count(model) == 0


def test_a_failed_setup_puts_torchs_attention_functions_back(monkeypatch):
    """Regression: a watch() whose setup failed left the SDPA and softmax wrappers in torch,
    calling the dead probe's observer on every attention (seen as test_attention failing
    after this file in one pytest-xdist worker)."""
    sdpa, softmax = F.scaled_dot_product_attention, F.softmax
    model = CASES["sdpa"][0]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def broken(self, optimizer, fn):
        raise RuntimeError("cannot hook the optimizer")

    monkeypatch.setattr(hooks.HookSet, "optimizer_step", broken)
    with pytest.raises(RuntimeError, match="cannot hook"):
        gp.watch(model, optimizer=opt)
    assert _attention._observers == []
    assert F.scaled_dot_product_attention is sdpa and F.softmax is softmax


def test_optimizer_hook_marks_steps():
    model = CASES["mlp"][0]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(3):
            model(torch.randn(4, 10)).sum().backward()
            opt.step()
            opt.zero_grad()
    assert probe.run.steps == [0, 1, 2]


def test_a_graph_kept_after_close_records_nothing():
    model = CASES["mlp"][0]()
    with pytest.warns(GradprobeWarning, match="no step"), gp.watch(model) as probe:
        loss = model(torch.randn(4, 10)).sum()
    loss.backward()  # hooks on the graph's tensors fire after close: ignored
    assert probe.run.steps == []


def _hooked(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_module_hooks_are_off_on_steps_that_record_nothing_and_back_on_logged_ones():
    model = CASES["mlp"][0]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    with gp.watch(model, every=3, optimizer=opt) as probe:
        for _ in range(7):
            seen.append(_hooked(model))
            model(torch.randn(4, 10)).sum().backward()
            opt.step()
            opt.zero_grad()
    # the model's input hook (it ends steps) and output hook (the free NaN/Inf check)
    # always; on unlogged steps one forward hook per module (5) that notes its output and
    # reads nothing (probe/_trail.py), instead of the two hooks per module of a logged step;
    # at the first step two more on the root, the look for functional activations, removed
    # once it has looked (probe/_functional.py)
    assert seen == [14, 7, 7, 12, 7, 7, 12]
    assert probe.run.steps == [0, 3, 6] and _hooked(model) == 0
    with gp.watch(model, every=3, first_nonfinite=True) as probe:  # the search needs them
        model(torch.randn(4, 10)).sum().backward()
        probe.step()
        assert _hooked(model) == 12


def test_hooks_stay_on_once_they_ran_under_compile(monkeypatch):
    """A module whose hooks come and go would be recompiled by Dynamo at every switch."""
    monkeypatch.setattr(hooks, "_is_compiling", lambda: lambda: True)  # every hook "traced"
    model = CASES["mlp"][0]()
    with gp.watch(model, every=3) as probe:
        for _ in range(3):
            model(torch.randn(4, 10)).sum().backward()
            probe.step()
            # the root's two hooks of the look for functional activations stay too (no-ops:
            # a compiled forward is not looked into)
            assert _hooked(model) == 14
    assert probe.hooks.compiled
