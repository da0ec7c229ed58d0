"""A seventh batch of held-out training-time cases (issue 16): model families and training
OBJECTIVES none of the corpus (_training.py) and the six earlier batches has — a diagonal
linear-recurrence (SSM-style) scan, CLIP-style contrastive learning with a learnable
temperature, a RealNVP normalising flow (affine couplings through exp), quantisation by
torch.round with and without a straight-through estimator, a diffusion-style denoiser with
a sinusoidal time embedding, knowledge distillation (KL at T = 4), REINFORCE on a
contextual bandit (a surrogate loss that need not fall), margin losses that reach exactly 0
(multi-class hinge, triplet), mixup's soft targets, a focal loss, a Hugging Face T5
(encoder-decoder, unscaled attention logits), a weight-shared ("universal") transformer
block, a neural ODE (RK4 over one shared function), a masked-convolution PixelCNN, a
hypernetwork; Adam with eps = 1 and a warm-up whose schedule leaves the lr at 0.

Every case runs under the loop of the first batch (``_training_heldout.train``: watch()'s
DEFAULT schedule, ``probe.step(loss=loss)`` after ``opt.step()``).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._training import V, mlp, token_batches
from ._training_heldout import (
    Held,
    SmallCNN,
    _adam,
    _adamw,
    _digits,
    _flat,
    _images,
    _sgd,
    _warmup_cosine,
)
from ._training_heldout import train as _train_held
from ._training_heldout5 import _two_views

__all__ = ["BROKEN", "DROPPED", "HEALTHY", "train"]

train = _train_held


# -- a diagonal linear recurrence (S4D / LRU-style scan) ---------------------------------------


class DiagScan(nn.Module):
    """h_t = a ⊙ h_{t-1} + B x_t, y_t = C h_t over the sequence, a diagonal.
    ``stable``: a = exp(-exp(ν)) in (0, 1) (the LRU's parametrisation); otherwise a is the raw
    parameter, drawn in (lo, hi) — above 1, a forgotten constraint."""

    def __init__(self, d_in: int, d: int, stable: bool = True, lo=0.8, hi=0.99) -> None:
        super().__init__()
        self.stable = stable
        a = torch.empty(d).uniform_(lo, hi)
        self.nu = nn.Parameter(torch.log(-torch.log(a)) if stable else a)
        self.b = nn.Linear(d_in, d)
        self.c = nn.Linear(d, d)

    def forward(self, x):
        a = torch.exp(-torch.exp(self.nu)) if self.stable else self.nu
        u = self.b(x)
        h = torch.zeros_like(u[:, 0])
        hs = []
        for t in range(u.shape[1]):
            h = a * h + u[:, t]
            hs.append(h)
        return self.c(torch.stack(hs, 1))


class ScanRegressor(nn.Module):
    """The adding problem (length 48) through one diagonal scan and a head."""

    def __init__(self, stable: bool = True, lo=0.8, hi=0.99) -> None:
        super().__init__()
        self.scan = DiagScan(2, 32, stable, lo, hi)
        self.act = nn.GELU()
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        return self.head(self.act(self.scan(x))[:, -1]).squeeze(-1)


def _adding48(batch, gen):
    from ._training import adding_batches

    return adding_batches(batch, gen, steps=48)


# -- CLIP-style contrastive learning with a learnable temperature -------------------------------


class ClipEncoder(nn.Module):
    """An L2-normalised MLP embedding and CLIP's learnable ``logit_scale`` (log 1/0.07);
    ``clamp``: exp(logit_scale) capped at 100, as CLIP does."""

    def __init__(self, d: int = 32, clamp: bool = True) -> None:
        super().__init__()
        self.body = mlp((64, 128, 128, d))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.clamp = clamp

    def forward(self, x):
        scale = self.logit_scale.clamp(max=math.log(100.0)) if self.clamp else self.logit_scale
        return F.normalize(self.body(x), dim=-1), scale.exp()


class TauEncoder(nn.Module):
    """The same embedding with the temperature τ itself a parameter (0.07 at init), logits
    z·z'/τ: nothing keeps τ above 0."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.body = mlp((64, 128, 128, d))
        self.tau = nn.Parameter(torch.tensor(0.07))

    def forward(self, x):
        return F.normalize(self.body(x), dim=-1), 1 / self.tau


def clip_nce(out, _y):
    z, scale = out
    b = z.shape[0] // 2
    sim = scale * z[:b] @ z[b:].T
    target = torch.arange(b)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


# -- a RealNVP flow ---------------------------------------------------------------------------


class Coupling(nn.Module):
    """An affine coupling (Dinh et al. 2017): half the dimensions scaled by exp(s) and shifted
    by t, both from the other half; ``bounded``: s = tanh(·) (what implementations do),
    otherwise s is the raw output."""

    def __init__(self, d: int, mask: torch.Tensor, bounded: bool = True) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 2 * d))
        self.bounded = bounded

    def forward(self, x):
        s, t = self.net(x * self.mask).chunk(2, -1)
        s = torch.tanh(s) if self.bounded else s
        s, t = s * (1 - self.mask), t * (1 - self.mask)
        return x * torch.exp(s) + t, s.sum(-1)


