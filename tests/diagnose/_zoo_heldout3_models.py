"""Hand-written model classes of the third held-out zoo batch (builders: ``_zoo_heldout3.py``),
laid out as their papers or reference code do, at tiny sizes, with their authors' init. None
of them is in the calibration zoo or the earlier held-out batches."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._zoo_heldout_models import TCN, TemporalBlock


class ConvMixerLayer(nn.Module):
    """ConvMixer (Trockman & Kolter 2022): x + BN(GELU(depthwise(x))), then BN(GELU(1×1))."""

    def __init__(self, d, k):
        super().__init__()
        self.depthwise = nn.Conv2d(d, d, k, groups=d, padding="same")
        self.act1, self.bn1 = nn.GELU(), nn.BatchNorm2d(d)
        self.pointwise = nn.Conv2d(d, d, 1)
        self.act2, self.bn2 = nn.GELU(), nn.BatchNorm2d(d)

    def forward(self, x):
        x = x + self.bn1(self.act1(self.depthwise(x)))
        return self.bn2(self.act2(self.pointwise(x)))


class ConvMixer(nn.Module):
    def __init__(self, d, depth, k=5, patch=2, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, d, patch, patch), nn.GELU(), nn.BatchNorm2d(d))
        self.blocks = nn.Sequential(*[ConvMixerLayer(d, k) for _ in range(depth)])
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class PoolFormerBlock(nn.Module):
    """PoolFormer (Yu et al. 2022): pooling minus identity as the token mixer, a 1×1-conv MLP,
    GroupNorm(1) and layer scale 1e-5 (the reference code's defaults)."""

    def __init__(self, d, scale=1e-5):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(1, d), nn.GroupNorm(1, d)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.fc1, self.act, self.fc2 = nn.Conv2d(d, 4 * d, 1), nn.GELU(), nn.Conv2d(4 * d, d, 1)
        self.layer_scale_1 = nn.Parameter(scale * torch.ones(d))
        self.layer_scale_2 = nn.Parameter(scale * torch.ones(d))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.layer_scale_1[:, None, None] * (self.pool(h) - h)
        return x + self.layer_scale_2[:, None, None] * self.fc2(self.act(self.fc1(self.norm2(x))))


class PoolFormer(nn.Module):
    def __init__(self, depths=(1, 1), dims=(16, 32), classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, dims[0], 7, 4, 2)
        stages = []
        for i, (n, d) in enumerate(zip(depths, dims, strict=True)):
            if i > 0:
                stages.append(nn.Conv2d(dims[i - 1], d, 3, 2, 1))
            stages += [PoolFormerBlock(d) for _ in range(n)]
        self.network = nn.Sequential(*stages)
        self.norm, self.head = nn.GroupNorm(1, dims[-1]), nn.Linear(dims[-1], classes)
        for m in self.modules():  # the reference code: trunc-normal 0.02 for Linear only
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.head(self.norm(self.network(self.stem(x))).mean((2, 3)))


class CrossAttention(nn.Module):
    """Perceiver (Jaegle et al. 2021): latents attend to the inputs, Pre-LN, then an MLP."""

    def __init__(self, d, d_in, heads=1):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(d), nn.LayerNorm(d_in)
        self.attn = nn.MultiheadAttention(d, heads, kdim=d_in, vdim=d_in, batch_first=True)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, latents, x):
        kv = self.norm_kv(x)
        latents = latents + self.attn(self.norm_q(latents), kv, kv, need_weights=False)[0]
        return latents + self.mlp(self.norm_mlp(latents))


class Perceiver(nn.Module):
    def __init__(self, depth, d_in=8, d=32, latents=8, classes=5):
        super().__init__()
        self.latents = nn.Parameter(torch.empty(latents, d))
        nn.init.trunc_normal_(self.latents, std=0.02)
        self.pos = nn.Parameter(0.02 * torch.randn(1, 256, d_in))
        self.cross = CrossAttention(d, d_in)
        layer = nn.TransformerEncoderLayer(
            d, 2, 2 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.latent_blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x):
        x = x + self.pos[:, : x.shape[1]]
        z = self.cross(self.latents.expand(x.shape[0], -1, -1), x)
        return self.head(self.norm(self.latent_blocks(z)).mean(1))


