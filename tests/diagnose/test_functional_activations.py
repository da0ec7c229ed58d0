"""Regression (session 13): activations written as functions in a forward
(``torch.relu(self.fc(x))``) were never measured, so a dying ReLU went unseen and a deep
sigmoid net was told to re-initialise with LSUV instead of sigmoid's remedy. The same model
written with modules and with functions, trained on the same data from the same weights,
now gets the same findings (module names mapped: ``acts.i`` ↔ ``l.i``)."""

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import gradprobe as gp

ACTS = {"relu": (nn.ReLU, F.relu), "sigmoid": (nn.Sigmoid, torch.sigmoid)}


class Functional(nn.Module):
    def __init__(self, act: str):
        super().__init__()
        self.l = nn.ModuleList([nn.Linear(64, 256)] + [nn.Linear(256, 256) for _ in range(4)])
        self.head = nn.Linear(256, 10)
        self.fn = ACTS[act][1]

    def forward(self, x):
        for layer in self.l:
            x = self.fn(layer(x))
        return self.head(x)


class Modules(Functional):
    def __init__(self, act: str):
        super().__init__(act)
        self.acts = nn.ModuleList([ACTS[act][0]() for _ in self.l])

    def forward(self, x):
        for layer, act in zip(self.l, self.acts, strict=True):
            x = act(layer(x))
        return self.head(x)


def _findings(cls, act, opt, steps=150):
    d = load_digits()
    x, y = torch.tensor(d.data, dtype=torch.float32) / 16, torch.tensor(d.target)
    torch.manual_seed(0)
    model = cls(act)
    optimizer = opt(model.parameters())
    gen = torch.Generator().manual_seed(0)
    with gp.watch(model, optimizer=optimizer) as probe:
        for _ in range(steps):
            i = torch.randint(0, len(x), (64,), generator=gen)
            loss = F.cross_entropy(model(x[i]), y[i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            probe.step(loss=loss)
    return [f for f in gp.diagnose(probe.run) if f.severity != "info"]


def _same(mod, fn):
    """(kind, where, severity, remedy code) of each finding, module names mapped to layers."""

    def key(f, mapped):
        where = (f.layer or "").replace("acts.", "l.") if mapped else f.layer or ""
        return (f.kind, where, f.severity, f.remedy.code if f.remedy else None)

    return sorted(key(f, True) for f in mod), sorted(key(f, False) for f in fn)


@pytest.fixture(scope="module")
def dying():
    adam = lambda ps: torch.optim.Adam(ps, lr=0.05)  # noqa: E731
    return _findings(Modules, "relu", adam), _findings(Functional, "relu", adam)


def test_functional_relu_dead_units_are_found(dying):
    mod, fn = dying
    dead = sorted(f.layer for f in fn if f.kind == "dead_units")
    assert dead == sorted(f.layer.replace("acts.", "l.") for f in mod if f.kind == "dead_units")
    assert len(dead) >= 3
    for f in fn:
        if f.kind == "dead_units":
            assert "relu are dead" in f.message
            twin = f.layer.replace("l.", "acts.")
            assert f.onset == next(g.onset for g in mod if (g.kind, g.layer) == (f.kind, twin))


def test_functional_relu_run_reads_as_its_module_twin(dying):
    a, b = _same(*dying)
    assert a == b


def test_functional_sigmoid_vanishing_gets_the_sigmoid_remedy():
    sgd = lambda ps: torch.optim.SGD(ps, lr=0.1)  # noqa: E731
    mod, fn = _findings(Modules, "sigmoid", sgd), _findings(Functional, "sigmoid", sgd)
    vanishing = [f for f in fn if f.kind == "vanishing"]
    assert vanishing and "sigmoid" in vanishing[0].remedy.text
    a, b = _same(mod, fn)
    assert a == b


class _Skip(nn.Module):
    """Six Linear(32, 32) with bias -3 (most pre-activations below 0), each followed by
    ``relu(z) + z`` (``skip``), ``relu(z)`` or ``h + relu(z)`` (``branch``)."""

    def __init__(self, how: str):
        super().__init__()
        self.inp = nn.Linear(16, 32)
        self.fcs = nn.ModuleList(nn.Linear(32, 32) for _ in range(6))
        for fc in self.fcs:
            nn.init.constant_(fc.bias, -3.0)
        self.out, self.how = nn.Linear(32, 4), how

    def forward(self, x):
        h = self.inp(x)
        for fc in self.fcs:
            z = fc(h)
            if self.how == "skip":
                h = F.relu(z) + z
            elif self.how == "plain":
                h = F.relu(z)
            else:
                h = h + F.relu(z)
        return self.out(h)


def _skip_run(how: str):
    torch.manual_seed(0)
    model = _Skip(how)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 4, generator=g)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(30):
            x = torch.randn(32, 16, generator=g)
            loss = F.cross_entropy(model(x), (x @ w).argmax(1))
            loss.backward(), opt.step(), opt.zero_grad(), probe.step(loss=loss)
    return probe.run, list(gp.diagnose(probe.run))


def test_a_functional_relu_whose_input_also_feeds_a_residual_read_as_dead_regression():
    """``relu(z) + z``: the gradient reaches z by the sum (slope 1 where the relu is 0, 2
    where it is not), yet z's 94-100 % of negative units were six dead_units errors, "a
    gradient block". The probe now sees the function's input added to and does not take it
    for the module's activation (``meta["functional_bypassed"]``); ``relu(z)`` alone keeps
    its errors, and a branch ``h + relu(z)`` (z itself not added) keeps its label."""
    run, found = _skip_run("skip")
    assert run.meta["functional_bypassed"] == {f"fcs.{i}": "relu" for i in range(6)}
    assert "functional_activations" not in run.meta
    assert not [f for f in found if f.kind == "dead_units"]
    run, found = _skip_run("plain")
    assert "functional_bypassed" not in run.meta
    assert len([f for f in found if f.kind == "dead_units" and f.severity == "error"]) == 6
    run, _ = _skip_run("branch")
    assert run.meta["functional_activations"] == {f"fcs.{i}": "relu" for i in range(6)}
    assert "functional_bypassed" not in run.meta
