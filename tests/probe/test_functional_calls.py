"""Activations applied as functions inside a forward (probe/_functional.py): which module's
output they read, what is measured of it, and that the look changes nothing."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeWarning
from gradprobe.probe import reducers as R
from gradprobe.probe._functional import FUNCTIONS
from gradprobe.probe.modules import Activation


class Fn(nn.Module):
    """fc → ``act`` (a function) → head."""

    def __init__(self, act, width=64):
        super().__init__()
        self.act, self.fc, self.head = act, nn.Linear(16, width), nn.Linear(width, 4)

    def forward(self, x):
        return self.head(self.act(self.fc(x)))


def _train(model, steps=3, seed=0, watch=True, **kw):
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    if not watch:
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return None
    with gp.watch(model, optimizer=opt, **kw) as probe:
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            probe.step(loss=loss)
    return probe.run


def _label(run, name):
    return next(la.activation for la in run.layers(None) if la.name == name)


# every function of the table, called the way a forward calls it: (call, label, name)
CALLS = {
    "torch.relu": (torch.relu, "relu", "relu"),
    "torch.relu_": (torch.relu_, "relu", "relu"),
    "F.relu": (F.relu, "relu", "relu"),
    "F.relu inplace": (lambda x: F.relu(x, inplace=True), "relu", "relu"),
    "F.relu_": (F.relu_, "relu", "relu"),
    "Tensor.relu": (lambda x: x.relu(), "relu", "relu"),
    "Tensor.relu_": (lambda x: x.relu_(), "relu", "relu"),
    "F.relu6": (F.relu6, "relu", "relu6"),
    "torch.tanh": (torch.tanh, "saturating:-1,1", "tanh"),
    "torch.tanh_": (torch.tanh_, "saturating:-1,1", "tanh"),
    "Tensor.tanh": (lambda x: x.tanh(), "saturating:-1,1", "tanh"),
    "Tensor.tanh_": (lambda x: x.tanh_(), "saturating:-1,1", "tanh"),
    "F.tanh": (F.tanh, "saturating:-1,1", "tanh"),
    "torch.sigmoid": (torch.sigmoid, "saturating:0,1", "sigmoid"),
    "torch.sigmoid_": (torch.sigmoid_, "saturating:0,1", "sigmoid"),
    "Tensor.sigmoid": (lambda x: x.sigmoid(), "saturating:0,1", "sigmoid"),
    "Tensor.sigmoid_": (lambda x: x.sigmoid_(), "saturating:0,1", "sigmoid"),
    "F.sigmoid": (F.sigmoid, "saturating:0,1", "sigmoid"),
    "torch.special.expit": (torch.special.expit, "saturating:0,1", "sigmoid"),
    "F.softsign": (F.softsign, "saturating:-1,1", "softsign"),
    "F.hardsigmoid": (F.hardsigmoid, "saturating:0,1", "hardsigmoid"),
    "F.hardtanh": (lambda x: F.hardtanh(x, -2.0, 2.0), "saturating:-2,2", "hardtanh"),
    "F.gelu": (F.gelu, "smooth:gelu", "gelu"),
    "F.silu": (F.silu, "smooth:silu", "silu"),
    "x * sigmoid(x)": (lambda x: x * torch.sigmoid(x), "smooth:silu", "silu"),
    "sigmoid(x) * x": (lambda x: torch.sigmoid(x) * x, "smooth:silu", "silu"),
    "F.mish": (F.mish, "smooth:mish", "mish"),
    "F.elu": (F.elu, "smooth:elu", "elu"),
    "F.celu": (F.celu, "smooth:celu", "celu"),
    "F.selu": (F.selu, "smooth:selu", "selu"),
    "torch.selu": (torch.selu, "smooth:selu", "selu"),
    "F.leaky_relu": (lambda x: F.leaky_relu(x, 0.1), "smooth:leakyrelu", "leakyrelu"),
    "F.softplus": (F.softplus, "smooth:softplus", "softplus"),
    "F.hardswish": (F.hardswish, "smooth:hardswish", "hardswish"),
}


@pytest.mark.parametrize("case", sorted(CALLS))
def test_a_function_applied_to_a_modules_output_is_that_modules_activation(case):
    fn, label, name = CALLS[case]
    run = _train(Fn(fn))
    assert _label(run, "fc") == label
    assert run.meta["functional_activations"] == {"fc": name}
    assert _label(run, "head") is None


def test_every_function_of_the_table_is_called_by_the_cases():
    """The table and the cases above agree: no entry untested."""
    seen = set()

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.add(func)
            return func(*args, **(kwargs or {}))

    with Spy():
        for fn, _, _ in CALLS.values():
            fn(torch.randn(3))
    assert [f for f in FUNCTIONS if f not in seen] == []


def test_the_look_changes_no_bit_of_training():
    for act in (torch.tanh, F.relu, lambda x: x * torch.sigmoid(x)):
        torch.manual_seed(1)
        a, b = Fn(act), Fn(act)
        b.load_state_dict(a.state_dict())
        _train(a, steps=4, watch=False)
        _train(b, steps=4)
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)


def test_inside_an_activation_module_the_function_is_the_modules_not_the_layers():
    """nn.ReLU calls F.relu on the Linear's output: the ReLU module is the activation, the
    Linear gets none; a parameterless custom Swish likewise."""

    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    for act in (nn.ReLU(), nn.Tanh(), Swish()):
        run = _train(nn.Sequential(nn.Linear(16, 32), act, nn.Linear(32, 4)))
        assert _label(run, "0") is None
        assert "functional_activations" not in run.meta


def test_two_functions_reading_one_output_name_none():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(16, 32), nn.Linear(64, 4)

        def forward(self, x):
            h = self.fc(x)
            return self.head(torch.cat([torch.tanh(h), torch.relu(h)], 1))

    run = _train(Two())
    assert _label(run, "fc") is None


def test_a_gate_on_a_chunk_names_nothing():
    """tanh(a)·σ(b) with a, b the halves of one Linear's output (a WaveNet/LSTM gate): the
    functions read views, not the module's output."""

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(16, 64), nn.Linear(32, 4)

        def forward(self, x):
            a, b = self.fc(x).chunk(2, 1)
            return self.head(torch.tanh(a) * torch.sigmoid(b))

    assert _label(_train(Gate()), "fc") is None


