"""A fifth batch of held-out training-time cases (issue 16): runs in none of the corpus
(_training.py) and the four earlier held-out batches. Same data (the project's digits and
MNIST-1D, the adding problem, the Markov tokens); the loop (``train``) is the earlier
batches' with what they lack: a failure injected at a given step (a bias shifted, an input
blown up, a positive scale turned negative), ``clip_grad_value_``, a multi-task loss, a
contrastive loss over two views, and the two other ways to watch: ``gp.watch(model)``
without ``optimizer=`` (``probe.step(loss=, lr=)`` ends each step) and a probe closed by
hand instead of a ``with`` block. Models they lack: a 2-layer LSTM with dropout, a
bidirectional GRU, a gated linear recurrence (RWKV/Mamba-like), a causal 1-D convolution
LM, a ConvNeXt block with a 7×7 depthwise convolution, a Hugging Face ViT from a config, a
mixture of experts inside repeated blocks, an output through exp (Poisson NLL), a layer
cast to float16 by hand, a hand-written attention over torch's SDPA; optimisers they lack:
NAdam, RAdam, Adamax.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp

from ._training import T, V, mlp
from ._training_heldout import (
    Held,
    SmallCNN,
    TinyViT,
    _adam,
    _adamw,
    _digits,
    _flat,
    _images,
    _sgd,
    _tokens,
    _warmup_cosine,
    image_batches,
    signal_batches,
    token_ce,
)
from ._training_heldout2 import _onecycle, _shift, deep_mlp
from ._training_heldout3 import _upsampled

__all__ = ["BROKEN", "DROPPED", "HEALTHY", "PAIRS", "Held5", "train"]


@dataclass
class Held5(Held):
    """A held-out configuration with the fifth loop's knobs."""

    #: (step, fn(model)): ``fn`` runs under no_grad before the forward of ``step``
    inject: tuple[int, Callable[[nn.Module], None]] | None = None
    clip_value: float | None = None  # clip_grad_value_ before the step
    loss_scale: float = 1.0
    no_optimizer: bool = False  # gp.watch(model); probe.step(loss=, lr=) ends each step
    by_hand: bool = False  # probe = gp.watch(...); ...; probe.close() (no with block)


def train(case: Held5, seed: int = 0, every=None, **watch_kw):
    """The earlier batches' loop with ``Held5``'s knobs; returns the Run and the losses."""
    torch.manual_seed(seed)
    model = case.model()
    opt = case.optimizer(list(model.parameters()))
    sched = case.scheduler(opt) if case.scheduler is not None else None
    gen = torch.Generator().manual_seed(seed)
    batches = case.data(case.batch, gen)
    amp = (
        torch.autocast("cpu", dtype=case.autocast)
        if case.autocast is not None
        else contextlib.nullcontext()
    )
    kw = ({} if every is None else {"every": every}) | watch_kw
    if not case.no_optimizer:
        kw["optimizer"] = opt
    losses = []
    model.train(case.train_mode)
    probe = gp.watch(model, **kw)
    with contextlib.nullcontext() if case.by_hand else probe:
        for step in range(case.steps):
            if case.inject is not None and step == case.inject[0]:
                with torch.no_grad():
                    case.inject[1](model)
            x, y = next(batches)
            with amp:
                out = model(x)
            loss = case.loss_scale * case.loss(out, y)
            loss.backward()
            if case.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), case.clip)
            if case.clip_value is not None:
                torch.nn.utils.clip_grad_value_(model.parameters(), case.clip_value)
            lr = opt.param_groups[0]["lr"]
            opt.step()
            opt.zero_grad()
            if sched is not None:
                sched.step()
            probe.step(loss=loss, lr=lr) if case.no_optimizer else probe.step(loss=loss)
            losses.append(float(loss.detach()))
    if case.by_hand:
        probe.close()
    return probe.run, losses


# -- models ---------------------------------------------------------------------------------


