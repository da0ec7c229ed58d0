"""Broken variants of the third held-out batch, each with the kinds the diagnosis must report
and where (a predicate on the finding's layer), at two sizes × two draws × every input shape
of its modality (``_zoo_heldout3.SHAPES``)."""

from __future__ import annotations

import torch
from torch import nn

from . import _zoo_heldout3 as H
from . import _zoo_heldout3_hf as HF
from . import _zoo_heldout3_models as M
from ._zoo_heldout_broken import _normal_


@H._seeded
def swiglu_unit_gaussian(size, seed, shape):
    """Every matrix of the Pre-RMSNorm SwiGLU stack N(0, 1): σ² · fan_in = 32 where SiLU's
    critical value is 2.81."""
    return _normal_(M.SwiGLUStack((2, 6)[size])), *H.vectors(seed, shape)


@H._seeded
def gcn_zero_hidden(size, seed, shape):
    """A hidden GCN layer's weight zero (a forgotten init of a custom layer): nothing below
    it gets a gradient."""
    model = M.GCN((3, 5)[size], dropout=0.0)
    nn.init.zeros_(model.convs[1].lin.weight)
    inputs, y = H.graph(seed, shape)
    return model, inputs, y


@H._seeded
def wavenet_x10(size, seed, shape):
    """WaveNet's gated units with every conv ×10: tanh and σ at their bounds."""
    model, x, y = H.wavenet(size, seed, shape)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 3:
                p.mul_(10)
    return model, x, y


class TanhResidual(nn.Module):
    """x + tanh(W x): a residual branch that saturates, no normalisation, no branch scale."""

    def __init__(self, d):
        super().__init__()
        self.fc, self.act = nn.Linear(d, d), nn.Tanh()

    def forward(self, x):
        return x + self.act(self.fc(x))


@H._seeded
def tanh_residual_unscaled(size, seed, shape):
    """24 / 48 such blocks, Xavier with tanh's gain (σ² · fan_in = 2.78): the stream's
    variance grows with every block and the later branches saturate."""
    model = nn.Sequential(
        nn.Linear(16, 32), *[TanhResidual(32) for _ in range((24, 48)[size])], nn.Linear(32, 10)
    )
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, gain=nn.init.calculate_gain("tanh"))
            nn.init.zeros_(m.bias)
    return model, *H.vectors(seed, shape)


@H._seeded
def seq2seq_post_ln_deep(size, seed, shape):
    """nn.Transformer, Post-LN, 18 layers in the encoder and in the decoder, width 16 / 32."""
    length, batch = H.SHAPES["sequence"][shape]
    g = H._gen(seed)
    src, tgt = H._ids(g, batch, length), H._ids(g, batch, length // 2 + 1)
    model = M.Seq2SeqTransformer(18, norm_first=False, d=(16, 32)[size])
    return model, (src, tgt[:, :-1]), tgt[:, 1:]


@H._seeded
def highway_sigmoid_plain(size, seed, shape):
    """The plain stack a Highway network replaces (Srivastava et al. 2015's comparison): 20 /
    30 sigmoid layers, PyTorch's init, no gates."""
    layers = [nn.Linear(16, 32), nn.Sigmoid()]
    for _ in range((20, 30)[size]):
        layers += [nn.Linear(32, 32), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(32, 10)), *H.vectors(seed, shape)


@H._seeded
def conv_vae_default_deep(size, seed, shape):
    """The conv VAE with three stride-2 levels at PyTorch's default init: nine ReLU weight
    layers at σ² · fan_in = 1/3 shrink the backward signal ×0.47 a layer (0.0018-0.0063 over
    the chain; two levels read 0.017-0.055 and pass). The verdict docs/DIAGNOSIS.md gives a
    plain ReLU stack at that init from 8 layers on, here stable over image size and draw."""
    image = H.SHAPES["gray"][shape][0]
    x, _ = H.images(seed, shape, channels=1, unit=True)
    return M.ConvVAE(image, levels=3, width=(8, 16)[size]), x, x, M.vae_loss


def qwen3_init_range_1(size, seed, shape):
    """Qwen3 (Pre-RMSNorm, QK-norm, SwiGLU) with ``initializer_range=1.0``."""
    return HF.build("qwen3", size, seed, shape, initializer_range=1.0)


def mixtral_init_range_1(size, seed, shape):
    """Mixtral's experts and attention with ``initializer_range=1.0``."""
    return HF.build("mixtral", size, seed, shape, initializer_range=1.0)


def _at(*names):
    return lambda layer: layer in names


def _starts(prefix):
    return lambda layer: layer is not None and layer.startswith(prefix)


# name -> (builder, modality, kinds it must report, where)
BROKEN = {
    "swiglu_unit_gaussian": (swiglu_unit_gaussian, "vector", {"exploding"}, _at("blocks.0")),
    "gcn_zero_hidden": (gcn_zero_hidden, "graph", {"vanishing"}, _at("convs.0.lin")),
    "wavenet_x10": (wavenet_x10, "sequence", {"saturated"}, None),
    "tanh_residual_unscaled": (tanh_residual_unscaled, "vector", {"saturated"}, _starts("")),
    "seq2seq_post_ln_deep": (
        seq2seq_post_ln_deep,
        "sequence",
        {"vanishing"},
        _at("transformer.encoder.layers.0", "transformer.decoder.layers.0"),
    ),
    "highway_sigmoid_plain": (highway_sigmoid_plain, "vector", {"vanishing"}, _at("0")),
    "conv_vae_default_deep": (conv_vae_default_deep, "gray", {"vanishing"}, _at("encoder.0")),
    "qwen3_init_range_1": (qwen3_init_range_1, "sequence", {"exploding"}, _at("model.layers.0")),
    "mixtral_init_range_1": (
        mixtral_init_range_1,
        "sequence",
        {"exploding"},
        _at("model.layers.0"),
    ),
}
