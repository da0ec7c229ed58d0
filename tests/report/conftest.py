"""Small stored runs for the figure, report and browser tests (a few seconds in all)."""

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.report.figures import attach_theory

EVIL = "<script>alert(1)</script>"


def _mlp(depth=4, width=32, seed=0):
    torch.manual_seed(seed)
    layers = [m for _ in range(depth) for m in (nn.Linear(width, width), nn.Tanh())]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _train(model, path, steps=4, label=None, theory=False, **kwargs):
    """Train ``steps`` steps under watch; the label and theory's prediction are stored while
    the probe is open (a closed run is read-only)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    with gp.watch(model, every=1, histograms=True, path=path, updates=1, **kwargs) as probe:
        for _ in range(steps):
            x, y = torch.randn(64, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
        if label is not None:
            probe.run.set_meta("label", label)
        if theory:
            assert attach_theory(probe.run, model)
    return probe.run


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory):
    """A tanh MLP trained 4 steps, histograms on, theory's prediction stored: a run folder."""
    folder = tmp_path_factory.mktemp("mlp")
    _train(_mlp(), folder, label="standard init", theory=True).close()
    return folder


@pytest.fixture(scope="session")
def mlp_run_normalised(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlp_norm")
    model = _mlp(seed=1)
    gp.init.apply(model, "xavier_uniform")
    _train(model, folder, steps=1).close()
    return folder


class _Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


@pytest.fixture(scope="session")
def rnn_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("rnn") / "rnn.sqlite"
    torch.manual_seed(0)
    gp.check(_Recurrent(), torch.randn(4, 20, 8), path=path).run.close()
    return path


class Evil(nn.Module):
    """Layer names that are HTML: a report must show them, never run them."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleDict({EVIL: nn.Linear(32, 32), "a&b\"c'<i>": nn.Tanh()})
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        for m in self.blocks.values():
            x = m(x)
        return self.out(x)


@pytest.fixture(scope="session")
def evil_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evil")
    torch.manual_seed(0)
    _train(Evil(), folder, steps=3, label=EVIL).close()
    return folder


@pytest.fixture(scope="session")
def evil():
    """(the HTML layer name, the model class that uses it)."""
    return EVIL, Evil


@pytest.fixture(scope="session")
def evil_report(evil_run, tmp_path_factory):
    """The full HTML report of ``evil_run`` (every figure it supports), written once."""
    from gradprobe.report.html import write_html

    return write_html(evil_run, tmp_path_factory.mktemp("report") / "evil.html")
