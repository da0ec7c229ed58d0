"""The zoo's model classes, as their authors lay them out, at tiny sizes (builders and
their inits: ``_zoo.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 64


class TorchLM(nn.Module):
    """Embedding + nn.TransformerEncoder (or Decoder over a memory) + a linear head."""

    def __init__(self, layers, d=32, norm_first=False, decoder=False, final_norm=True):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.pos = nn.Parameter(torch.zeros(1, 512, d))
        nn.init.normal_(self.pos, std=0.02)
        kw = dict(d_model=d, nhead=2, dim_feedforward=2 * d, dropout=0.0, batch_first=True)
        kw["norm_first"] = norm_first
        norm = nn.LayerNorm(d) if (norm_first and final_norm) else None
        if decoder:
            self.stack = nn.TransformerDecoder(nn.TransformerDecoderLayer(**kw), layers, norm=norm)
            self.memory = nn.Embedding(VOCAB, d)
        else:
            self.stack = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(**kw), layers, norm=norm, enable_nested_tensor=False
            )
        self.head = nn.Linear(d, VOCAB)
        self.decoder = decoder

    def forward(self, ids):
        h = self.embed(ids) + self.pos[:, : ids.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        if self.decoder:
            h = self.stack(h, self.memory(ids.flip(1)), tgt_mask=mask, tgt_is_causal=True)
        else:
            h = self.stack(h, mask=mask, is_causal=True)
        return self.head(h).transpose(1, 2)  # (batch, vocab, length) for cross_entropy


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, norm=True):
        super().__init__()
        bn = (lambda c: nn.BatchNorm2d(c)) if norm else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not norm)
        self.bn1 = bn(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not norm)
        self.bn2 = bn(c_out)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or c_in != c_out:
            shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            self.downsample = nn.Sequential(shortcut, bn(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class ResNet(nn.Module):
    """torchvision's ResNet layout (stem, stages of BasicBlocks, global pool, fc), tiny."""

    def __init__(self, blocks=(1, 1, 1), width=8, classes=10, norm=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.relu = nn.ReLU()
        stages, c = [], width
        for i, n in enumerate(blocks):
            out = width * 2**i
            stage = [BasicBlock(c, out, 1 if i == 0 else 2, norm)]
            stage += [BasicBlock(out, out, 1, norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            c = out
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


class MlpBlock(nn.Module):
    def __init__(self, d, hidden, act=nn.GELU):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), act(), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    def __init__(self, tokens, d, act=nn.GELU):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp_tokens = MlpBlock(tokens, 2 * tokens, act)
        self.mlp_channels = MlpBlock(d, 2 * d, act)

    def forward(self, x):
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class Mixer(nn.Module):
    """MLP-Mixer (Tolstikhin et al. 2021): patch embedding, mixer blocks, norm, mean pool."""

    def __init__(self, depth, image=32, patch=8, d=32, classes=10, act=nn.GELU):
        super().__init__()
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(3, d, patch, patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, d, act) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


class ChannelsLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor (ConvNeXt's "channels_first")."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7×7 conv, LayerNorm, pointwise MLP with GELU, layer scale (Liu et al. 2022)."""

    def __init__(self, d):
        super().__init__()
        self.dwconv = nn.Conv2d(d, d, 7, padding=3, groups=d)
        self.norm = nn.LayerNorm(d)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(1e-6 * torch.ones(d))

    def forward(self, x):
        h = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        h = self.gamma * self.pwconv2(self.act(self.pwconv1(h)))
        return x + h.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """The ConvNeXt layout: patchify stem + LN, stages of blocks, LN + stride-2 conv between
    stages, global mean, LN, linear head; trunc_normal(std=0.02) weights, zero biases."""

    def __init__(self, depths=(1, 1), dims=(16, 32), classes=10):
        super().__init__()
        self.downsample = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), ChannelsLayerNorm(dims[0]))]
            + [
                nn.Sequential(ChannelsLayerNorm(dims[i - 1]), nn.Conv2d(dims[i - 1], dims[i], 2, 2))
                for i in range(1, len(dims))
            ]
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*[ConvNeXtBlock(d) for _ in range(n)])
            for n, d in zip(depths, dims, strict=True)
        )
        self.norm, self.head = nn.LayerNorm(dims[-1]), nn.Linear(dims[-1], classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        for down, stage in zip(self.downsample, self.stages, strict=True):
            x = stage(down(x))
        return self.head(self.norm(x.mean((2, 3))))


class DoubleConv(nn.Sequential):
    def __init__(self, c_in, c_out):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        )  # fmt: skip


class UNet(nn.Module):
    """Ronneberger et al. 2015 with BatchNorm, tiny: down, bottleneck, up with skips."""

    def __init__(self, levels=2, width=8, classes=3):
        super().__init__()
        chans = [width * 2**i for i in range(levels + 1)]
        self.inc = DoubleConv(3, chans[0])
        self.downs = nn.ModuleList(DoubleConv(chans[i], chans[i + 1]) for i in range(levels))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, 2) for i in reversed(range(levels))
        )
        self.up_convs = nn.ModuleList(
            DoubleConv(2 * chans[i], chans[i]) for i in reversed(range(levels))
        )
        self.out = nn.Conv2d(chans[0], classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        h = skips.pop()
        for up, conv in zip(self.ups, self.up_convs, strict=True):
            h = conv(torch.cat([up(h), skips.pop()], 1))
        return self.out(h)


class LSTMLM(nn.Module):
    """Zaremba et al. 2014's LSTM language model; forget-gate bias 1 (Jozefowicz et al. 2015)."""

    def __init__(self, layers=1, d=32, forget_bias=1.0):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.lstm = nn.LSTM(d, d, layers, batch_first=True)
        self.head = nn.Linear(d, VOCAB)
        if forget_bias is not None:
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        p.chunk(4)[1].fill_(forget_bias)  # gates i, f, g, o
                elif name.startswith("bias_hh"):
                    with torch.no_grad():
                        p.chunk(4)[1].zero_()

    def forward(self, ids):
        out, _ = self.lstm(self.embed(ids))
        return self.head(out).transpose(1, 2)


class GRUClassifier(nn.Module):
    """Embedding, GRU, the last state classified; PyTorch's init (Keras and torch use zero
    gate biases for the GRU)."""

    def __init__(self, layers=1, d=32, classes=4):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.gru = nn.GRU(d, d, layers, batch_first=True)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        out, _ = self.gru(self.embed(ids))
        return self.head(out[:, -1])


class LSTMClassifier(nn.Module):
    """A recurrent layer (named after its cell: ``lstm``, ``rnn``, ``gru``) on N(0, 1) inputs,
    the last state classified; PyTorch's init, or a forget-gate bias (LSTM) or recurrent
    weights N(0, rec_std²/d)."""

    def __init__(self, d=32, classes=4, cell="LSTM", forget_bias=None, rec_std=None):
        super().__init__()
        self.cell = cell.lower()
        rnn = getattr(nn, cell)(16, d, batch_first=True)
        setattr(self, self.cell, rnn)
        self.head = nn.Linear(d, classes)
        with torch.no_grad():
            if forget_bias is not None:  # gates i, f, g, o; the hidden-side bias to 0
                rnn.bias_ih_l0.chunk(4)[1].fill_(forget_bias)
                rnn.bias_hh_l0.chunk(4)[1].zero_()
            if rec_std is not None:
                rnn.weight_hh_l0.normal_(0, rec_std / d**0.5)

    def forward(self, x):
        out, _ = getattr(self, self.cell)(x)
        return self.head(out[:, -1])