class RealNVP(nn.Module):
    def __init__(self, d: int = 64, layers: int = 4, bounded: bool = True) -> None:
        super().__init__()
        checker = (torch.arange(d) % 2).float()
        self.layers = nn.ModuleList(
            Coupling(d, checker if i % 2 == 0 else 1 - checker, bounded) for i in range(layers)
        )

    def forward(self, x):
        logdet = torch.zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet


def flow_nll(out, _y):
    """The negative log-likelihood per dimension under a standard normal base."""
    z, logdet = out
    d = z.shape[1]
    return (0.5 * z.pow(2).sum(1) - logdet).mean() / d + 0.5 * math.log(2 * math.pi)


def _flat_x(batch, gen):
    for x, _y in _flat(batch, gen):
        yield x, None


# -- quantised activations --------------------------------------------------------------------


class Quant(nn.Module):
    """Activations rounded to a grid of 1/2 (a 4-level QAT stand-in); ``ste``: the
    straight-through estimator (round forward, identity backward), otherwise torch.round,
    whose gradient is 0 everywhere."""

    def __init__(self, ste: bool) -> None:
        super().__init__()
        self.ste = ste

    def forward(self, x):
        x = x.clamp(0, 2)
        q = torch.round(2 * x) / 2
        return x + (q - x).detach() if self.ste else q


def quant_mlp(ste: bool) -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), Quant(ste), nn.Linear(128, 128),
                         nn.ReLU(), Quant(ste), nn.Linear(128, 10))  # fmt: skip


# -- a diffusion-style denoiser ---------------------------------------------------------------


def sinusoidal(t: torch.Tensor, d: int) -> torch.Tensor:
    """The Transformer's (and DDPM's) sinusoidal embedding of a time step in [0, 1000)."""
    half = d // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    arg = t[:, None].float() * freqs[None]
    return torch.cat([arg.sin(), arg.cos()], -1)


