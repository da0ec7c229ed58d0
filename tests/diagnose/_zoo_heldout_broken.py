"""Broken variants for the held-out zoo, each with the kinds the diagnosis must report and
where (a predicate on the finding's layer), at two sizes each."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._zoo_heldout import _vectors
from ._zoo_heldout_hf import _gen, _ids, _pixels, bert_deep, gpt2_init_range_1
from ._zoo_heldout_models import VGG16, vgg


class PostLNBlock(nn.Module):
    """The original Transformer layer (Vaswani et al. 2017), written out: x = LN(x + Attn(x));
    x = LN(x + FFN(x))."""

    def __init__(self, d, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        x = self.ln1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.ln2(x + self.ff2(F.relu(self.ff1(x))))


class PostLNEncoder(nn.Module):
    def __init__(self, layers, vocab=64, d=32, heads=2, classes=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(PostLNBlock(d, heads) for _ in range(layers))
        self.head = nn.Linear(d, classes)
        for p in self.parameters():  # the annotated transformer's init
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, ids):
        h = self.embed(ids) * self.embed.embedding_dim**0.5
        for layer in self.layers:
            h = layer(h)
        return self.head(h.mean(1))


class MixerMLP(nn.Module):
    def __init__(self, d, hidden, act):
        super().__init__()
        self.dense1, self.act, self.dense2 = nn.Linear(d, hidden), act(), nn.Linear(hidden, d)

    def forward(self, x):
        return self.dense2(self.act(self.dense1(x)))


class MixerLayer(nn.Module):
    """A Mixer layer (Tolstikhin et al. 2021) written with token mixing on the transposed
    tensor, as the reference JAX code does."""

    def __init__(self, tokens, d, act):
        super().__init__()
        self.ln_token, self.ln_channel = nn.LayerNorm(d), nn.LayerNorm(d)
        self.token_mixing = MixerMLP(tokens, 4 * tokens, act)
        self.channel_mixing = MixerMLP(d, 4 * d, act)

    def forward(self, x):
        y = self.token_mixing(self.ln_token(x).transpose(1, 2)).transpose(1, 2)
        x = x + y
        return x + self.channel_mixing(self.ln_channel(x))


class MlpMixer(nn.Module):
    def __init__(self, depth, image=16, patch=4, d=24, classes=10, act=nn.GELU):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.layers = nn.ModuleList(MixerLayer((image // patch) ** 2, d, act) for _ in range(depth))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x).mean(1))


class BottleneckNoNorm(nn.Module):
    """A ResNet-50-style bottleneck (1×1, 3×3, 1×1) without normalisation."""

    def __init__(self, c, mid):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = (
            nn.Conv2d(c, mid, 1),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.Conv2d(mid, c, 1),
        )

    def forward(self, x):
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(x + self.conv3(h))


class BottleneckResNet(nn.Module):
    def __init__(self, blocks, c=16, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(*[BottleneckNoNorm(c, c // 2) for _ in range(blocks)])
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class VanillaRNN(nn.Module):
    def __init__(self, d_in=8, hidden=32, classes=4):
        super().__init__()
        self.rnn = nn.RNN(d_in, hidden, batch_first=True, nonlinearity="tanh")
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def _normal_(model, std=1.0, only=lambda name: True):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and only(name):
                p.normal_(0.0, std)
    return model


def vgg16_small_init(size, seed):
    """VGG-16 without BatchNorm at N(0, 0.01²): why Simonyan & Zisserman trained it in stages."""
    torch.manual_seed(seed)
    model = _normal_(vgg(VGG16, bn=False, width=(1.0, 2.0)[size]), 0.01)
    return model, *_pixels(seed, 8, 32)


def _mlp(depth, width, act, d_in=16, d_out=10):
    layers = [nn.Linear(d_in, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, d_out))


def tanh_mlp_unit_gaussian(size, seed):
    torch.manual_seed(seed)
    return _normal_(_mlp(20, (32, 64)[size], nn.Tanh)), *_vectors(seed)


def sigmoid_mlp_deep(size, seed):
    """PyTorch's default init, sigmoid: σ' ≤ 1/4 per layer."""
    torch.manual_seed(seed)
    return _mlp((12, 20)[size], (32, 64)[size], nn.Sigmoid), *_vectors(seed)


def relu_bias_minus_5(size, seed):
    torch.manual_seed(seed)
    model = _mlp((4, 8)[size], 64, nn.ReLU)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, -5.0)
    return model, *_vectors(seed)


def zero_hidden_weights(size, seed):
    """Every hidden weight matrix zero (the first and the output layer keep theirs)."""
    torch.manual_seed(seed)
    model = _mlp((4, 6)[size], 32, nn.ReLU)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for m in linears[1:-1]:
        nn.init.zeros_(m.weight)
    return model, *_vectors(seed)


def resnet_bottleneck_unit_gaussian(size, seed):
    torch.manual_seed(seed)
    model = _normal_(BottleneckResNet((3, 6)[size]))
    return model, *_pixels(seed, 8, 16)


def rnn_long_small(size, seed):
    """A tanh RNN over 200 steps with recurrent weights N(0, 0.1²/n): ‖W_hh‖ ≈ 0.2."""
    torch.manual_seed(seed)
    model = VanillaRNN()
    with torch.no_grad():
        model.rnn.weight_hh_l0.normal_(0, 0.1 / 32**0.5)
    g = _gen(seed)
    x = torch.randn(8, (200, 300)[size], 8, generator=g)
    return model, x, torch.randint(0, 4, (8,), generator=g)


def mixer_sigmoid(size, seed):
    """Sigmoid MLPs in a Mixer, N(0, 1) dense weights."""
    torch.manual_seed(seed)
    model = MlpMixer((2, 4)[size], act=nn.Sigmoid)
    _normal_(model, only=lambda n: ".dense" in n)
    return model, *_pixels(seed, 8, 16)


def post_ln_deep(size, seed):
    torch.manual_seed(seed)
    g = _gen(seed)
    ids = _ids(g, 4, 16)
    return PostLNEncoder((24, 32)[size]), ids, torch.randint(0, 4, (4,), generator=g)


def _first(*names):
    return lambda layer: layer in names


BROKEN = {
    "vgg16_small_init": (vgg16_small_init, {"vanishing"}, _first("0")),
    "tanh_mlp_unit_gaussian": (tanh_mlp_unit_gaussian, {"saturated"}, None),
    "sigmoid_mlp_deep": (sigmoid_mlp_deep, {"vanishing"}, _first("0")),
    "relu_bias_minus_5": (relu_bias_minus_5, {"dead_units"}, None),
    "zero_hidden_weights": (zero_hidden_weights, {"vanishing"}, _first("0")),
    "resnet_bottleneck_unit_gaussian": (
        resnet_bottleneck_unit_gaussian,
        {"exploding"},
        _first("blocks.0"),
    ),
    "rnn_long_small": (rnn_long_small, {"vanishing"}, _first("rnn")),
    "gpt2_init_range_1": (gpt2_init_range_1, {"exploding", "saturated"}, None),
    "mixer_sigmoid": (mixer_sigmoid, {"saturated"}, None),
    "post_ln_deep": (post_ln_deep, {"vanishing"}, _first("layers.0")),
    "bert_deep": (bert_deep, {"vanishing"}, _first("bert.encoder.layer.0")),
}

__all__ = ["BROKEN"]
