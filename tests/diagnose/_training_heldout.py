"""Held-out training-time cases (issue 16): runs the corpus (_training.py) does not have,
built to judge the training-time diagnosis as an outside evaluator would — each a short
seeded run on this CPU, watched with the DEFAULT ``gp.watch(model, optimizer=opt)`` (what
users get) and ``probe.step(loss=loss)``.

Data: the project's own sklearn digits (``gradprobe.experiments.data.digits``) and
MNIST-1D (``...data.mnist1d``), the adding problem and the order-2 Markov tokens of
_training.py. Every case is a function ``seed, every -> (run, losses)``; ``every=None`` is
watch()'s default.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp

from ._training import V, adding_batches, mlp, token_batches


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from gradprobe.experiments.data import digits

    s = digits.load(seed=0)
    return s.x_train, s.y_train  # (N, 1, 8, 8), centred and scaled


@functools.cache
def _mnist1d() -> tuple[torch.Tensor, torch.Tensor]:
    from gradprobe.experiments.data import mnist1d

    s = mnist1d.load(n=2000, n_test=10, seed=0)
    return s.x_train, s.y_train  # (N, 40)


def image_batches(batch: int, gen: torch.Generator, flat: bool = False, shuffled=False):
    x, y = _digits()
    if shuffled:  # labels that do not belong to the images (a shuffling bug in the loader)
        y = y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(99))]
    while True:
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        xb = x[idx].flatten(1) if flat else x[idx]
        yield xb, y[idx]


def signal_batches(batch: int, gen: torch.Generator):
    x, y = _mnist1d()
    while True:
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        yield x[idx], y[idx]


# -- models ---------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    def __init__(self, c: int = 16, bn: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c) if bn else nn.Identity()
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * c) if bn else nn.Identity()
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(8 * c, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))


class ConvNeXtBlock(nn.Module):
    """Depthwise 3×3, LayerNorm over channels, pointwise MLP (GELU), layer scale, residual
    (Liu et al. 2022, shrunk)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1 = nn.Linear(c, 4 * c)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.1))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pw2(self.act(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtish(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 2, stride=2)
        self.blocks = nn.Sequential(ConvNeXtBlock(c), ConvNeXtBlock(c))
        self.norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x)).mean((2, 3))
        return self.head(self.norm(x))


class TinyViT(nn.Module):
    """2×2 patches of the 8×8 digit (16 tokens), torch encoder blocks (Pre-LN by default,
    ``norm_first=False``: Post-LN, no final norm), a class token; ``dropout`` in the blocks."""

    def __init__(self, d=32, layers=2, heads=4, norm_first=True, dropout=0.0) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, d, 2, stride=2)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(0.02 * torch.randn(1, 17, d))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, heads, 2 * d, dropout=dropout, batch_first=True, norm_first=norm_first
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d) if norm_first else nn.Identity()
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        for block in self.blocks:
            t = block(t)
        return self.head(self.norm(t[:, 0]))


class SeqRegressor(nn.Module):
    def __init__(self, cell: str = "GRU", hidden: int = 32) -> None:
        super().__init__()
        self.rnn = getattr(nn, cell)(2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)


def tiny_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    return _Logits(LlamaForCausalLM(cfg))


class _Logits(nn.Module):
    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, idx):
        return self.lm(input_ids=idx).logits


# -- the loop -------------------------------------------------------------------------------


def ce(out, y):
    return F.cross_entropy(out.float(), y)


def token_ce(out, y):
    return F.cross_entropy(out.reshape(-1, V).float(), y.reshape(-1))


def handmade_bce(out, y):
    """One-vs-all BCE written by hand: log(1 − sigmoid(z)) is log(0) = −inf once a logit
    passes ~17 in float32 (the stable form is F.binary_cross_entropy_with_logits)."""
    p = torch.sigmoid(out)
    t = F.one_hot(y, 10).float()
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).sum(1).mean()