class Denoiser(nn.Module):
    """ε-prediction on flattened digits: x_t and the time embedding (through an MLP) added
    in a residual MLP of SiLU blocks (DDPM's recipe, shrunk)."""

    def __init__(self, d: int = 128, blocks: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(64, d)
        self.time = nn.Sequential(nn.Linear(32, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
            for _ in range(blocks)
        )
        self.out = nn.Linear(d, 64)

    def forward(self, xt_t):
        xt, t = xt_t
        h = self.inp(xt) + self.time(sinusoidal(t, 32))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def _diffusion(batch, gen):
    """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε at a random t of a linear β schedule (1e-4 … 0.02, 1000
    steps); the target is ε."""
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    for x, _y in _flat(batch, gen):
        t = torch.randint(0, 1000, (batch,), generator=gen)
        eps = torch.randn(x.shape, generator=gen)
        a = abar[t][:, None]
        yield (a.sqrt() * x + (1 - a).sqrt() * eps, t), eps


# -- knowledge distillation --------------------------------------------------------------------


@functools.cache
def _teacher() -> nn.Module:
    """A wider MLP trained 150 steps on the digits (seeded, once): the teacher."""
    g = torch.Generator().manual_seed(123)
    with torch.random.fork_rng():
        torch.manual_seed(123)
        t = mlp((64, 256, 256, 10))
    opt = torch.optim.Adam(t.parameters(), lr=1e-3)
    x, y = _digits()
    x = x.flatten(1)
    for _ in range(150):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        F.cross_entropy(t(x[idx]), y[idx]).backward()
        opt.step()
        opt.zero_grad()
    return t.requires_grad_(False).eval()


def _with_teacher(batch, gen):
    teacher = _teacher()
    for x, y in _flat(batch, gen):
        with torch.no_grad():
            t = teacher(x)
        yield x, (t, y)


def distill(out, y, temp: float = 4.0, alpha: float = 0.9):
    """Hinton et al. 2015: T² · KL(teacher_T ‖ student_T) mixed with the hard-label CE."""
    t_logits, labels = y
    kl = F.kl_div(F.log_softmax(out / temp, -1), F.log_softmax(t_logits / temp, -1),
                  reduction="batchmean", log_target=True)  # fmt: skip
    return alpha * temp**2 * kl + (1 - alpha) * F.cross_entropy(out, labels)


# -- REINFORCE on a contextual bandit ----------------------------------------------------------


class Baselined(nn.Module):
    """A policy over 10 arms (the digit's class pays 1) and a running-mean baseline kept as
    a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = mlp((64, 128, 10))
        self.register_buffer("baseline", torch.tensor(0.1))

    def forward(self, x):
        return self.policy(x), self.baseline


def reinforce(out, y):
    """−(r − b)·log π(a|x) for a sampled arm a, r = [a = y]: the score-function surrogate, whose
    value is noise around 0 and not the quantity being maximised."""
    logits, baseline = out
    logp = F.log_softmax(logits, -1)
    a = torch.multinomial(logp.exp().detach(), 1).squeeze(1)
    r = (a == y).float()
    with torch.no_grad():
        baseline.lerp_(r.mean(), 0.05)
    return -((r - baseline) * logp.gather(1, a[:, None]).squeeze(1)).mean()


# -- losses that reach 0, soft targets, focal ----------------------------------------------------


def hinge(out, y):
    return F.multi_margin_loss(out, y)


class Embedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = mlp((64, 128, 128, 16))

    def forward(self, x):
        return self.body(x)


def _triplets(batch, gen):
    """(anchor, positive of its class, negative of another class), stacked as (3B, 64)."""
    x, y = _digits()
    x = x.flatten(1)
    by_class = [torch.nonzero(y == c).squeeze(1) for c in range(10)]
    while True:
        c = torch.randint(0, 10, (batch,), generator=gen)
        other = (c + torch.randint(1, 10, (batch,), generator=gen)) % 10
        pick = [
            torch.stack([cls[torch.randint(0, cls.numel(), (1,), generator=gen)[0]]
                         for cls in (by_class[int(k)] for k in ks)])
            for ks in (c, c, other)
        ]  # fmt: skip
        yield torch.cat([x[p] for p in pick]), None


def triplet(out, _y):
    a, p, n = out.chunk(3)
    return F.triplet_margin_loss(a, p, n, margin=1.0)


def _mixup(batch, gen, alpha: float = 0.4):
    """Zhang et al. 2018: convex pairs of images and of their one-hot labels."""
    for x, y in _images(batch, gen):
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(batch, generator=gen)
        t = F.one_hot(y, 10).float()
        yield lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]


def soft_ce(out, y):
    return F.cross_entropy(out, y)  # probabilities as targets


def focal(out, y, gamma: float = 2.0):
    """Lin et al. 2017: (1 − p_t)^γ · CE."""
    logp = F.log_softmax(out, -1).gather(1, y[:, None]).squeeze(1)
    return (-((1 - logp.exp()) ** gamma) * logp).mean()


# -- a Hugging Face T5 -------------------------------------------------------------------------


class T5Copy(nn.Module):
    """A tiny T5 (from a config, nothing downloaded): the Markov tokens in, the same tokens
    shifted by one out (teacher forcing). T5 does not scale its attention logits by 1/√d."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import T5Config, T5ForConditionalGeneration

        cfg = T5Config(vocab_size=V + 1, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                       num_decoder_layers=2, num_heads=4, dropout_rate=0.0,
                       decoder_start_token_id=V, pad_token_id=V)  # fmt: skip
        self.t5 = T5ForConditionalGeneration(cfg)

    def forward(self, idx):
        dec = torch.cat([torch.full_like(idx[:, :1], V), idx[:, :-1]], 1)
        return self.t5(input_ids=idx, decoder_input_ids=dec).logits


def t5_ce(out, y):
    return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1))


