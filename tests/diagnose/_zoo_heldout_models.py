"""Hand-written model classes of the held-out zoo (builders: ``_zoo_heldout.py``), laid out
as their papers do, at tiny sizes. None of them is in the calibration zoo (``_zoo.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InvertedResidual(nn.Module):
    """MobileNetV2 (Sandler et al. 2018): 1×1 expand, 3×3 depthwise, 1×1 project, BN, ReLU6."""

    def __init__(self, c_in, c_out, stride, expand=4):
        super().__init__()
        hidden = c_in * expand
        self.use_res = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )  # fmt: skip

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, repeats=(1, 2, 2), widths=(8, 16, 24), classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()
        )
        layers, c = [], 8
        for i, (n, w) in enumerate(zip(repeats, widths, strict=True)):
            for j in range(n):
                layers.append(InvertedResidual(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, classes)
        for m in self.modules():  # torchvision's MobileNetV2 init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(self.stem(x)).mean((2, 3)))


class DenseLayer(nn.Module):
    """DenseNet-BC (Huang et al. 2017): BN-ReLU-1×1 conv, BN-ReLU-3×3 conv, concatenated."""

    def __init__(self, c_in, growth):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        h = self.conv1(F.relu(self.norm1(x)))
        return torch.cat([x, self.conv2(F.relu(self.norm2(h)))], 1)


class DenseNet(nn.Module):
    def __init__(self, layers=(2, 2), growth=8, classes=10):
        super().__init__()
        c = 2 * growth
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        blocks = []
        for i, n in enumerate(layers):
            for _ in range(n):
                blocks.append(DenseLayer(c, growth))
                c += growth
            if i < len(layers) - 1:  # transition: BN, 1×1 conv halving, 2×2 average pool
                blocks.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1),
                                            nn.AvgPool2d(2)))  # fmt: skip
                c //= 2
        self.features = nn.Sequential(*blocks)
        self.norm = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, classes)
        for m in self.modules():  # torchvision's DenseNet init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        return self.classifier(F.relu(self.norm(self.features(self.stem(x)))).mean((2, 3)))


def vgg(cfg, bn=True, classes=10, width=1.0, hidden=64):
    """VGG (Simonyan & Zisserman 2015): 3×3 convs, max pools; torchvision's init."""
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        v = max(4, int(v * width))
        layers += [nn.Conv2d(c, v, 3, padding=1)]
        layers += [nn.BatchNorm2d(v)] if bn else []
        layers += [nn.ReLU()]
        c = v
    head = [nn.Flatten(), nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, classes)]  # fmt: skip
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), *head)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


VGG11 = [8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64]
VGG16 = [8, 8, "M", 16, 16, "M", 32, 32, 32, "M", 64, 64, 64, "M", 64, 64, 64]


class WideBlock(nn.Module):
    """Wide ResNet (Zagoruyko & Komodakis 2016): pre-activation BN-ReLU-conv, twice."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1, self.conv1 = (
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        )
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.short = (
            None
            if (c_in == c_out and stride == 1)
            else nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        )

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return y + (x if self.short is None else self.short(o))


class WideResNet(nn.Module):
    def __init__(self, n=1, k=2, classes=10):
        super().__init__()
        widths = [8, 8 * k, 16 * k, 32 * k]
        self.conv = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        groups, c = [], widths[0]
        for i, w in enumerate(widths[1:]):
            groups.append(
                nn.Sequential(
                    *[
                        WideBlock(c if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1)
                        for j in range(n)
                    ]
                )
            )
            c = w
        self.groups = nn.Sequential(*groups)
        self.bn, self.fc = nn.BatchNorm2d(c), nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.groups(self.conv(x)))).mean((2, 3)))


def groupnorm_cnn(depth, width=16, classes=10, groups=4):
    """conv-GroupNorm-ReLU stack (Wu & He 2018), PyTorch's default init."""
    layers, c = [], 3
    for i in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(groups, width), nn.ReLU()]
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))