@dataclass
class Held:
    """One held-out configuration; ``model``/``optimizer``/``data`` built per seed."""

    name: str
    model: Callable[[], nn.Module]
    optimizer: Callable[[list], torch.optim.Optimizer]
    data: Callable[[int, torch.Generator], object]
    loss: Callable = ce
    steps: int = 200
    batch: int = 32
    scheduler: Callable | None = None  # opt -> an LR scheduler stepped after each opt.step()
    clip: float | None = None
    autocast: torch.dtype | None = None
    scaler: float = 0.0  # a GradScaler's initial scale (float16); 0: none
    wrong_params: bool = False  # the optimizer holds another instance's parameters
    zero_before_step: bool = False  # opt.zero_grad() between backward and step
    train_mode: bool = True
    notes: dict = field(default_factory=dict)


def train(case: Held, seed: int = 0, every=None, **watch_kw):
    """Train ``case`` under watch()'s default (or ``every=``) with ``probe.step(loss=...)``;
    returns the Run and the per-step losses."""
    torch.manual_seed(seed)
    model = case.model()
    other = case.model() if case.wrong_params else model
    opt = case.optimizer(list(other.parameters()))
    sched = case.scheduler(opt) if case.scheduler is not None else None
    scaler = torch.amp.GradScaler("cpu", init_scale=case.scaler) if case.scaler else None
    gen = torch.Generator().manual_seed(seed)
    batches = case.data(case.batch, gen)
    amp = (
        torch.autocast("cpu", dtype=case.autocast)
        if case.autocast is not None
        else contextlib.nullcontext()
    )
    kw = ({} if every is None else {"every": every}) | watch_kw
    losses = []
    model.train(case.train_mode)
    with gp.watch(model, optimizer=opt, **kw) as probe:
        for _ in range(case.steps):
            x, y = next(batches)
            with amp:
                out = model(x)
            loss = case.loss(out, y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if case.zero_before_step:
                opt.zero_grad()
            if case.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), case.clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad()
            model.zero_grad()
            if sched is not None:
                sched.step()
            probe.step(loss=loss)
            losses.append(float(loss.detach()))
    return probe.run, losses


# -- the cases ------------------------------------------------------------------------------


def _adam(lr, **kw):
    return lambda p: torch.optim.Adam(p, lr=lr, **kw)


def _adamw(lr, wd=0.01, **kw):
    return lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=wd, **kw)


def _sgd(lr, **kw):
    return lambda p: torch.optim.SGD(p, lr=lr, **kw)


def _jump(at: int, factor: float):
    return lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: factor if s >= at else 1.0)


def _warmup_cosine(warm: int, total: int):
    def make(opt):
        def f(s):
            if s < warm:
                return (s + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))

        return torch.optim.lr_scheduler.LambdaLR(opt, f)

    return make


def _images(batch, gen):
    return image_batches(batch, gen)


def _flat(batch, gen):
    return image_batches(batch, gen, flat=True)


def _shuffled(batch, gen):
    return image_batches(batch, gen, flat=True, shuffled=True)


def _adding(batch, gen):
    return adding_batches(batch, gen)


def _tokens(batch, gen):
    return token_batches(batch, gen)


def _dropout_mlp():
    return nn.Sequential(
        nn.Linear(40, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 128), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(128, 10),
    )  # fmt: skip