def _tokens_in_out(batch, gen):
    """The model reads the tokens and writes them back (the decoder shifted by one)."""
    for x, _y in token_batches(batch, gen):
        yield x, x


# -- a weight-shared transformer, a neural ODE, a PixelCNN, a hypernetwork ----------------------


class UniversalLM(nn.Module):
    """One Transformer encoder block (causal) applied ``depth`` times (Dehghani et al. 2019)."""

    def __init__(self, d=32, depth=6, norm_first=True) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.pos = nn.Parameter(0.02 * torch.randn(1, 64, d))
        self.block = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True,
                                                norm_first=norm_first)  # fmt: skip
        self.depth = depth
        self.norm = nn.LayerNorm(d) if norm_first else nn.Identity()
        self.head = nn.Linear(d, V)

    def forward(self, idx):
        t = idx.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        h = self.emb(idx) + self.pos[:, :t]
        for _ in range(self.depth):
            h = self.block(h, src_mask=mask, is_causal=True)
        return self.head(self.norm(h))


def token_ce(out, y):
    return F.cross_entropy(out.reshape(-1, V).float(), y.reshape(-1))


class ODEFunc(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))

    def forward(self, h):
        return self.net(h)


class NeuralODE(nn.Module):
    """dh/dt = f(h) integrated by RK4 over t ∈ [0, 1] in 4 steps (Chen et al. 2018, fixed
    step): one function called 16 times a forward."""

    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.inp = nn.Linear(64, d)
        self.f = ODEFunc(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h, dt = self.inp(x), 0.25
        for _ in range(4):
            k1 = self.f(h)
            k2 = self.f(h + 0.5 * dt * k1)
            k3 = self.f(h + 0.5 * dt * k2)
            k4 = self.f(h + dt * k3)
            h = h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return self.head(h)


class MaskedConv(nn.Conv2d):
    """PixelCNN's masked convolution (van den Oord et al. 2016): type "A" hides the centre."""

    def __init__(self, a: int, b: int, kind: str) -> None:
        super().__init__(a, b, 3, padding=1)
        m = torch.ones(3, 3)
        m[1, 1 if kind == "A" else 2 :] = 0
        m[2:] = 0
        self.register_buffer("mask", m[None, None].clone())

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=1)


class PixelCNN(nn.Module):
    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(MaskedConv(1, c, "A"), nn.ReLU(), MaskedConv(c, c, "B"),
                                 nn.ReLU(), MaskedConv(c, c, "B"), nn.ReLU(),
                                 nn.Conv2d(c, 1, 1))  # fmt: skip

    def forward(self, x):
        return self.net(x)


def _binary(batch, gen):
    for x, _y in _images(batch, gen):
        b = (x > 0).float()
        yield b, b


def bce_logits(out, y):
    return F.binary_cross_entropy_with_logits(out, y)


class HyperMLP(nn.Module):
    """A hypernetwork (Ha et al. 2017): a learned embedding per layer → the hidden layer's
    weight matrix; the main network's hidden layer owns no weights of its own."""

    def __init__(self, d: int = 64, z: int = 8) -> None:
        super().__init__()
        self.inp = nn.Linear(64, d)
        self.z = nn.Parameter(torch.randn(z))
        self.hyper = nn.Linear(z, d * d)
        nn.init.normal_(self.hyper.weight, std=(1 / (z * d)) ** 0.5)
        nn.init.zeros_(self.hyper.bias)
        self.act = nn.ReLU()
        self.head = nn.Linear(d, 10)
        self.d = d

    def forward(self, x):
        w = self.hyper(self.z).view(self.d, self.d)
        h = self.act(self.inp(x))
        return self.head(self.act(h @ w.T))