class LSTM2LM(nn.Module):
    """A 2-layer LSTM LM with dropout between the layers and on the output."""

    def __init__(self, d: int = 32, hidden: int = 64, layers: int = 2, dropout=0.2) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.rnn = nn.LSTM(d, hidden, layers, batch_first=True, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, V)

    def forward(self, idx):
        out, _ = self.rnn(self.emb(idx))
        return self.head(self.drop(out))


class BiGRU(nn.Module):
    """A bidirectional GRU regressor on the adding problem (both halves seen from both ends)."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.rnn = nn.GRU(2, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out.mean(1)).squeeze(-1)


class GatedRecurrence(nn.Module):
    """A gated linear recurrence h_t = a_t ⊙ h_{t-1} + (1 - a_t) ⊙ v_t, a_t = σ(W x_t + b)
    (RWKV/Mamba/GLA-like, without the selective scan's tricks), a gated output, residual."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.gate = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.out_gate = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        nn.init.constant_(self.gate.bias, 2.0)  # start remembering (a ≈ 0.88)

    def forward(self, x):
        u = self.norm(x)
        a = torch.sigmoid(self.gate(u))
        v = self.value(u)
        h = torch.zeros_like(v[:, 0])
        hs = []
        for t in range(x.shape[1]):
            h = a[:, t] * h + (1 - a[:, t]) * v[:, t]
            hs.append(h)
        y = torch.stack(hs, 1) * F.silu(self.out_gate(u))
        return x + self.proj(y)


class GatedLM(nn.Module):
    def __init__(self, d: int = 32, blocks: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.blocks = nn.Sequential(*(GatedRecurrence(d) for _ in range(blocks)))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, V)

    def forward(self, idx):
        return self.head(self.norm(self.blocks(self.emb(idx))))


class CausalConvLM(nn.Module):
    """A causal 1-D convolution LM (WaveNet/TCN-like): dilated convolutions padded on the
    left, GELU, residual."""

    def __init__(self, d: int = 32, layers: int = 3, k: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.convs = nn.ModuleList(nn.Conv1d(d, d, k, dilation=2**i) for i in range(layers))
        self.acts = nn.ModuleList(nn.GELU() for _ in range(layers))
        self.head = nn.Linear(d, V)
        self.k = k

    def forward(self, idx):
        x = self.emb(idx).transpose(1, 2)
        for conv, act in zip(self.convs, self.acts, strict=True):
            pad = (self.k - 1) * conv.dilation[0]
            x = x + act(conv(F.pad(x, (pad, 0))))
        return self.head(x.transpose(1, 2))


class ConvNeXt7Block(nn.Module):
    """ConvNeXt (Liu et al. 2022): depthwise 7×7, LayerNorm, inverted MLP ×4, layer scale."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1 = nn.Linear(c, 4 * c)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 1e-2))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pw2(self.act(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt7(nn.Module):
    def __init__(self, c: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 2, stride=2)
        self.blocks = nn.Sequential(*(ConvNeXt7Block(c) for _ in range(blocks)))
        self.norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.stem(x)).mean((2, 3))))


class LNCNN(nn.Module):
    """A CNN with LayerNorm over (C, H, W) after each convolution (GroupNorm with one
    group), ReLU."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.GroupNorm(1, c), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.GroupNorm(1, 2 * c), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * c, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


def hf_vit(d: int = 32, layers: int = 2) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        image_size=8, patch_size=2, num_channels=1, hidden_size=d, num_hidden_layers=layers,
        num_attention_heads=4, intermediate_size=2 * d, num_labels=10,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="sdpa",
    )  # fmt: skip
    return _Pixels(ViTForImageClassification(cfg))


class _Pixels(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x).logits


class Expert(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 2 * d)
        self.act = nn.GELU()
        self.proj = nn.Linear(2 * d, d)

    def forward(self, x):
        return self.proj(self.act(self.fc(x)))


class MoEBlock(nn.Module):
    """A Pre-LN block whose MLP is a soft top-2 mixture of 4 experts (every expert runs on
    every token, weighted by its renormalised top-2 gate: dense, so each gets a gradient)."""

    def __init__(self, d: int, experts: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.router = nn.Linear(d, experts)
        self.experts = nn.ModuleList(Expert(d) for _ in range(experts))

    def forward(self, x):
        u = self.norm(x)
        logits = self.router(u)
        top, idx = logits.topk(2, dim=-1)
        gate = torch.zeros_like(logits).scatter(-1, idx, top.softmax(-1))
        out = torch.stack([e(u) for e in self.experts], -1)
        return x + (out * gate.unsqueeze(-2)).sum(-1)


class MoEMLP(nn.Module):
    def __init__(self, d: int = 64, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Linear(64, d)
        self.blocks = nn.Sequential(*(MoEBlock(d) for _ in range(blocks)))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.stem(x))))


