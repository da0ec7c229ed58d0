"""A hypothesis strategy for random models from the torch.nn zoo, with a matching batch.

Each drawn case is ``(model, inputs, target)``: the model is built from blocks that keep
a (batch, width) or (batch, channels, length) or (batch, time, width) shape, so every
combination runs.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

ACTIVATIONS = [
    lambda: nn.ReLU(),
    lambda: nn.ReLU(inplace=True),
    nn.RReLU, nn.Hardtanh, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.Hardshrink, nn.LeakyReLU, nn.LogSigmoid,
    nn.Softplus, nn.Softshrink, nn.PReLU, nn.Softsign, nn.Tanhshrink,
    lambda: nn.Softmax(dim=-1), lambda: nn.LogSoftmax(dim=-1), lambda: nn.Softmin(dim=-1),
    lambda: nn.Threshold(0.1, 0.0),
]  # fmt: skip

KEYS = st.text(
    alphabet=st.characters(blacklist_characters=".", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
).filter(lambda k: k not in ("training",) and not hasattr(nn.Module, k))


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class Shared(nn.Module):
    """One Linear used twice per forward (weight sharing)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.lin(self.act(self.lin(x)))


class Keyed(nn.Module):
    """A ModuleDict with arbitrary keys, applied in order."""

    def __init__(self, blocks: dict[str, nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, x):
        for block in self.blocks.values():
            x = block(x)
        return x


class Recurrent(nn.Module):
    def __init__(self, kind: str, width: int, batch_first: bool, tuple_out: bool) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(width, width, batch_first=batch_first)
        self.batch_first, self.tuple_out = batch_first, tuple_out

    def forward(self, x):  # x: (batch, time, width)
        out, state = self.rnn(x if self.batch_first else x.transpose(0, 1))
        out = out if self.batch_first else out.transpose(0, 1)
        return (out, state) if self.tuple_out else out


class First(nn.Module):
    def forward(self, x):
        return x[0] if isinstance(x, tuple) else x


class DictHead(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return {"logits": self.head(x), "features": x}


@st.composite
def dense_block(draw, width: int) -> nn.Module:
    parts: list[nn.Module] = [nn.Linear(width, width)]
    norm = draw(st.sampled_from([None, "batch", "layer"]))
    if norm == "batch":
        parts.append(nn.BatchNorm1d(width))
    elif norm == "layer":
        parts.append(nn.LayerNorm(width))
    parts.append(draw(st.sampled_from(ACTIVATIONS))())
    if draw(st.booleans()):
        parts.append(nn.Dropout(0.1))
    block = nn.Sequential(*parts)
    kind = draw(st.sampled_from(["plain", "residual", "shared"]))
    if kind == "residual":
        return Residual(block)
    if kind == "shared":
        return Shared(width)
    return block


@st.composite
def models(draw):
    """(model, inputs, target) with a random architecture."""
    family = draw(st.sampled_from(["dense", "conv", "recurrent", "attention", "embedding"]))
    width = draw(st.sampled_from([4, 8, 12]))
    batch = draw(st.sampled_from([3, 6]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 3, (batch,), generator=g)
    if family == "dense":
        blocks = [draw(dense_block(width)) for _ in range(draw(st.integers(1, 4)))]
        if draw(st.booleans()):
            keys = draw(st.lists(KEYS, min_size=len(blocks), max_size=len(blocks), unique=True))
            body: nn.Module = Keyed(dict(zip(keys, blocks, strict=True)))
        else:
            body = nn.Sequential(*blocks)
        head = DictHead(width) if draw(st.booleans()) else nn.Linear(width, 3)
        model = nn.Sequential(nn.Linear(5, width), body, head)
        inputs = torch.randn(batch, 5, generator=g)
    elif family == "conv":
        norm = draw(st.sampled_from([nn.BatchNorm1d(width), nn.GroupNorm(2, width), nn.Identity()]))
        act = draw(st.sampled_from(ACTIVATIONS))()
        model = nn.Sequential(
            nn.Conv1d(2, width, 3, padding=1), norm, act, nn.Conv1d(width, width, 3), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(width, 3),
        )  # fmt: skip
        inputs = torch.randn(batch, 2, 7, generator=g)
    elif family == "recurrent":
        kind = draw(st.sampled_from(["RNN", "LSTM", "GRU"]))
        tuple_out = draw(st.booleans())
        rnn = Recurrent(kind, width, draw(st.booleans()), tuple_out)
        model = nn.Sequential(nn.Linear(4, width), rnn, First(), nn.Flatten(), nn.LazyLinear(3))
        inputs = torch.randn(batch, 5, 4, generator=g)
        model(inputs)  # materialise the lazy head
    elif family == "attention":
        layer = nn.TransformerEncoderLayer(
            width, 2, 2 * width, dropout=0.0, batch_first=True,
            activation=draw(st.sampled_from(["relu", "gelu"])),
        )  # fmt: skip
        model = nn.Sequential(nn.Linear(4, width), layer, nn.Flatten(), nn.Linear(5 * width, 3))
        inputs = torch.randn(batch, 5, 4, generator=g)
    else:
        model = nn.Sequential(
            nn.Embedding(11, width), nn.Flatten(), nn.Linear(4 * width, width), nn.GELU(),
            nn.Linear(width, 3),
        )  # fmt: skip
        inputs = torch.randint(0, 11, (batch, 4), generator=g)
    return model, inputs, target