class ConvVAE(nn.Module):
    """A convolutional VAE (Kingma & Welling 2014), PyTorch's init: stride-2 convs to μ and
    log σ², the reparameterised sample, transposed convs back, a sigmoid output."""

    def __init__(self, image, levels=2, width=8, z=8):
        super().__init__()
        enc, c = [], 1
        for i in range(levels):
            enc += [nn.Conv2d(c, width * 2**i, 4, 2, 1), nn.ReLU()]
            c = width * 2**i
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.side, self.c = image // 2**levels, c
        flat = c * self.side**2
        self.mu, self.logvar = nn.Linear(flat, z), nn.Linear(flat, z)
        self.expand = nn.Linear(z, flat)
        dec = []
        for i in reversed(range(levels)):
            out = 1 if i == 0 else width * 2 ** (i - 1)
            dec += [nn.ReLU(), nn.ConvTranspose2d(c, out, 4, 2, 1)]
            c = out
        self.decoder = nn.Sequential(*dec, nn.Sigmoid())

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        h = self.expand(z).view(-1, self.c, self.side, self.side)
        return self.decoder(h), mu, logvar


def vae_loss(out, x):
    recon, mu, logvar = out
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kl) / x.shape[0]


class GCNLayer(nn.Module):
    """Kipf & Welling 2017, as PyG's GCNConv computes it: h' = D^-½ (A + I) D^-½ h W, the
    messages summed with ``index_add_``; Glorot weights, zero bias."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.lin = nn.Linear(d_in, d_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(d_out))
        nn.init.xavier_uniform_(self.lin.weight)

    def forward(self, x, edge_index):
        n = x.shape[0]
        loops = torch.arange(n)
        src = torch.cat([edge_index[0], loops])
        dst = torch.cat([edge_index[1], loops])
        deg = torch.zeros(n).index_add_(0, dst, torch.ones(dst.shape[0]))
        norm = deg[src].rsqrt() * deg[dst].rsqrt()
        h = self.lin(x)
        out = torch.zeros_like(h).index_add_(0, dst, h[src] * norm[:, None])
        return out + self.bias


class GCN(nn.Module):
    def __init__(self, layers=2, d_in=16, hidden=32, classes=4, dropout=0.5):
        super().__init__()
        dims = [d_in] + [hidden] * (layers - 1) + [classes]
        self.convs = nn.ModuleList(GCNLayer(a, b) for a, b in itertools.pairwise(dims))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, edge_index):
        for conv in self.convs[:-1]:
            x = self.dropout(F.relu(conv(x, edge_index)))
        return self.convs[-1](x, edge_index)


class WaveNetLayer(nn.Module):
    """van den Oord et al. 2016: a dilated causal conv, the gated unit tanh(f)·σ(g), a 1×1
    residual and a 1×1 skip projection."""

    def __init__(self, r, s, dilation):
        super().__init__()
        self.dilation = dilation
        self.filter = nn.Conv1d(r, r, 2, dilation=dilation)
        self.gate = nn.Conv1d(r, r, 2, dilation=dilation)
        self.tanh, self.sigmoid = nn.Tanh(), nn.Sigmoid()
        self.res, self.skip = nn.Conv1d(r, r, 1), nn.Conv1d(r, s, 1)

    def forward(self, x):
        h = F.pad(x, (self.dilation, 0))
        z = self.tanh(self.filter(h)) * self.sigmoid(self.gate(h))
        return x + self.res(z), self.skip(z)


class WaveNet(nn.Module):
    def __init__(self, layers=4, r=16, s=32, classes=32):
        super().__init__()
        self.causal = nn.Conv1d(1, r, 2)
        self.layers = nn.ModuleList(WaveNetLayer(r, s, 2 ** (i % 4)) for i in range(layers))
        self.out1, self.out2 = nn.Conv1d(s, s, 1), nn.Conv1d(s, classes, 1)

    def forward(self, x):
        h, skips = self.causal(F.pad(x, (1, 0))), 0
        for layer in self.layers:
            h, skip = layer(h)
            skips = skips + skip
        return self.out2(F.relu(self.out1(F.relu(skips))))  # (B, classes, T)


class WeightNormTCNBlock(TemporalBlock):
    """Bai et al. 2018's reference TemporalBlock with its weight norm (parametrised weights:
    N(0, 0.01²) directions) and dropout."""

    def __init__(self, c_in, c_out, dilation, k=3):
        super().__init__(c_in, c_out, dilation, k)
        wn = nn.utils.parametrizations.weight_norm
        self.conv1, self.conv2 = wn(self.conv1), wn(self.conv2)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        h = self.drop(F.relu(self.conv1(x)[..., : -self.pad]))
        h = self.drop(F.relu(self.conv2(h)[..., : -self.pad]))
        return F.relu(h + (x if self.down is None else self.down(x)))


class WeightNormTCN(TCN):
    def __init__(self, levels=3, c_in=4, width=16, classes=5):
        super().__init__(0, c_in, width, classes)
        self.blocks = nn.Sequential(
            *[WeightNormTCNBlock(c_in if i == 0 else width, width, 2**i) for i in range(levels)]
        )


class DiagonalRecurrence(nn.Module):
    """A real diagonal linear recurrence h_t = a ⊙ h_{t-1} + γ ⊙ B x_t, y_t = C h_t + D ⊙ x_t
    (the LRU of Orvieto et al. 2023 without the complex phase; Mamba's A is real too):
    a = exp(-exp(ν)) with |a| uniform in [r_min, r_max], γ = √(1 − a²)."""

    def __init__(self, d, n, r_min=0.9, r_max=0.999):
        super().__init__()
        u = torch.rand(n)
        self.nu_log = nn.Parameter(
            torch.log(-0.5 * torch.log(u * (r_max**2 - r_min**2) + r_min**2))
        )
        self.B = nn.Linear(d, n, bias=False)
        self.C = nn.Linear(n, d, bias=False)
        nn.init.normal_(self.B.weight, std=1 / math.sqrt(2 * d))
        nn.init.normal_(self.C.weight, std=1 / math.sqrt(n))
        self.D = nn.Parameter(torch.randn(d))

    def forward(self, x):
        a = torch.exp(-torch.exp(self.nu_log))
        u = self.B(x) * torch.sqrt(1 - a**2)
        h, hs = torch.zeros_like(u[:, 0]), []
        for t in range(u.shape[1]):
            h = a * h + u[:, t]
            hs.append(h)
        return self.C(torch.stack(hs, 1)) + self.D * x


class RecurrenceBlock(nn.Module):
    """The LRU / S5 block: LayerNorm, the recurrence, GELU, a GLU output projection, residual."""

    def __init__(self, d, n):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.rec = DiagonalRecurrence(d, n)
        self.act, self.out = nn.GELU(), nn.Linear(d, 2 * d)

    def forward(self, x):
        return x + F.glu(self.out(self.act(self.rec(self.norm(x)))))


class RecurrenceLM(nn.Module):
    def __init__(self, depth, vocab=64, d=32, n=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.Sequential(*[RecurrenceBlock(d, n) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, ids):
        return self.head(self.norm(self.blocks(self.embed(ids)))).transpose(1, 2)


class HighwayLayer(nn.Module):
    """Srivastava et al. 2015: y = H(x)·T(x) + x·(1 − T(x)), the transform gate's bias −2."""

    def __init__(self, d, gate_bias=-2.0):
        super().__init__()
        self.transform, self.gate = nn.Linear(d, d), nn.Linear(d, d)
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, x):
        t = torch.sigmoid(self.gate(x))
        return F.relu(self.transform(x)) * t + x * (1 - t)