class SqueezeExcite(nn.Module):
    def __init__(self, c, reduced):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, reduced, 1), nn.Conv2d(reduced, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean((2, 3), keepdim=True)))))


class MBConv(nn.Module):
    """EfficientNet (Tan & Le 2019): expand, depthwise, squeeze-excite, project; SiLU."""

    def __init__(self, c_in, c_out, stride, expand=4):
        super().__init__()
        h = c_in * expand
        self.expand = nn.Sequential(nn.Conv2d(c_in, h, 1, bias=False), nn.BatchNorm2d(h), nn.SiLU())
        self.depthwise = nn.Sequential(nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False),
                                       nn.BatchNorm2d(h), nn.SiLU())  # fmt: skip
        self.se = SqueezeExcite(h, max(1, c_in // 4))
        self.project = nn.Sequential(nn.Conv2d(h, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.use_res = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.use_res else y


class EfficientNet(nn.Module):
    def __init__(self, repeats=(1, 2), widths=(16, 24), classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU()
        )
        blocks, c = [], 16
        for i, (n, w) in enumerate(zip(repeats, widths, strict=True)):
            for j in range(n):
                blocks.append(MBConv(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, classes)
        for m in self.modules():  # the reference init: fan-out normal convs, uniform head
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class TemporalBlock(nn.Module):
    """TCN (Bai et al. 2018): two dilated causal convs with weight norm omitted, ReLU, residual."""

    def __init__(self, c_in, c_out, dilation, k=3):
        super().__init__()
        self.pad = (k - 1) * dilation
        self.conv1 = nn.Conv1d(c_in, c_out, k, dilation=dilation, padding=self.pad)
        self.conv2 = nn.Conv1d(c_out, c_out, k, dilation=dilation, padding=self.pad)
        self.down = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0, 0.01)  # the TCN reference code's init

    def forward(self, x):
        h = F.relu(self.conv1(x)[..., : -self.pad])
        h = F.relu(self.conv2(h)[..., : -self.pad])
        return F.relu(h + (x if self.down is None else self.down(x)))


class TCN(nn.Module):
    def __init__(self, levels=3, c_in=8, width=16, classes=5):
        super().__init__()
        self.blocks = nn.Sequential(
            *[TemporalBlock(c_in if i == 0 else width, width, 2**i) for i in range(levels)]
        )
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.blocks(x)[..., -1])


class BiLSTMTagger(nn.Module):
    """Embedding, bidirectional LSTM, a per-token linear tagger (Huang et al. 2015)."""

    def __init__(self, vocab=64, d=16, hidden=16, tags=6, layers=1):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.lstm = nn.LSTM(d, hidden, layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, tags)

    def forward(self, ids):
        return self.out(self.lstm(self.embed(ids))[0]).transpose(1, 2)  # (B, tags, T)


class GRUSeq2Seq(nn.Module):
    """Cho et al. 2014 / Sutskever et al. 2014: a GRU encoder's last state starts a GRU decoder
    fed the shifted target (teacher forcing)."""

    def __init__(self, vocab=64, d=16, hidden=32):
        super().__init__()
        self.src, self.tgt = nn.Embedding(vocab, d), nn.Embedding(vocab, d)
        self.encoder = nn.GRU(d, hidden, batch_first=True)
        self.decoder = nn.GRU(d, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, src, tgt_in):
        _, h = self.encoder(self.src(src))
        return self.out(self.decoder(self.tgt(tgt_in), h)[0]).transpose(1, 2)


class Autoencoder(nn.Module):
    def __init__(self, d_in=32, hidden=(24, 8)):
        super().__init__()
        enc, c = [], d_in
        for h in hidden:
            enc += [nn.Linear(c, h), nn.ReLU()]
            c = h
        dec = []
        for h in [*reversed(hidden[:-1]), d_in]:
            dec += [nn.Linear(c, h), nn.ReLU()]
            c = h
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec[:-1])

    def forward(self, x):
        return self.decoder(self.encoder(x))
