"""The held-out zoo: models NOT in the calibration zoo (``_zoo.py``), judged the way issue
15's evaluator will judge its own: ``gp.check(model, inputs, target[, loss_fn])`` at the
authors' default init, two sizes each (× two init draws in the tests). Hugging Face
models: ``_zoo_heldout_hf.py``; broken variants: ``_zoo_heldout_broken.py``.

Each builder takes ``(size, seed)`` and returns the arguments of ``gp.check``.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from . import _zoo_heldout_models as M
from ._zoo_heldout_hf import HF_HEALTHY, _gen, _ids, _pixels
from ._zoo_heldout_hf_more import HF_MORE

# -- hand-written torch ---------------------------------------------------------------------


def _images(build, image=32, batch=8, channels=3, classes=10):
    def builder(size, seed):
        torch.manual_seed(seed)
        model = build(size)
        return model, *_pixels(seed, batch, image, classes, channels)

    return builder


def _vectors(seed, batch=64, d_in=16, classes=10):
    g = _gen(seed)
    return torch.randn(batch, d_in, generator=g), torch.randint(0, classes, (batch,), generator=g)


def mlp_layernorm_dropout(size, seed):
    torch.manual_seed(seed)
    layers, d = [], 16
    for _ in range((3, 6)[size]):
        layers += [nn.Linear(d, 64), nn.LayerNorm(64), nn.ReLU(), nn.Dropout(0.1)]
        d = 64
    return nn.Sequential(*layers, nn.Linear(64, 10)), *_vectors(seed)


def mlp_default(size, seed):
    """A plain ReLU MLP with PyTorch's default init (kaiming_uniform(a=√5): gain² 1/3)."""
    torch.manual_seed(seed)
    widths = ((784, 128, 64, 10), (784, 256, 128, 64, 10))[size]
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    g = _gen(seed)
    x = torch.rand(64, 784, generator=g)
    return nn.Sequential(*layers[:-1]), x, torch.randint(0, 10, (64,), generator=g)


def lenet_default(size, seed):
    torch.manual_seed(seed)
    c = (6, 10)[size]
    model = nn.Sequential(
        nn.Conv2d(1, c, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 16, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )
    g = _gen(seed)
    return model, torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)


def autoencoder(size, seed):
    torch.manual_seed(seed)
    x = torch.rand(64, 32, generator=_gen(seed))
    return M.Autoencoder(32, ((24, 8), (24, 16, 8))[size]), x, x


def regression_mlp(size, seed):
    """MSE on unscaled targets (house prices in thousands: mean 200, σ 50)."""
    torch.manual_seed(seed)
    g = _gen(seed)
    x = torch.randn(64, 12, generator=g)
    y = 200 + 50 * torch.randn(64, 1, generator=g)
    layers, d = [], 12
    for _ in range((2, 4)[size]):
        layers += [nn.Linear(d, 32), nn.ReLU()]
        d = 32
    return nn.Sequential(*layers, nn.Linear(32, 1)), x, y


def multilabel(size, seed):
    torch.manual_seed(seed)
    g = _gen(seed)
    x = torch.randn(64, 20, generator=g)
    y = (torch.rand(64, 8, generator=g) < 0.2).float()
    hidden = (64, 128)[size]
    model = nn.Sequential(
        nn.Linear(20, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 8)
    )
    return model, x, y, F.binary_cross_entropy_with_logits


def tcn(size, seed):
    torch.manual_seed(seed)
    g = _gen(seed)
    x = torch.randn(8, 8, 64, generator=g)
    return M.TCN((3, 5)[size]), x, torch.randint(0, 5, (8,), generator=g)


def bilstm_tagger(size, seed):
    torch.manual_seed(seed)
    g = _gen(seed)
    ids = _ids(g, 8, 20)
    return M.BiLSTMTagger(layers=(1, 2)[size]), ids, torch.randint(0, 6, (8, 20), generator=g)


def gru_seq2seq(size, seed):
    torch.manual_seed(seed)
    g = _gen(seed)
    src, tgt = _ids(g, 8, (12, 24)[size]), _ids(g, 8, (10, 20)[size])
    tgt_in = torch.cat([torch.ones(8, 1, dtype=torch.long), tgt[:, :-1]], 1)
    return M.GRUSeq2Seq(), (src, tgt_in), tgt


def blobs_tanh(size, seed):
    """The AUTOTRAINER-style tanh MLP on raw ``make_blobs`` features (|x| ≈ 2-10, not
    standardised), PyTorch's init: the first tanh layer saturates 30-62 % and it trains."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=64, centers=3, n_features=(2, 4)[size], random_state=seed + 1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh(),
                          nn.Linear(50, 3))  # fmt: skip
    return model, torch.tensor(x, dtype=torch.float32), torch.tensor(y)


HEALTHY = {
    **HF_HEALTHY,
    **HF_MORE,
    "mobilenet_v2": _images(lambda s: M.MobileNetV2(((1, 2, 2), (1, 3, 3))[s])),
    "densenet": _images(lambda s: M.DenseNet(((2, 2), (3, 3, 3))[s])),
    "vgg11_bn": _images(lambda s: M.vgg(M.VGG11, bn=True, width=(1.0, 2.0)[s])),
    "wide_resnet": _images(lambda s: M.WideResNet(n=(1, 2)[s], k=(2, 4)[s])),
    "groupnorm_cnn": _images(lambda s: M.groupnorm_cnn((4, 8)[s])),
    "efficientnet": _images(lambda s: M.EfficientNet(((1, 2), (2, 3))[s])),
    "tcn": tcn,
    "bilstm_tagger": bilstm_tagger,
    "gru_seq2seq": gru_seq2seq,
    "mlp_layernorm_dropout": mlp_layernorm_dropout,
    "mlp_default": mlp_default,
    "lenet_default": lenet_default,
    "autoencoder": autoencoder,
    "regression_mlp": regression_mlp,
    "multilabel": multilabel,
    "blobs_tanh": blobs_tanh,
}