# -- schedules and optimisers --------------------------------------------------------------------


def _warmup_then_zero(warm: int):
    """A warm-up written as ``(s + 1) / warm if s < warm else 0``: the "else 1.0" forgotten."""
    return lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.0
    )


def _flatb(batch, gen):
    return _flat(batch, gen)


# -- the cases ------------------------------------------------------------------------------

BROKEN = {
    # a diagonal scan whose a is the raw parameter, drawn in (1.05, 1.25): |a| > 1, and the
    # state grows ~1.25^48 ≈ 4e4 through the sequence
    "scan_a_above_1": Held("scan_a_above_1", lambda: ScanRegressor(False, 1.05, 1.25),
                           _adam(1e-3), _adding48, batch=16, loss=F.mse_loss, steps=100),
    # CLIP's learnable logit scale without its clamp at 100, Adam at 0.1
    # RealNVP couplings with s unbounded (no tanh), Adam at 3e-2: exp(s) overflows
    "realnvp_unbounded_adam_3e-2": Held("realnvp_unbounded_adam_3e-2",
                                        lambda: RealNVP(bounded=False), _adam(3e-2), _flat_x,
                                        loss=flow_nll, steps=150),
    "round_no_ste": Held("round_no_ste", lambda: quant_mlp(False), _adam(1e-3), _flatb),
    # Adam with eps = 1 (a slip for 1e-8): the step is lr·g/(√v + 1) ≈ lr·g, far below lr
    "adam_eps_1": Held("adam_eps_1", mlp, _adam(1e-3, eps=1.0), _flatb),
    # a warm-up over 20 steps whose lambda returns 0 after it: the lr is 0 from step 20
    "warmup_then_lr_0": Held("warmup_then_lr_0", mlp, _adam(3e-3), _flatb,
                             scheduler=_warmup_then_zero(20)),
    # a Hugging Face T5 at Adam 3e-2, no warm-up
    "t5_adam_3e-2": Held("t5_adam_3e-2", T5Copy, _adam(3e-2), _tokens_in_out, batch=16,
                         loss=t5_ce, steps=100),
    # the diffusion denoiser at SGD 3 + momentum 0.9: NaN by step 7
    "denoiser_sgd_3": Held("denoiser_sgd_3", Denoiser, _sgd(3.0, momentum=0.9), _diffusion,
                           loss=F.mse_loss, steps=100),
    # the weight-shared block, Post-LN, applied 6 times, Adam at 3e-2 without warm-up
    "universal_postln_adam_3e-2": Held("universal_postln_adam_3e-2",
                                       lambda: UniversalLM(norm_first=False), _adam(3e-2),
                                       lambda b, g: token_batches(b, g), batch=16,
                                       loss=token_ce, steps=100),
    # the neural ODE at SGD 3
    "ode_sgd_3": Held("ode_sgd_3", NeuralODE, _sgd(3.0), _flatb, steps=100),
}  # fmt: skip