def test_the_first_logged_steps_counts_are_taken_at_the_call():
    """The step the look happened on has the dead and saturated fractions too, equal to those
    of the same model written with modules."""
    for fn, mod, stat in ((F.relu, nn.ReLU(), "dead"), (torch.tanh, nn.Tanh(), "saturated")):
        torch.manual_seed(0)
        f = Fn(fn, width=256)
        with torch.no_grad():
            f.fc.weight.mul_(8)  # saturate a good part of the tanh
            if stat == "dead":
                f.fc.bias.fill_(-12.0)  # and kill most ReLU units
        m = nn.Sequential(f.fc, mod, f.head)
        m_copy = nn.Sequential(
            nn.Linear(16, 256), type(mod)(), nn.Linear(256, 4)
        )  # same weights, modules
        m_copy.load_state_dict(m.state_dict())
        a, b = _train(f, steps=2), _train(m_copy, steps=2)
        fa = [v for s, la, q, st, v in a.rows() if la == "fc" and st == stat]
        fb = [v for s, la, q, st, v in b.rows() if la == "1" and st == stat]
        assert len(fa) == 2 == len(fb)  # step 0 (the look) and step 1
        assert fa == pytest.approx(fb, abs=1e-12)
        assert max(fa) > 0.05


@pytest.mark.parametrize(
    "name,f,lo,hi",
    [
        ("tanh", torch.tanh, -1.0, 1.0),
        ("sigmoid", torch.sigmoid, 0.0, 1.0),
        ("softsign", F.softsign, -1.0, 1.0),
        ("hardsigmoid", F.hardsigmoid, 0.0, 1.0),
        ("hardtanh", F.hardtanh, -1.0, 1.0),
    ],
)
def test_count_bounds_count_the_inputs_whose_value_is_saturated(name, f, lo, hi):
    """On the input, ``count_bounds`` counts what ``saturated_count`` counts on f(input)
    (computed in float64 here, off the band where the two roundings could differ)."""
    x = torch.randn(200_000, dtype=torch.float64) * {"softsign": 100, "sigmoid": 8}.get(name, 4)
    act = Activation("saturating", lo, hi, name, pre=True)
    c, h = (lo + hi) / 2, (hi - lo) / 2
    y = f(x)
    keep = ((y - c).abs() - h * 0.98).abs() > 1e-6
    x, y = x[keep], y[keep]
    on_input = int(R.saturated_count(x, *act.count_bounds()))
    on_output = int(((y - c).abs() >= h * 0.98).sum())
    assert on_input == on_output > 1000


def test_count_bounds_formulas_by_hand():
    assert Activation("saturating", -1, 1, "tanh", pre=True).count_bounds()[1] * 0.98 == (
        pytest.approx(math.atanh(0.98))
    )
    assert Activation("saturating", 0, 1, "sigmoid", pre=True).count_bounds()[1] * 0.98 == (
        pytest.approx(math.log(99))
    )
    assert Activation("saturating", -1, 1, "tanh").count_bounds() == (-1, 1)  # a module's own


def test_the_hooks_of_the_look_go_once_it_has_looked_and_a_raising_forward_leaves_the_mode():
    class Boom(Fn):
        def forward(self, x):
            torch.tanh(self.fc(x))
            raise RuntimeError("boom")

    model = Boom(torch.tanh)
    with pytest.warns(GradprobeWarning, match="no step"), gp.watch(model) as probe:
        n = len(probe.hooks)
        with pytest.raises(RuntimeError, match="boom"):
            model(torch.randn(2, 16))
        assert len(probe.hooks) == n - 2  # the look ended with the forward
        assert not torch.overrides._is_torch_function_mode_enabled()


def test_no_grad_forwards_and_unlogged_steps_are_not_looked_into():
    model = Fn(torch.tanh)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, optimizer=opt, every=lambda s: s == 2) as probe:
        for _ in range(3):
            with torch.no_grad():
                model(torch.randn(2, 16))
            model(torch.randn(2, 16)).sum().backward()
            opt.step()
            assert ("functional_activations" in probe.run.meta) == (probe.step_index > 2)
    assert probe.run.steps == [2]