class HalfLayer(nn.Module):
    """A hidden layer computed in float16 (a hand-made mixed-precision layer): its output
    is cast to half and back, so a value past 65504 is Inf."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.lin(x).half().float()


def half_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), HalfLayer(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )


class LogFeatures(nn.Module):
    """log(s · h) of a positive feature h = softplus(x) and a learnt scale s (> 0 at init): a
    log-domain layer, finite while s stays positive."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return torch.log(self.scale * F.softplus(x))


def log_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), LogFeatures(), nn.Linear(128, 10)
    )


class PoissonMLP(nn.Module):
    """Predicts a log-rate (Poisson regression: the rate is exp of the output)."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.body = mlp((64, width, width, 1))

    def forward(self, x):
        return self.body(x).squeeze(-1)


def poisson_nll(out, y):
    return F.poisson_nll_loss(out, y, log_input=True)


class MultiTask(nn.Module):
    """A shared trunk and two heads: the digit (10 classes) and its value as a regression."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = mlp((64, 128, 128))
        self.act = nn.ReLU()
        self.cls = nn.Linear(128, 10)
        self.reg = nn.Linear(128, 1)

    def forward(self, x):
        h = self.act(self.trunk(x))
        return self.cls(h), self.reg(h).squeeze(-1)


def multitask_loss(out, y):
    logits, value = out
    return F.cross_entropy(logits, y) + F.mse_loss(value, (y.float() - 4.5) / 2.9)