class Highway(nn.Module):
    def __init__(self, depth, d_in=16, d=32, classes=10, gate_bias=-2.0):
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        self.layers = nn.Sequential(*[HighwayLayer(d, gate_bias) for _ in range(depth)])
        self.out = nn.Linear(d, classes)

    def forward(self, x):
        return self.out(self.layers(F.relu(self.inp(x))))


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class SwiGLUBlock(nn.Module):
    """Shazeer 2020's SwiGLU feed-forward in a Pre-RMSNorm residual block (Llama's MLP)."""

    def __init__(self, d, hidden):
        super().__init__()
        self.norm = RMSNorm(d)
        self.w1, self.w3 = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        h = self.norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class SwiGLUStack(nn.Module):
    """nanoGPT-style init: N(0, 0.02²), the output projections 0.02/√(2·depth)."""

    def __init__(self, depth, d_in=16, d=32, classes=10):
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        self.blocks = nn.Sequential(*[SwiGLUBlock(d, 3 * d) for _ in range(depth)])
        self.norm, self.out = RMSNorm(d), nn.Linear(d, classes)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith("w2.weight") else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, x):
        return self.out(self.norm(self.blocks(self.inp(x))))


def squash(s, dim=-1):
    n2 = s.pow(2).sum(dim, keepdim=True)
    return n2 / (1 + n2) * s / torch.sqrt(n2 + 1e-8)


