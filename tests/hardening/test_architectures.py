"""Named regression cases: real architectures built here from torch.nn (no downloads)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import gradprobe as gp

WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding)
TENSOR_SCHEMES = [n for n in gp.init.names() if gp.init.get(n).kind == "tensor"]


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(x + self.bn2(self.conv2(out)))


def small_resnet():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        BasicBlock(8), BasicBlock(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


def vgg(bn: bool):
    def stage(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), *([nn.BatchNorm2d(o)] if bn else []), nn.ReLU()]

    return nn.Sequential(
        *stage(1, 8), *stage(8, 8), nn.MaxPool2d(2), *stage(8, 16), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    )  # fmt: skip


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab=50, width=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, num_layers=2, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out[:, -1])


def transformer():
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=True)
    return nn.Sequential(
        nn.Linear(8, 16), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
        nn.Flatten(), nn.Linear(16 * 6, 10),
    )  # fmt: skip


class MixerBlock(nn.Module):
    def __init__(self, tokens=6, channels=8):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, 12), nn.GELU(), nn.Linear(12, tokens))
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, 16), nn.GELU(), nn.Linear(16, channels)
        )

    def forward(self, x):  # (batch, tokens, channels)
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


def mixer():
    return nn.Sequential(
        nn.Linear(8, 8), MixerBlock(), MixerBlock(), nn.Flatten(), nn.Linear(48, 10)
    )


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.out = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1))

    def forward(self, x):
        skip = self.down1(x)
        return self.out(torch.cat([skip, self.up(self.down2(skip))], dim=1))


CASES = {
    "resnet": (small_resnet, lambda g: torch.randn(4, 1, 8, 8, generator=g)),
    "vgg": (lambda: vgg(False), lambda g: torch.randn(4, 1, 8, 8, generator=g)),
    "vgg_bn": (lambda: vgg(True), lambda g: torch.randn(4, 1, 8, 8, generator=g)),
    "lstm_lm": (LSTMLanguageModel, lambda g: torch.randint(0, 50, (4, 7), generator=g)),
    "transformer": (transformer, lambda g: torch.randn(4, 6, 8, generator=g)),
    "mixer": (mixer, lambda g: torch.randn(4, 6, 8, generator=g)),
    "unet": (UNet, lambda g: torch.randn(4, 1, 8, 8, generator=g)),
}


@pytest.mark.parametrize("name", CASES)
def test_real_architecture_inits_checks_and_watches(name):
    build, data = CASES[name]
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model, x = build(), data(g)
    for scheme in [*TENSOR_SCHEMES, "default", "lsuv"]:
        trial = copy.deepcopy(model)
        options = {"data": x} if scheme == "lsuv" else {}
        gp.init.apply(trial, scheme, generator=torch.Generator().manual_seed(1), **options)
        assert all(torch.isfinite(p).all() for p in trial.parameters()), scheme
    if name == "resnet":  # Fixup finds the two BasicBlocks
        report = gp.init.initialize(copy.deepcopy(model), "fixup", example_input=x)
        assert report.details["blocks"] == 2
    result = gp.check(model, x)
    assert result.run.steps == [0]
    layers = {la.name for la in result.run.layers("module")}
    with_weights = [n for n, m in model.named_modules() if isinstance(m, WEIGHTED)]
    assert with_weights[0] in layers and with_weights[-1] in layers
    gp.diagnose(result.run)
    str(result)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    losses = []
    for m, watched in ((a, False), (b, True)):
        torch.manual_seed(3)
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        probe = gp.watch(m, histograms=True) if watched else None
        run_losses = []
        for _ in range(3):
            loss = m(x).float().pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            if probe is not None:
                probe.step()
            run_losses.append(loss.detach())
        if probe is not None:
            probe.close()
        losses.append(run_losses)
    assert all(torch.equal(u, v) for u, v in zip(*losses, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
