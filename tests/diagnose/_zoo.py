"""Models as people build them, at tiny sizes, with their authors' default init.

Each builder takes ``(size, seed)`` and returns ``(model, inputs, target)`` ready for
``gp.check(model, inputs, target)``; ``size`` is 0 (smallest) or 1 (the next one up), the
depth or width its authors vary. Hugging Face models come from their ``XConfig`` (nothing is
downloaded) and compute their own loss from ``labels``. Sizes are kept tiny so the whole
zoo checks in seconds on one thread.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 64


def _ids(g, batch=4, length=16, vocab=VOCAB):
    return torch.randint(0, vocab, (batch, length), generator=g)


def _quiet():
    from transformers.utils import logging

    logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*loss_type=None.*")


# -- Hugging Face ---------------------------------------------------------------------------


def gpt2(size, seed, length=16, batch=4, layers=None, embd=32, tie=True):
    from transformers import GPT2Config, GPT2LMHeadModel

    _quiet()
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_embd=embd, n_layer=layers or (2, 4)[size], n_head=2, vocab_size=VOCAB,
        n_positions=max(64, length), bos_token_id=0, eos_token_id=0,
        tie_word_embeddings=tie,
    )  # fmt: skip
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return GPT2LMHeadModel(cfg), {"input_ids": ids, "labels": ids}, None


def bert(size, seed, length=16, batch=4):
    from transformers import BertConfig, BertForMaskedLM

    _quiet()
    torch.manual_seed(seed)
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=(2, 4)[size], num_attention_heads=2,
        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=max(64, length),
    )  # fmt: skip
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return BertForMaskedLM(cfg), {"input_ids": ids, "labels": ids}, None


def bert_classifier(size, seed, length=16, batch=4):
    """The CLS token's pooled output, classified: the gradient enters at one position."""
    from transformers import BertConfig, BertForSequenceClassification

    _quiet()
    torch.manual_seed(seed)
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=(2, 4)[size], num_attention_heads=2,
        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=max(64, length),
        num_labels=3,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 100)
    ids = _ids(g, batch, length)
    labels = torch.randint(0, 3, (batch,), generator=g)
    return BertForSequenceClassification(cfg), {"input_ids": ids, "labels": labels}, None


def llama(size, seed, length=16, batch=4):
    from transformers import LlamaConfig, LlamaForCausalLM

    _quiet()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=(2, 4)[size],
        num_attention_heads=2, num_key_value_heads=2, vocab_size=VOCAB,
        max_position_embeddings=max(64, length), bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return LlamaForCausalLM(cfg), {"input_ids": ids, "labels": ids}, None


def t5(size, seed, length=16, batch=4):
    from transformers import T5Config, T5ForConditionalGeneration

    _quiet()
    torch.manual_seed(seed)
    cfg = T5Config(
        d_model=32, d_ff=64, d_kv=16, num_layers=(2, 4)[size], num_heads=2,
        vocab_size=VOCAB, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 100)
    ids, labels = _ids(g, batch, length), _ids(g, batch, length // 2)
    decoder = torch.cat([torch.zeros(batch, 1, dtype=torch.long), labels[:, :-1]], 1)
    inputs = {"input_ids": ids, "decoder_input_ids": decoder, "labels": labels}
    return T5ForConditionalGeneration(cfg), inputs, None


def vit(size, seed, image=32, batch=4, layers=None):
    from transformers import ViTConfig, ViTForImageClassification

    _quiet()
    torch.manual_seed(seed)
    cfg = ViTConfig(
        image_size=image, patch_size=8, hidden_size=32, num_hidden_layers=layers or (2, 4)[size],
        num_attention_heads=2, intermediate_size=64, num_labels=10, num_channels=3,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, 3, image, image, generator=g)
    labels = torch.randint(0, 10, (batch,), generator=g)
    return ViTForImageClassification(cfg), {"pixel_values": x, "labels": labels}, None


# -- torch Transformer ---------------------------------------------------------------------------


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


def torch_transformer(size, seed, norm_first=False, decoder=False, length=16, batch=4, layers=None):
    torch.manual_seed(seed)
    model = TorchLM(layers or (2, 4)[size], norm_first=norm_first, decoder=decoder)
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return model, ids, ids


# -- convolutional ---------------------------------------------------------------------------


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


def _images(seed, batch, image, classes=10):
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randn(batch, 3, image, image, generator=g), torch.randint(
        0, classes, (batch,), generator=g
    )


def resnet(size, seed, image=32, batch=8, blocks=None):
    torch.manual_seed(seed)
    model = ResNet(blocks or ((1, 1, 1), (2, 2, 2))[size])
    return model, *_images(seed, batch, image)


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


def mixer(size, seed, image=32, batch=8, depth=None):
    torch.manual_seed(seed)
    return Mixer(depth or (2, 4)[size], image), *_images(seed, batch, image)


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


def convnext(size, seed, image=32, batch=8):
    torch.manual_seed(seed)
    model = ConvNeXt(((1, 1), (2, 2, 2))[size], ((16, 32), (16, 32, 64))[size])
    return model, *_images(seed, batch, image)


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


def unet(size, seed, image=32, batch=4):
    torch.manual_seed(seed)
    model = UNet((2, 3)[size])
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, 3, image, image, generator=g)
    return model, x, torch.randint(0, 3, (batch, image, image), generator=g)