class Encoder(nn.Module):
    """An MLP embedding of a digit, L2-normalised (SimCLR's projection head, shrunk)."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.body = mlp((64, 128, 128, d))

    def forward(self, x):
        return F.normalize(self.body(x), dim=-1)


def info_nce(z, _y, tau: float = 0.2):
    """InfoNCE over two views stacked as (2B, d): each view's positive is the other's."""
    b = z.shape[0] // 2
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(sim, target)


class Attention(nn.Module):
    """Hand-written multi-head self-attention over F.scaled_dot_product_attention, no QK-norm."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SDPALM(nn.Module):
    """A Pre-LN GPT over the hand-written attention."""

    def __init__(self, d: int = 32, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.wte = nn.Embedding(V, d)
        self.wpe = nn.Embedding(T, d)
        self.blocks = nn.Sequential(*(Block(d, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, V)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        return self.head(self.norm(self.blocks(x)))


def dropout_mlp(p: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Dropout(p), nn.Linear(256, 256), nn.ReLU(),
        nn.Dropout(p), nn.Linear(256, 10),
    )  # fmt: skip


# -- data -----------------------------------------------------------------------------------


def _adding(batch, gen):
    from ._training import adding_batches

    return adding_batches(batch, gen)


def _counts(batch, gen):
    """The digits' pixels → their label as a count (0-9): Poisson regression."""
    for x, y in image_batches(batch, gen, flat=True):
        yield x, y.float()


def _two_views(batch, gen):
    """Each digit twice, each copy with its own Gaussian noise (σ 0.3) and a random
    one-pixel shift: two views of one image, stacked as (2B, 64)."""
    x, _ = _digits()
    while True:
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        xb = x[idx]
        views = []
        for _ in range(2):
            s = int(torch.randint(-1, 2, (1,), generator=gen))
            v = torch.roll(xb, s, dims=-1) + 0.3 * torch.randn(xb.shape, generator=gen)
            views.append(v.flatten(1))
        yield torch.cat(views), None


def _mse(out, y):
    return F.mse_loss(out, y)


# -- optimisers and schedules ------------------------------------------------------------------


def _nadam(lr, **kw):
    return lambda p: torch.optim.NAdam(p, lr=lr, **kw)


def _radam(lr, **kw):
    return lambda p: torch.optim.RAdam(p, lr=lr, **kw)


def _adamax(lr, **kw):
    return lambda p: torch.optim.Adamax(p, lr=lr, **kw)


def _warmup_to(warm: int, peak: float):
    """Linear warm-up from the optimizer's lr to ``peak``× it over ``warm`` steps, then flat."""
    return lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 1 + (peak - 1) * min(1.0, s / warm)
    )


def _cosine(total: int):
    return lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)


# -- injections ----------------------------------------------------------------------------------


def _shift_biases(by: float):
    """Every hidden Linear's bias moved by ``by`` (one huge update's worth)."""

    def inject(model):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        for m in linears[:-1]:
            m.bias.add_(by)

    return inject


def _negate_scale(model):
    for m in model.modules():
        if isinstance(m, LogFeatures):
            m.scale.fill_(-0.5)


def _blow_up_first(factor: float):
    def inject(model):
        model[0].weight.mul_(factor)

    return inject


# -- the cases ------------------------------------------------------------------------------

BROKEN = {
    # each adaptive optimiser family far too fast
    "nadam_0.5": Held5("nadam_0.5", mlp, _nadam(0.5), _flat),
    # the same with the loss ×1000: NAdam's step does not depend on the gradient's scale
    "nadam_0.5_x1000": Held5("nadam_0.5_x1000", mlp, _nadam(0.5), _flat, loss_scale=1000.0),
    # RAdam's rectification is a warm-up of its own: no large first step, but every weight
    # then moves 10-20 % of its norm a step for 40 steps
    "radam_1": Held5("radam_1", mlp, _radam(1.0), _flat),
    "adamax_0.5": Held5("adamax_0.5", lambda: LNCNN(), _adamax(0.5), _images),
    # far too slow: NAdam 1e-6 on the ConvNeXt, Adamax 1e-6 on the gated LM
    "nadam_1e-6_convnext": Held5("nadam_1e-6_convnext", ConvNeXt7, _nadam(1e-6), _images,
                                 steps=100),
    "adamax_1e-6_gated_lm": Held5("adamax_1e-6_gated_lm", GatedLM, _adamax(1e-6), _tokens,
                                  batch=16, loss=token_ce, steps=80),
    # 12 sigmoid layers on MNIST-1D under SGD momentum: vanishing from the start
    "deep_sigmoid_momentum": Held5("deep_sigmoid_momentum",
                                   lambda: deep_mlp(12, nn.Sigmoid, d_in=40),
                                   _sgd(0.05, momentum=0.9), signal_batches),
    # a 2-layer LSTM LM and a bidirectional GRU at SGD lr far too high, no clipping
    "lstm2_sgd_no_clip": Held5("lstm2_sgd_no_clip", LSTM2LM, _sgd(50.0), _tokens, batch=16,
                               loss=token_ce, steps=120),
    "bigru_sgd_no_clip": Held5("bigru_sgd_no_clip", BiGRU, _sgd(20.0), _adding, batch=16,
                               loss=_mse, steps=60),
    # the log of a scale turned negative at step 120: NaN in the forward from then on
    "log_negative_at_120": Held5("log_negative_at_120", log_mlp, _adam(1e-3), _flat,
                                 inject=(120, _negate_scale)),
    # a layer computed in float16 whose input is blown up ×1e5 at step 100: Inf past 65504
    "half_overflow_at_100": Held5("half_overflow_at_100", half_mlp, _adam(1e-3), _flat,
                                  inject=(100, _blow_up_first(1e5))),
    # every hidden bias shifted by −20 at step 100: the ReLUs die mid-run
    "bias_shift_dead_at_100": Held5("bias_shift_dead_at_100", lambda: mlp((64, 128, 128, 10)),
                                    _sgd(0.05, momentum=0.9), _flat,
                                    inject=(100, _shift_biases(-20.0))),
    # a linear warm-up to 300× Adam's 1e-3 (0.3) over 50 steps: it learns, then blows up
    "warmup_to_0.3": Held5("warmup_to_0.3", mlp, _adam(1e-3), _flat,
                           scheduler=_warmup_to(50, 300.0)),
    "warmup_to_0.3_w256": Held5("warmup_to_0.3_w256", lambda: mlp((64, 256, 256, 10)),
                                _adam(1e-3), _flat, scheduler=_warmup_to(50, 300.0)),
    # the output is a log-rate: Adam 0.3 sends exp(out) to Inf
    "poisson_adam_0.3": Held5("poisson_adam_0.3", PoissonMLP, _adam(0.3), _counts,
                                 loss=poisson_nll),
    # hand-written SDPA attention, no QK-norm, Adam 0.1, no warm-up (copy task)
    "sdpa_lm_adam_0.1": Held5("sdpa_lm_adam_0.1", SDPALM, _adam(0.1), _shift, batch=16,
                               loss=token_ce, steps=150),
    # a Post-LN HF-free ViT of 6 layers at Adam 1e-2, no warm-up
    "postln_vit6_adam_1e-2": Held5(
        "postln_vit6_adam_1e-2",
        lambda: TinyViT(layers=6, norm_first=False), _adam(1e-2), _images, steps=80),
    # clip_grad_value_ at 1e-6 under SGD 0.1: every gradient entry is ±1e-6
    "clip_value_1e-6": Held5("clip_value_1e-6", mlp, _sgd(0.1), _flat, clip_value=1e-6),
    # watched without optimizer= (probe.step(loss=, lr=)): SGD lr 1e-5 on an MLP
    "no_opt_sgd_1e-5": Held5("no_opt_sgd_1e-5", mlp, _sgd(1e-5), _flat, no_optimizer=True),
    # the same run with the loss ×1000 and the lr ÷1000 (SGD: the same steps)
    "no_opt_sgd_1e-8_x1000": Held5("no_opt_sgd_1e-8_x1000", mlp, _sgd(1e-8), _flat,
                                   no_optimizer=True, loss_scale=1000.0),
    # OneCycleLR to a peak of 2.0 (SGD momentum, a CNN): the ramp goes far too high
    "onecycle_peak_2": Held5("onecycle_peak_2", SmallCNN, _sgd(2.0, momentum=0.9), _images,
                             scheduler=_onecycle(200, 2.0)),
    # a 3-layer LSTM LM at Adam 0.1, no clipping: Adam's first step erases the weights
    "lstm3_adam_0.1": Held5("lstm3_adam_0.1", lambda: LSTM2LM(layers=3), _adam(0.1), _tokens,
                            batch=16, loss=token_ce, steps=80),
    # a probe closed by hand (no with block): the MoE MLP at Adam 1.0
    "by_hand_moe_adam_1": Held5("by_hand_moe_adam_1", MoEMLP, _adam(1.0), _flat,
                                by_hand=True, steps=60),
}  # fmt: skip

HEALTHY = {
    "nadam_mlp": Held5("nadam_mlp", mlp, _nadam(1e-3), _flat),
    "radam_cnn": Held5("radam_cnn", LNCNN, _radam(1e-3), _images, steps=150),
    "adamax_mlp": Held5("adamax_mlp", mlp, _adamax(2e-3), _flat),
    "lstm2_dropout_clipped": Held5("lstm2_dropout_clipped", LSTM2LM, _adam(3e-3), _tokens,
                                   batch=16, loss=token_ce, clip=1.0, steps=100),
    "bigru_clipped": Held5("bigru_clipped", BiGRU, _adam(1e-2), _adding, batch=16, loss=_mse,
                           clip=1.0, steps=100),
    "gated_lm_adamw": Held5("gated_lm_adamw", GatedLM, _adamw(3e-3), _tokens, batch=16,
                            loss=token_ce, steps=100, clip=1.0),
    "causal_conv_lm": Held5("causal_conv_lm", CausalConvLM, _adam(3e-3), _tokens, batch=16,
                            loss=token_ce, steps=150),
    "convnext7_8": Held5("convnext7_8", ConvNeXt7, _adamw(3e-3), _images, steps=100),
    "convnext7_16": Held5("convnext7_16", ConvNeXt7, _adamw(3e-3), _upsampled(16), steps=100),
    "hf_vit_adamw_warmup": Held5("hf_vit_adamw_warmup", hf_vit, _adamw(3e-3), _images,
                                 steps=120, scheduler=_warmup_cosine(20, 120)),
    "moe_adamw_d64": Held5("moe_adamw_d64", lambda: MoEMLP(64, 2), _adamw(1e-3), _flat,
                           steps=80),
    "moe_adamw_d128": Held5("moe_adamw_d128", lambda: MoEMLP(128, 2), _adamw(1e-3), _flat,
                            steps=80),
    "poisson_adam": Held5("poisson_adam", PoissonMLP, _adam(1e-3), _counts, loss=poisson_nll),
    "poisson_adam_x1000": Held5("poisson_adam_x1000", PoissonMLP, _adam(1e-3), _counts,
                                loss=poisson_nll, loss_scale=1000.0),
    "multitask_sgd_nesterov": Held5("multitask_sgd_nesterov", MultiTask,
                                    _sgd(0.02, momentum=0.9, nesterov=True), _flat,
                                    loss=multitask_loss),
    "infonce_adam": Held5("infonce_adam", Encoder, _adam(1e-3), _two_views, loss=info_nce),
    "half_layer_adam": Held5("half_layer_adam", half_mlp, _adam(1e-3), _flat),
    "sdpa_lm_adamw_warmup": Held5("sdpa_lm_adamw_warmup", SDPALM, _adamw(3e-3), _shift,
                                  batch=16, loss=token_ce, steps=150,
                                  scheduler=_warmup_cosine(20, 150)),
    "clip_value_gru_lm": Held5("clip_value_gru_lm", LSTM2LM, _adam(3e-3), _tokens, batch=16,
                               loss=token_ce, clip_value=0.5, steps=120),
    "bf16_convnext_cosine": Held5("bf16_convnext_cosine", ConvNeXt7, _adamw(3e-3), _images,
                                  autocast=torch.bfloat16, scheduler=_cosine(150), steps=150),
    "no_opt_adam_cnn": Held5("no_opt_adam_cnn", LNCNN, _adam(1e-3), _images,
                             no_optimizer=True),
    "by_hand_rwkv_restarts": Held5("by_hand_rwkv_restarts", GatedLM, _adamw(3e-3), _tokens,
                                   batch=16, loss=token_ce, steps=100, by_hand=True,
                                   scheduler=lambda o: torch.optim.lr_scheduler.
                                   CosineAnnealingWarmRestarts(o, 40)),
    "dropout_0.9_mlp": Held5("dropout_0.9_mlp", lambda: dropout_mlp(0.9), _adam(1e-3), _flat),
}  # fmt: skip

#: the same configuration at two sizes or loss scales: the same verdict
PAIRS = [
    ("warmup_to_0.3", "warmup_to_0.3_w256"),
    ("convnext7_8", "convnext7_16"),
    ("moe_adamw_d64", "moe_adamw_d128"),
    ("poisson_adam", "poisson_adam_x1000"),
    ("nadam_0.5", "nadam_0.5_x1000"),
    ("no_opt_sgd_1e-5", "no_opt_sgd_1e-8_x1000"),
]

#: tried and left out, with the reason: what the run does depends on the seed, so no
#: verdict can hold on both
DROPPED = {
    # the MoE MLP at Adam 0.3: seed 0 blows up and sits at chance (not_learning, large
    # updates: right); seed 1 blows up to 9.4, then learns back to 2.07 (start 2.58): a
    # loss 20 % under its start is learning, slowly — only the large first updates are
    # reported, as a warning. Adam 1.0 (by_hand_moe_adam_1) fails on both seeds
    "moe_adam_0.3": Held5("moe_adam_0.3", MoEMLP, _adam(0.3), _flat, steps=150),
}