class PrimaryCaps(nn.Module):
    def __init__(self, c_in, caps=4, dim=8):
        super().__init__()
        self.conv, self.dim = nn.Conv2d(c_in, caps * dim, 3, 2, 1), dim

    def forward(self, x):
        u = self.conv(x)
        return squash(u.view(u.shape[0], -1, self.dim, *u.shape[2:]).movedim(2, -1).flatten(1, 3))


class DigitCaps(nn.Module):
    """Sabour et al. 2017: prediction vectors W_ij u_i, three iterations of routing by
    agreement; W ~ 0.01·N(0, 1) as the common PyTorch implementations have it."""

    def __init__(self, n_in, d_in=8, classes=10, d_out=16, iters=3):
        super().__init__()
        self.W = nn.Parameter(0.01 * torch.randn(1, n_in, classes, d_out, d_in))
        self.iters = iters

    def forward(self, u):
        u_hat = (self.W @ u[:, :, None, :, None]).squeeze(-1)  # (B, n_in, classes, d_out)
        b = torch.zeros(u_hat.shape[:3])
        for i in range(self.iters):
            c = b.softmax(2)
            v = squash((c[..., None] * u_hat).sum(1))  # (B, classes, d_out)
            if i < self.iters - 1:
                b = b + (u_hat * v[:, None]).sum(-1)
        return v


class CapsNet(nn.Module):
    def __init__(self, image, width=16, caps=4, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.primary = PrimaryCaps(width, caps)
        self.digits = DigitCaps(caps * ((image + 1) // 2) ** 2, classes=classes)

    def forward(self, x):
        return self.digits(self.primary(F.relu(self.conv1(x)))).norm(dim=-1)


def margin_loss(lengths, y):
    t = F.one_hot(y, lengths.shape[1]).float()
    loss = t * F.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * F.relu(lengths - 0.1) ** 2
    return loss.sum(1).mean()


class Seq2SeqTransformer(nn.Module):
    """nn.Transformer (encoder + decoder), its own Xavier reset, token embeddings, a head."""

    def __init__(self, layers, norm_first, vocab=64, d=32):
        super().__init__()
        self.src, self.tgt = nn.Embedding(vocab, d), nn.Embedding(vocab, d)
        self.pos = nn.Parameter(0.02 * torch.randn(1, 256, d))
        self.transformer = nn.Transformer(
            d, 2, layers, layers, 2 * d, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        self.head = nn.Linear(d, vocab)

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        h = self.transformer(
            self.src(src) + self.pos[:, : src.shape[1]],
            self.tgt(tgt) + self.pos[:, : tgt.shape[1]],
            tgt_mask=mask,
            tgt_is_causal=True,
        )
        return self.head(h).transpose(1, 2)


class Captioner(nn.Module):
    """Show-attend-tell with a Transformer: a conv encoder's feature map is the memory of an
    nn.TransformerDecoder over the caption tokens."""

    def __init__(self, layers, norm_first, vocab=64, d=32):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, d, 3, 2, 1), nn.BatchNorm2d(d), nn.ReLU(),
        )  # fmt: skip
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(0.02 * torch.randn(1, 256, d))
        layer = nn.TransformerDecoderLayer(
            d, 2, 2 * d, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        norm = nn.LayerNorm(d) if norm_first else None
        self.decoder = nn.TransformerDecoder(layer, layers, norm=norm)
        self.head = nn.Linear(d, vocab)

    def forward(self, image, ids):
        memory = self.cnn(image).flatten(2).transpose(1, 2)
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        h = self.embed(ids) + self.pos[:, : ids.shape[1]]
        return self.head(self.decoder(h, memory, tgt_mask=mask, tgt_is_causal=True)).transpose(1, 2)
