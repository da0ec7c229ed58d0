"""The third held-out zoo batch: models none of the earlier batches has, at their authors'
default init, two sizes × two init draws, and the *input* varied — image size 8/16/32 px,
sequence length 16/64, batch 2/16/64, graphs of 16/64 nodes. Hugging Face models:
``_zoo_heldout3_hf.py``; broken variants: ``_zoo_heldout3_broken.py``.

Each builder takes ``(size, seed, shape)`` (``shape`` an index into its modality's
``SHAPES``) and returns the arguments of ``gp.check``.
"""

from __future__ import annotations

import functools

import torch

from . import _zoo_heldout3_models as M
from ._zoo_heldout_hf import _gen, _ids

# (image px, batch), (length, batch), batch, nodes
SHAPES = {
    "image": [(8, 16), (16, 2), (32, 4)],
    "gray": [(8, 16), (16, 2), (32, 4)],
    "sequence": [(16, 16), (64, 2)],
    "vector": [2, 16, 64],
    "graph": [16, 64],
}


def images(seed, shape, channels=3, classes=10, unit=False):
    image, batch = SHAPES["image"][shape]
    g = _gen(seed)
    size = (batch, channels, image, image)
    x = torch.rand(size, generator=g) if unit else torch.randn(size, generator=g)
    return x, torch.randint(0, classes, (batch,), generator=g)


def vectors(seed, shape, d_in=16, classes=10):
    batch = SHAPES["vector"][shape]
    g = _gen(seed)
    return torch.randn(batch, d_in, generator=g), torch.randint(0, classes, (batch,), generator=g)


def graph(seed, shape, d_in=16, classes=4):
    """A random graph, ~4 undirected edges a node, both directions stored (PyG's layout)."""
    n = SHAPES["graph"][shape]
    g = _gen(seed)
    src, dst = torch.randint(0, n, (2, 2 * n), generator=g)
    keep = src != dst
    edges = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    x = torch.randn(n, d_in, generator=g)
    return (x, edges), torch.randint(0, classes, (n,), generator=g)


def _seeded(build):
    """``build(size, shape)`` under ``torch.manual_seed(seed)``."""

    def builder(size, seed, shape):
        torch.manual_seed(seed)
        return build(size, seed, shape)

    return builder


@_seeded
def convmixer(size, seed, shape):
    return M.ConvMixer((16, 32)[size], (2, 4)[size]), *images(seed, shape)


@_seeded
def poolformer(size, seed, shape):
    return M.PoolFormer(((1, 1), (2, 2))[size]), *images(seed, shape)


@_seeded
def perceiver(size, seed, shape):
    length, batch = SHAPES["sequence"][shape]
    g = _gen(seed)
    x = torch.randn(batch, length, 8, generator=g)
    return M.Perceiver((2, 4)[size]), x, torch.randint(0, 5, (batch,), generator=g)


@_seeded
def conv_vae(size, seed, shape):
    image = SHAPES["gray"][shape][0]
    x, _ = images(seed, shape, channels=1, unit=True)
    return M.ConvVAE(image, width=(8, 16)[size]), x, x, M.vae_loss  # 3 levels: broken zoo


@_seeded
def gcn(size, seed, shape):
    inputs, y = graph(seed, shape)
    return M.GCN((2, 4)[size]), inputs, y


@_seeded
def wavenet(size, seed, shape):
    length, batch = SHAPES["sequence"][shape]
    g = _gen(seed)
    x = torch.rand(batch, 1, length, generator=g) * 2 - 1
    return M.WaveNet((4, 8)[size]), x, torch.randint(0, 32, (batch, length), generator=g)


@_seeded
def tcn_weight_norm(size, seed, shape):
    length, batch = SHAPES["sequence"][shape]
    g = _gen(seed)
    x = torch.randn(batch, 4, length, generator=g)
    return M.WeightNormTCN((2, 4)[size]), x, torch.randint(0, 5, (batch,), generator=g)


@_seeded
def diagonal_recurrence(size, seed, shape):
    length, batch = SHAPES["sequence"][shape]
    ids = _ids(_gen(seed), batch, length)
    return M.RecurrenceLM((2, 4)[size]), ids, ids


@_seeded
def highway(size, seed, shape):
    return M.Highway((10, 20)[size]), *vectors(seed, shape)


@_seeded
def swiglu(size, seed, shape):
    return M.SwiGLUStack((2, 6)[size]), *vectors(seed, shape)


@_seeded
def capsnet(size, seed, shape):
    image = SHAPES["gray"][shape][0]
    x, y = images(seed, shape, channels=1, unit=True)
    return M.CapsNet(image, width=(16, 32)[size]), x, y, M.margin_loss


def _seq2seq(size, seed, shape, norm_first):
    length, batch = SHAPES["sequence"][shape]
    g = _gen(seed)
    src, tgt = _ids(g, batch, length), _ids(g, batch, length // 2 + 1)
    model = M.Seq2SeqTransformer((2, 4)[size], norm_first)
    return model, (src, tgt[:, :-1]), tgt[:, 1:]


def _captioner(size, seed, shape, norm_first):
    length, batch = SHAPES["sequence"][shape]
    g = _gen(seed)
    image = torch.randn(batch, 3, 16, 16, generator=g)
    ids = _ids(g, batch, length + 1)
    return M.Captioner((2, 4)[size], norm_first), (image, ids[:, :-1]), ids[:, 1:]


def _both(build):
    return {
        f"{build.__name__.strip('_')}_{place}_ln": (
            _seeded(functools.partial(build, norm_first=place == "pre")),
            "sequence",
        )
        for place in ("post", "pre")
    }


# name -> (builder, modality)
HEALTHY = {
    "convmixer": (convmixer, "image"),
    "poolformer": (poolformer, "image"),
    "perceiver": (perceiver, "sequence"),
    "conv_vae": (conv_vae, "gray"),
    "gcn": (gcn, "graph"),
    "wavenet": (wavenet, "sequence"),
    "tcn_weight_norm": (tcn_weight_norm, "sequence"),
    "diagonal_recurrence": (diagonal_recurrence, "sequence"),
    "highway": (highway, "vector"),
    "swiglu": (swiglu, "vector"),
    "capsnet": (capsnet, "gray"),
    **_both(_seq2seq),
    **_both(_captioner),
}