def lenet(size, seed, act=nn.ReLU, keras=False, batch=32):
    """LeNet-5's layout (conv-pool-conv-pool-dense-dense) on 28×28 inputs in [0, 1], as the
    small Keras-era benchmark models are: PyTorch's init, or Keras's (Glorot uniform, zero
    bias). The old per-layer ratio read these "vanishing" (1e-3-5e-3) though they train."""
    torch.manual_seed(seed)
    c1, c2 = ((6, 16), (12, 32))[size]
    model = nn.Sequential(
        nn.Conv2d(1, c1, 5, padding=2), act(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), act(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(c2 * 25, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10),
    )  # fmt: skip
    if keras:
        for m in model:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.rand(batch, 1, 28, 28, generator=g)
    return model, x, torch.randint(0, 10, (batch,), generator=g)


# -- recurrent -------------------------------------------------------------------------------


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


def lstm_lm(size, seed, length=32, batch=4):
    torch.manual_seed(seed)
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return LSTMLM((1, 2)[size]), ids, ids


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


def gru_classifier(size, seed, length=32, batch=8):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 100)
    ids = _ids(g, batch, length)
    return GRUClassifier((1, 2)[size]), ids, torch.randint(0, 4, (batch,), generator=g)


HEALTHY = {
    "gpt2": gpt2,
    "bert": bert,
    "bert_classifier": bert_classifier,
    "llama": llama,
    "t5": t5,
    "vit": vit,
    "torch_post_ln": functools.partial(torch_transformer, norm_first=False),
    "torch_pre_ln": functools.partial(torch_transformer, norm_first=True),
    "torch_decoder_post_ln": functools.partial(torch_transformer, norm_first=False, decoder=True),
    "torch_decoder_pre_ln": functools.partial(torch_transformer, norm_first=True, decoder=True),
    "resnet": resnet,
    "mixer": mixer,
    "convnext": convnext,
    "unet": unet,
    "lenet": lenet,
    "lenet_tanh_keras": functools.partial(lenet, act=nn.Tanh, keras=True),
    "lstm_lm": lstm_lm,
    "gru_classifier": gru_classifier,
}


# -- broken: each builder also returns what the diagnosis must say -----------------------------


def _normal_(model, std=1.0, only=None):
    """Every weight matrix (and conv kernel) N(0, std²); biases left as they are."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and (only is None or only(name)):
                p.normal_(0.0, std)
    return model


def deep_post_ln(size, seed, length=16, batch=4):
    """Xiong et al. 2020 / Wang et al. 2022: 24 or 48 Post-LN layers need warm-up."""
    layers = (24, 48)[size]
    return torch_transformer(0, seed, norm_first=False, length=length, batch=batch, layers=layers)


def transformer_unit_gaussian(size, seed):
    model, inputs, target = gpt2(size, seed)
    return _normal_(model), inputs, target


def resnet_no_norm_unit_gaussian(size, seed, image=32, batch=8):
    torch.manual_seed(seed)
    model = _normal_(ResNet(((1, 1, 1), (2, 2, 2))[size], norm=False))
    return model, *_images(seed, batch, image)


def mixer_saturating(size, seed, image=32, batch=8):
    """Tanh MLPs with N(0, 1) weights: pre-activations of size ~√fan_in."""
    torch.manual_seed(seed)
    model = Mixer((2, 4)[size], image, act=nn.Tanh)
    _normal_(model, only=lambda n: ".fc" in n)
    return model, *_images(seed, batch, image)


def vit_saturating(size, seed, image=32, batch=4):
    from transformers import ViTConfig, ViTForImageClassification

    _quiet()
    torch.manual_seed(seed)
    cfg = ViTConfig(
        image_size=image, patch_size=8, hidden_size=32, num_hidden_layers=(2, 4)[size],
        num_attention_heads=2, intermediate_size=64, num_labels=10, hidden_act="sigmoid",
        initializer_range=1.0,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, 3, image, image, generator=g)
    labels = torch.randint(0, 10, (batch,), generator=g)
    return ViTForImageClassification(cfg), {"pixel_values": x, "labels": labels}, None


class LSTMClassifier(nn.Module):
    def __init__(self, d=32, classes=4):
        super().__init__()
        self.lstm = nn.LSTM(16, d, batch_first=True)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def lstm_default_long(size, seed, batch=8):
    """PyTorch's LSTM init (forget-gate bias 0) over 200 (or 400) steps, loss at the end."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, (200, 400)[size], 16, generator=g)
    return LSTMClassifier(), x, torch.randint(0, 4, (batch,), generator=g)