HEALTHY = {
    "scan_stable": Held("scan_stable", ScanRegressor, _adam(3e-3), _adding48, batch=16,
                        loss=F.mse_loss, steps=150),
    "clip_clamped": Held("clip_clamped", ClipEncoder, _adam(1e-3), _two_views, loss=clip_nce,
                         steps=150),
    "realnvp_tanh": Held("realnvp_tanh", RealNVP, _adam(1e-3), _flat_x, loss=flow_nll,
                         steps=150),
    "ste_quant_mlp": Held("ste_quant_mlp", lambda: quant_mlp(True), _adam(1e-3), _flatb),
    "denoiser_adamw": Held("denoiser_adamw", Denoiser, _adamw(1e-3), _diffusion,
                           loss=F.mse_loss, steps=150),
    "distill_t4": Held("distill_t4", lambda: mlp((64, 64, 10)), _adam(3e-3), _with_teacher,
                       loss=distill),
    "reinforce_bandit": Held("reinforce_bandit", Baselined, _adam(3e-3), _flatb,
                             loss=reinforce, batch=64),
    "hinge_mlp": Held("hinge_mlp", mlp, _adam(1e-3), _flatb, loss=hinge),
    "triplet_mlp": Held("triplet_mlp", Embedder, _adam(1e-3), _triplets, loss=triplet,
                        steps=150),
    "mixup_cnn": Held("mixup_cnn", SmallCNN, _adam(3e-3), _mixup, loss=soft_ce, steps=150),
    "focal_mlp": Held("focal_mlp", mlp, _adam(1e-3), _flatb, loss=focal),
    "t5_adamw_warmup": Held("t5_adamw_warmup", T5Copy, _adamw(3e-3), _tokens_in_out, batch=16,
                            loss=t5_ce, steps=100, scheduler=_warmup_cosine(20, 100)),
    "universal_preln_adamw": Held("universal_preln_adamw", UniversalLM, _adamw(3e-3),
                                  lambda b, g: token_batches(b, g), batch=16, loss=token_ce,
                                  steps=100, scheduler=_warmup_cosine(10, 100)),
    "neural_ode_adam": Held("neural_ode_adam", NeuralODE, _adam(1e-3), _flatb, steps=150),
    "pixelcnn_adam": Held("pixelcnn_adam", PixelCNN, _adam(1e-3), _binary, loss=bce_logits,
                          steps=100),
    "hypernet_adam": Held("hypernet_adam", HyperMLP, _adam(1e-3), _flatb, steps=150),
}  # fmt: skip

#: tried and left out, with the reason: none is broken on both seeds in one clear way
DROPPED = {
    # CLIP's logit scale without its clamp at 100, Adam at 0.1: the scale only grows 13 → 50
    # in 150 steps; what fails is the MLP at Adam 0.1 (first updates 2× a weight's norm, a
    # large_updates warning, no loss symptom), not the temperature
    "clip_unclamped_adam_0.1": Held("clip_unclamped_adam_0.1", lambda: ClipEncoder(clamp=False),
                                    _adam(0.1), _two_views, loss=clip_nce, steps=150),
    # τ itself a parameter (0.07) at Adam 1e-2: τ never reaches 0 in 150 steps; the loss
    # ends at 0.55-0.95 (0.32-0.35 clamped) without any finding: not clearly broken
    "tau_param_adam_1e-2": Held("tau_param_adam_1e-2", TauEncoder, _adam(1e-2), _two_views,
                                loss=clip_nce, steps=150),
    # unbounded couplings at Adam 1e-2: seed 1 blows up at step 10 (the gradient norm, a
    # clip), seed 0 trains like the bounded flow: no verdict holds on both
    "realnvp_unbounded_adam_1e-2": Held("realnvp_unbounded_adam_1e-2",
                                        lambda: RealNVP(bounded=False), _adam(1e-2), _flat_x,
                                        loss=flow_nll, steps=150),
    # the shared Post-LN block at Adam 1e-2: seed 0 learns 3.6 → 3.46 (not_learning), seed 1
    # 3.6 → 3.10, as far as the Pre-LN run: no verdict holds on both
    "universal_postln_adam_1e-2": Held("universal_postln_adam_1e-2",
                                       lambda: UniversalLM(norm_first=False), _adam(1e-2),
                                       lambda b, g: token_batches(b, g), batch=16,
                                       loss=token_ce, steps=100),
    # the denoiser at SGD 1 + momentum 0.9: the loss ends at 0.55 (the AdamW run's 0.26),
    # half its start, on the stall line (stalled on seed 0, only the large first updates on
    # seed 1): too close to a line to judge
    "denoiser_sgd_1": Held("denoiser_sgd_1", Denoiser, _sgd(1.0, momentum=0.9), _diffusion,
                           loss=F.mse_loss, steps=100),
}  # fmt: skip
