"""Small training runs, watched end to end: the models, the data and the loop the training-time
cases and the healthy runs share. Each run takes CPU seconds (tiny widths, <= 300 steps).

Data are built here (nothing downloaded): sklearn's embedded 8×8 digits, and a token stream
from a fixed order-2 Markov chain (vocabulary 32; each pair of tokens has three successors,
so the best loss is ~0.8 nats against ln 32 = 3.47 for a uniform guess, and a model needs
the token two back — attention or a recurrence — to get there).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp

V, T = 32, 32  # vocabulary and context of the token tasks


@functools.cache
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return x, torch.tensor(d.target)


@functools.cache
def markov_stream(n: int = 40_000) -> torch.Tensor:
    g = np.random.default_rng(1234)
    succ = g.integers(0, V, size=(V, V, 3))
    probs = np.array([0.7, 0.2, 0.1])
    out = np.zeros(n, dtype=np.int64)
    out[:2] = g.integers(0, V, 2)
    choice = g.choice(3, size=n, p=probs)
    for i in range(2, n):
        out[i] = succ[out[i - 2], out[i - 1], choice[i]]
    return torch.from_numpy(out)


def digit_batches(batch: int, gen: torch.Generator, images: bool = False):
    x, y = digits()
    while True:
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        xb = x[idx].view(-1, 1, 8, 8) if images else x[idx]
        yield xb, y[idx]


def train_on_digits(model: nn.Module, opt, steps: int, seed: int = 0, batch: int = 64):
    """``steps`` of cross-entropy on random digit batches (``digit_batches``) under the default
    ``gp.watch(model, optimizer=opt)`` with ``probe.step(loss=loss)``; the Run."""
    batches = digit_batches(batch, torch.Generator().manual_seed(seed))
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(steps):
            x, y = next(batches)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss=loss)
    return probe.run


def shift_batches(batch: int, gen: torch.Generator, lag: int = 1):
    """Random tokens; the target at t is the token at t − lag (itself for t < lag): a
    model must attend ``lag`` positions back (ln 32 = 3.47 → 0)."""
    while True:
        x = torch.randint(0, V, (batch, T), generator=gen)
        y = torch.cat([x[:, :lag], x[:, :-lag]], dim=1)
        yield x, y


def adding_batches(batch: int, gen: torch.Generator, steps: int = 30):
    """Hochreiter & Schmidhuber's adding problem: (value, marker) pairs; the target is the
    sum of the two marked values (one in each half), so the first half must be remembered."""
    while True:
        v = torch.rand(batch, steps, generator=gen)
        marks = torch.zeros(batch, steps)
        i = torch.randint(0, steps // 2, (batch,), generator=gen)
        j = torch.randint(steps // 2, steps, (batch,), generator=gen)
        marks[torch.arange(batch), i] = 1.0
        marks[torch.arange(batch), j] = 1.0
        yield torch.stack([v, marks], -1), (v * marks).sum(1)


def token_batches(batch: int, gen: torch.Generator):
    s = markov_stream()
    while True:
        start = torch.randint(0, s.numel() - T - 1, (batch,), generator=gen)
        idx = start[:, None] + torch.arange(T + 1)
        chunk = s[idx]
        yield chunk[:, :-1], chunk[:, 1:]


# -- models ---------------------------------------------------------------------------------


def mlp(widths=(64, 64, 64, 10), act=nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class CausalSelfAttention(nn.Module):
    """GPT-2's attention (c_attn, c_proj) through F.scaled_dot_product_attention."""

    def __init__(self, d: int, heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.q_norm = nn.LayerNorm(d // heads) if qk_norm else None
        self.k_norm = nn.LayerNorm(d // heads) if qk_norm else None

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, qk_norm)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    """GPT-2 style (Pre-LN blocks, std-0.02 init, residual projections scaled by
    1/√(2·layers)); ``post_ln=True``: torch's Post-LN TransformerEncoderLayer blocks with
    their own init instead."""

    def __init__(self, d=32, layers=2, heads=4, post_ln=False, qk_norm=False) -> None:
        super().__init__()
        self.wte = nn.Embedding(V, d)
        self.wpe = nn.Embedding(T, d)
        if post_ln:
            self.h = nn.ModuleList(
                nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
                for _ in range(layers)
            )
        else:
            self.h = nn.ModuleList(Block(d, heads, qk_norm) for _ in range(layers))
        self.post_ln = post_ln
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, V, bias=False)
        for name, p in self.named_parameters():
            if post_ln and name.startswith("h."):
                continue
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        mask = nn.Transformer.generate_square_subsequent_mask(idx.shape[1])
        for block in self.h:
            x = block(x, src_mask=mask, is_causal=True) if self.post_ln else block(x)
        return self.lm_head(self.ln_f(x))


class DeepNormBlock(nn.Module):
    """A Post-LN block with DeepNorm (Wang et al. 2022): ``LN(α x + f(x))`` for each
    sub-layer, ``α = (2N)^¼`` and the value, output and MLP weights Xavier-initialised with
    gain ``β = (8N)^-¼`` (encoder-only constants; the queries and keys with gain 1)."""

    def __init__(self, d: int, heads: int, layers: int) -> None:
        super().__init__()
        self.alpha, beta = (2 * layers) ** 0.25, (8 * layers) ** -0.25
        self.attn = CausalSelfAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.ln_2 = nn.LayerNorm(d)
        w = self.attn.c_attn.weight
        with torch.no_grad():
            for i, gain in enumerate((1.0, 1.0, beta)):  # q, k, v
                nn.init.xavier_normal_(w[i * d : (i + 1) * d], gain=gain)
            for lin in (self.attn.c_proj, self.mlp[0], self.mlp[2]):
                nn.init.xavier_normal_(lin.weight, gain=beta)
                nn.init.zeros_(lin.bias)
            nn.init.zeros_(self.attn.c_attn.bias)

    def forward(self, x):
        x = self.ln_1(self.alpha * x + self.attn(x))
        return self.ln_2(self.alpha * x + self.mlp(x))


class DeepNormLM(nn.Module):
    """``layers`` DeepNorm Post-LN blocks: deep Post-LN that trains without warm-up."""

    def __init__(self, d=32, layers=24, heads=4) -> None:
        super().__init__()
        self.wte = nn.Embedding(V, d)
        self.wpe = nn.Embedding(T, d)
        self.h = nn.ModuleList(DeepNormBlock(d, heads, layers) for _ in range(layers))
        self.lm_head = nn.Linear(d, V, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(x)


class RecurrentLM(nn.Module):
    def __init__(self, cell="LSTM", d=16, hidden=32) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.rnn = getattr(nn, cell)(d, hidden, batch_first=True)
        self.head = nn.Linear(hidden, V)

    def forward(self, idx):
        out, _ = self.rnn(self.emb(idx))
        return self.head(out)


class RecurrentRegressor(nn.Module):
    """A recurrent net read at its last step (the adding problem)."""

    def __init__(self, cell="LSTM", hidden=32) -> None:
        super().__init__()
        self.rnn = getattr(nn, cell)(2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(x + self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    def __init__(self, c: int = 8, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.blocks = nn.Sequential(*(BasicBlock(c) for _ in range(blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = self.blocks(self.relu(self.bn(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


# -- the loop -------------------------------------------------------------------------------


@dataclass
class Case:
    """One training configuration. ``model``/``optimizer`` are built per seed."""

    name: str
    model: Callable[[], nn.Module]
    optimizer: Callable[[list], torch.optim.Optimizer]
    data: str  # "digits" | "images" | "tokens"
    steps: int = 200
    batch: int = 32
    clip: float | None = None
    warmup: int = 0
    autocast: torch.dtype | None = None
    loss: str = "ce"  # "ce" | "mse" (on one-hot targets)
    raw: bool = False  # digits left at the pixel scale (~0-16): un-normalised inputs
    scale: float = 1.0  # inputs multiplied by this (readings in the hundreds)


def _batches(case: Case, gen: torch.Generator):
    if case.data == "tokens":
        return token_batches(case.batch, gen)
    if case.data == "shift":
        return shift_batches(case.batch, gen)
    if case.data == "adding":
        return adding_batches(case.batch, gen)
    batches = digit_batches(case.batch, gen, images=case.data == "images")
    if case.raw:
        return ((4 * x + 4, y) for x, y in batches)
    if case.scale != 1.0:
        return ((case.scale * x, y) for x, y in batches)
    return batches


def _loss(case: Case, out, y):
    if case.data in ("tokens", "shift"):
        return F.cross_entropy(out.reshape(-1, V).float(), y.reshape(-1))
    if case.data == "adding":
        return F.mse_loss(out, y)
    if case.loss == "mse":
        return F.mse_loss(out.float(), F.one_hot(y, 10).float())
    return F.cross_entropy(out.float(), y)


def train(case: Case, seed: int = 0):
    """Train ``case`` under ``gp.watch(model, optimizer=opt)`` with the loss passed to
    ``probe.step(loss=loss)`` after each optimizer step; returns the Run and the per-step
    losses (for the tests' own checks)."""
    torch.manual_seed(seed)
    model = case.model()
    opt = case.optimizer(list(model.parameters()))
    sched = None
    if case.warmup:
        w = case.warmup
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / w))
    gen = torch.Generator().manual_seed(seed)
    batches = _batches(case, gen)
    losses = []
    amp = (
        torch.autocast("cpu", dtype=case.autocast)
        if case.autocast is not None
        else contextlib.nullcontext()
    )
    with gp.watch(model, optimizer=opt) as probe:  # watch()'s default schedule
        for _ in range(case.steps):
            x, y = next(batches)
            with amp:
                out = model(x)
            loss = _loss(case, out, y)
            loss.backward()
            if case.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), case.clip)
            opt.step()  # ends the probe's step (optimizer=): it reads the lr used
            opt.zero_grad()
            if sched is not None:
                sched.step()
            probe.step(loss=loss)  # gives that step its loss
            losses.append(float(loss.detach()))
    return probe.run, losses


# -- the corpus -----------------------------------------------------------------------------


def _adam(lr, **kw):
    return lambda p: torch.optim.Adam(p, lr=lr, **kw)


def _adamw(lr):
    return lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.01)


def _sgd(lr, **kw):
    return lambda p: torch.optim.SGD(p, lr=lr, **kw)


HEALTHY = {
    "gpt2_adamw_warmup": Case(
        "gpt2_adamw_warmup", TinyGPT, _adamw(3e-3), "tokens", steps=200, batch=16, warmup=20
    ),
    "gpt2_shift_adamw_warmup": Case(
        "gpt2_shift_adamw_warmup", TinyGPT, _adamw(3e-3), "shift", steps=200, batch=16, warmup=20
    ),
    "resnet_bn_digits": Case(
        "resnet_bn_digits", ResNet, _sgd(0.05, momentum=0.9), "images", steps=200
    ),
    "lstm_clipped": Case(
        "lstm_clipped", RecurrentLM, _adam(1e-2), "tokens", steps=200, batch=16, clip=1.0
    ),
    "mlp_adam": Case("mlp_adam", mlp, _adam(1e-3), "digits", steps=200),
    # converges to ~0.02 with a heavy-tailed batch loss (0.002-0.9): no spike
    "mlp_sgd_momentum": Case(
        "mlp_sgd_momentum", lambda: mlp((64, 128, 128, 10)), _sgd(0.05, momentum=0.9), "digits"
    ),
    "deepnorm_18": Case(
        "deepnorm_18", lambda: DeepNormLM(layers=18), _adam(1e-3), "shift", steps=120, batch=16
    ),
    "mlp_fp16_autocast": Case(
        "mlp_fp16_autocast",
        lambda: mlp((64, 256, 256, 10)),
        _adam(1e-3),
        "digits",
        steps=100,
        autocast=torch.float16,
    ),
}

BROKEN = {
    "postln_no_warmup": Case(
        "postln_no_warmup", lambda: TinyGPT(post_ln=True), _adam(3e-2), "shift", batch=16
    ),
    "no_qk_norm_high_lr": Case("no_qk_norm_high_lr", TinyGPT, _adam(0.1), "shift", batch=16),
    "gpt2_lr_3e-2": Case("gpt2_lr_3e-2", TinyGPT, _adam(3e-2), "tokens", batch=16),
    "fp16_overflow": Case(
        "fp16_overflow",
        lambda: mlp((64, 256, 256, 10)),
        _sgd(0.01),
        "digits",
        steps=60,
        autocast=torch.float16,
        scale=250.0,
    ),
    "dying_relu": Case("dying_relu", lambda: mlp((64, 128, 128, 10)), _adam(0.05), "digits"),
    "sgd_lr_1_nan": Case(
        "sgd_lr_1_nan", lambda: mlp((64, 128, 128, 10)), _sgd(1.0), "digits", loss="mse", raw=True
    ),
    "lstm_no_clip": Case("lstm_no_clip", RecurrentRegressor, _sgd(1.0), "adding", batch=16),
    "gru_no_clip": Case(
        "gru_no_clip", lambda: RecurrentRegressor("GRU"), _sgd(0.6), "adding", batch=16
    ),
    "sgd_oscillating": Case("sgd_oscillating", lambda: mlp(act=nn.Tanh), _sgd(5.0), "digits"),
    "lr_too_small": Case("lr_too_small", mlp, _sgd(1e-4), "digits"),
}