def _conv_stack(depth, act, width=16, bias=None, classes=10):
    layers, c = [], 3
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), act()]
        c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
    model = nn.Sequential(*layers)
    if bias is not None:
        for m in model:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.constant_(m.bias, bias)
    return model


def sigmoid_cnn(size, seed, image=16, batch=8):
    torch.manual_seed(seed)
    return _conv_stack((10, 16)[size], nn.Sigmoid), *_images(seed, batch, image)


def relu_cnn_bias_minus_3(size, seed, image=16, batch=16):
    torch.manual_seed(seed)
    return _conv_stack((4, 6)[size], nn.ReLU, bias=-3.0), *_images(seed, batch, image)


def _mlp(depth, width, act, d_in=16, d_out=10):
    layers = [nn.Linear(d_in, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, d_out))


def _vectors(seed, batch=64, d_in=16, classes=10):
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randn(batch, d_in, generator=g), torch.randint(0, classes, (batch,), generator=g)


def narrow_relu(size, seed):
    """16 (or 24) He-initialised ReLU layers of width 5 (Hanin & Rolnick 2018)."""
    torch.manual_seed(seed)
    model = _mlp((16, 24)[size], 5, nn.ReLU)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model, *_vectors(seed)


def gelu_unit_gaussian(size, seed):
    torch.manual_seed(seed)
    return _normal_(_mlp((10, 20)[size], 64, nn.GELU)), *_vectors(seed)


def sigmoid_mlp_standard(size, seed):
    """Glorot & Bengio 2010's case: sigmoid, U(-1/√n, 1/√n)."""
    torch.manual_seed(seed)
    model = _mlp((10, 20)[size], 64, nn.Sigmoid)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound)
                m.bias.zero_()
    return model, *_vectors(seed)


def relu_mlp_unit_gaussian(size, seed):
    torch.manual_seed(seed)
    return _normal_(_mlp((10, 20)[size], 64, nn.ReLU)), *_vectors(seed)


# name -> (builder, kinds it must report, where: a predicate on the finding's layer)
BROKEN = {
    "deep_post_ln": (deep_post_ln, {"vanishing"}, lambda layer: layer == "stack.layers.0"),
    "transformer_unit_gaussian": (transformer_unit_gaussian, None, None),
    "resnet_no_norm_unit_gaussian": (resnet_no_norm_unit_gaussian, {"exploding"}, None),
    "mixer_saturating": (mixer_saturating, {"saturated"}, None),
    "vit_saturating": (vit_saturating, {"saturated"}, None),
    "lstm_default_long": (lstm_default_long, {"vanishing"}, lambda layer: layer == "lstm"),
    "sigmoid_cnn": (sigmoid_cnn, {"vanishing"}, lambda layer: layer == "0"),
    "relu_cnn_bias_minus_3": (relu_cnn_bias_minus_3, {"dead_units"}, None),
    "narrow_relu": (narrow_relu, None, None),
    "gelu_unit_gaussian": (gelu_unit_gaussian, {"exploding"}, lambda layer: layer == "0"),
    "sigmoid_mlp_standard": (sigmoid_mlp_standard, {"vanishing"}, lambda layer: layer == "0"),
    "relu_mlp_unit_gaussian": (relu_mlp_unit_gaussian, {"exploding"}, lambda layer: layer == "0"),
}

__all__ = ["BROKEN", "HEALTHY"]