BROKEN = {
    # the learning rate jumps ×30 at step 150 (a schedule bug): the loss jumps there
    "lr_jump_x30": Held("lr_jump_x30", mlp, _sgd(0.05), _flat, scheduler=_jump(150, 30.0)),
    # SGD at 1e-5 on a CNN: the weights barely move
    "cnn_sgd_1e-5": Held("cnn_sgd_1e-5", SmallCNN, _sgd(1e-5), _images),
    # the optimizer was built over another instance's parameters: nothing is updated
    "optimizer_wrong_params": Held(
        "optimizer_wrong_params", mlp, _adam(1e-3), _flat, wrong_params=True
    ),
    # opt.zero_grad() between backward() and step(): every step applies a zero gradient
    "zero_grad_before_step": Held(
        "zero_grad_before_step", SmallCNN, _adam(1e-3), _images, zero_before_step=True
    ),
    # labels shuffled against the images: nothing to learn, the layers are fine
    "shuffled_labels": Held("shuffled_labels", mlp, _adam(1e-3), _shuffled),
    # a hand-written BCE: log(1 − sigmoid(z)) = log(0) once the logits grow
    "handmade_bce_log0": Held(
        "handmade_bce_log0", mlp, _adam(0.05), _flat, loss=handmade_bce, steps=150
    ),
    # a CNN at Adam lr 0.1: its ReLUs die during training
    "cnn_adam_0.1": Held("cnn_adam_0.1", SmallCNN, _adam(0.1), _images),
    # a tanh MLP on MNIST-1D at Adam lr 0.05: it saturates during training
    "tanh_adam_0.05": Held(
        "tanh_adam_0.05", lambda: mlp((40, 128, 128, 10), nn.Tanh), _adam(0.05), signal_batches
    ),
    # a vanilla RNN on the adding problem, SGD lr 1.0, no clipping
    "rnn_no_clip": Held(
        "rnn_no_clip",
        lambda: SeqRegressor("RNN"),
        _sgd(1.0),
        _adding,
        batch=16,
        loss=F.mse_loss,
    ),
    # float16 autocast, inputs ×300, a GradScaler: activations overflow, steps are skipped
    "fp16_scaler_overflow": Held(
        "fp16_scaler_overflow",
        lambda: mlp((64, 256, 256, 10)),
        _sgd(0.01),
        lambda b, g: ((300 * x, y) for x, y in image_batches(b, g, flat=True)),
        steps=60,
        autocast=torch.float16,
        scaler=2.0**16,
    ),
}

#: tried and left out (docs/DIAGNOSIS.md, "held-out training check"): what they do is
#: seed-dependent, so no verdict is stable
DROPPED = {
    # a spike at step 197 on seed 1 only; seed 0 trains smoothly
    "adam_beta2_0.9": Held("adam_beta2_0.9", mlp, _adam(3e-3, betas=(0.9, 0.9), eps=1e-10), _flat),
}

HEALTHY = {
    "vit_adamw_warmup": Held(
        "vit_adamw_warmup", TinyViT, _adamw(3e-3), _images, scheduler=_warmup_cosine(20, 200)
    ),
    "convnext_adamw": Held("convnext_adamw", ConvNeXtish, _adamw(3e-3), _images),
    "gru_clipped": Held(
        "gru_clipped",
        lambda: SeqRegressor("GRU"),
        _adam(1e-2),
        _adding,
        batch=16,
        clip=1.0,
        loss=F.mse_loss,
    ),
    "mlp_sgd_momentum": Held("mlp_sgd_momentum", mlp, _sgd(0.01, momentum=0.9), _flat),
    "llama_adamw_cosine": Held(
        "llama_adamw_cosine",
        tiny_llama,
        _adamw(3e-3),
        _tokens,
        batch=16,
        scheduler=_warmup_cosine(20, 200),
        loss=token_ce,
    ),
    # dropout 0.5: a noisy loss that still falls
    "dropout_mlp_mnist1d": Held("dropout_mlp_mnist1d", _dropout_mlp, _adam(1e-3), signal_batches),
    # a GradScaler starting at 2^24: its first steps' scaled gradients overflow and are
    # skipped while it lowers its scale; that is how it works, not a failure
    "fp16_gradscaler": Held(
        "fp16_gradscaler",
        lambda: mlp((64, 256, 256, 10)),
        _adam(1e-3),
        _flat,
        steps=100,
        autocast=torch.float16,
        scaler=2.0**24,
    ),
    # StepLR ÷10 at step 100: the loss drops suddenly (not a spike)
    "step_lr_decay": Held(
        "step_lr_decay",
        mlp,
        _sgd(0.05, momentum=0.9),
        _flat,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 100, 0.1),
    ),
    # AdamW with weight decay 1.0 at lr 1e-2: decays weights 1 % a step, and still learns
    # (to 0.1 from 2.2 in 200 steps): not a failure at this length
    "adamw_wd_1": Held("adamw_wd_1", mlp, _adamw(1e-2, wd=1.0), _flat),
    # BatchNorm over batches of 2 with SGD momentum: the loss of 2 examples scatters by
    # ~its level, yet the trend falls 2.4 → 0.3-0.6: the batch's noise, not an oscillation
    "bn_batch_2": Held(
        "bn_batch_2", lambda: SmallCNN(bn=True), _sgd(0.05, momentum=0.9), _images, batch=2
    ),
}
