"""The data of a fix: the same batches in the same order, a seeded hold-out, a loader, the
optimizer read back as data, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradprobe.errors import InvalidInputError
from gradprobe.fix.data import constant_loss, prepare
from gradprobe.fix.recipe import OptimizerSpec

from .conftest import mlp


def test_batches_repeat_exactly_and_hold_out_a_fifth():
    x, y = torch.randn(100, 3), torch.randint(0, 2, (100,))
    d = prepare((x, y), 16, 0.2, 0, 50)
    first = [b[0] for b in d.batches(20)]
    again = [b[0] for b in d.batches(20)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert len(d.x) == 80 and sum(len(c[1]) for c in d.held) == 20


def test_held_out_examples_are_never_trained_on():
    x = torch.arange(100.0).unsqueeze(1)
    d = prepare((x, torch.zeros(100, dtype=torch.long)), 8, 0.2, 0, 200)
    held = {float(v) for c in d.held for v in c[0].flatten()}
    seen = {float(v) for b in d.batches(200) for v in b[0].flatten()}
    assert held and not (held & seen)


def test_a_loader_is_cached_in_order_and_its_tail_held_out():
    batches = [(torch.full((4, 2), float(i)), torch.zeros(4, dtype=torch.long)) for i in range(10)]
    d = prepare(batches, 4, 0.2, 0, 20)
    assert [float(b[0][0, 0]) for b in d.batches(10)] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert [float(c[0][0, 0]) for c in d.held] == [8, 9]


@pytest.mark.parametrize(
    "data,match",
    [
        (torch.randn(8, 2), "single tensor"),
        ((torch.randn(8, 2), torch.zeros(7)), "same number of examples"),
        ((torch.randn(1, 2), torch.zeros(1)), "at least 2 examples"),
        ([], "no batch"),
        ([torch.randn(2, 2)], "pair"),
        (3, "re-iterable"),
    ],
)
def test_bad_data_says_what_to_pass(data, match):
    with pytest.raises(InvalidInputError, match=match):
        prepare(data, 8, 0.2, 0, 10)


def test_constant_loss_is_the_prior_entropy_or_the_variance():
    assert constant_loss(None, torch.tensor([0, 1, 0, 1])) == pytest.approx(math.log(2))
    assert constant_loss(None, torch.tensor([[1.0], [3.0]])) == pytest.approx(1.0)
    assert constant_loss(lambda o, t: o.sum(), torch.tensor([0, 1])) is None


def test_optimizer_spec_round_trips_the_options():
    model = mlp()
    spec = OptimizerSpec.from_factory(
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), model
    )
    assert spec.code() == (
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)"
    )
    ns = {"model": model, "torch": torch}
    exec(spec.scaled(0.3).code(), ns)
    assert ns["optimizer"].defaults["lr"] == 0.03


def test_optimizer_spec_keeps_param_groups():
    model = mlp()
    head = list(model[-1].parameters())
    body = [p for p in model.parameters() if all(p is not h for h in head)]

    def factory(params):
        return torch.optim.Adam([{"params": body}, {"params": head, "lr": 1e-2}], lr=1e-3)

    spec = OptimizerSpec.from_factory(factory, model).scaled(0.1)
    opt = spec.build(model.parameters())
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]


def test_optimizer_must_build_an_optimizer():
    with pytest.raises(InvalidInputError, match=r"torch\.optim\.Optimizer"):
        OptimizerSpec.from_factory(lambda p: "adam", nn.Linear(2, 2))
