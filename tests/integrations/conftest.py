"""A small stored run with histograms, NaN and Inf, shared by the export tests."""

import pytest
import torch

import gradprobe as gp


def make_run(path=None, steps: int = 3):
    """Three logged steps of a tanh/ReLU MLP, with their loss and lr; step 1 feeds +Inf, step
    2 a NaN."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 12), torch.nn.ReLU(),
        torch.nn.Linear(12, 3),
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gp.watch(model, histograms=True, bins=16, path=path, optimizer=opt) as probe:
        for i in range(steps):
            x = torch.randn(20, 6, generator=g)
            if i == 1:
                x[3, 2] = float("inf")
            if i == 2:
                x[0, 0] = float("nan")
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)  # optimizer= ended the step: this gives it its loss
    return probe.run


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "run.sqlite"
    make_run(path).close()
    return gp.Run.load(path)
