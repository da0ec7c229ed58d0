"""predict(model) against the same model measured with hooks (real weights, a few seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.errors import InvalidInputError
from gradprobe.theory import predict


def _init(model: nn.Module, scales, seed: int) -> nn.Module:
    """Gaussian weights with σ_w² = scales[i] per affine layer, σ_b² = 0.02."""
    g = torch.Generator().manual_seed(seed)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for m, s in zip(layers, scales, strict=True):
            m.weight.normal_(0, math.sqrt(s / m.weight[0].numel()), generator=g)
            m.bias.normal_(0, math.sqrt(0.02), generator=g)
    return model


def _measure(model: nn.Module, x: torch.Tensor):
    """Mean square of each affine layer's output, and of the loss gradient at it."""
    outs = []

    def keep(_, __, out):
        out.retain_grad()
        outs.append(out)

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    handles = [m.register_forward_hook(keep) for m in layers]
    try:
        y = model(x)
        r = torch.randn(y.shape, generator=torch.Generator().manual_seed(99))
        (y * r).sum().backward()
    finally:
        for h in handles:
            h.remove()
    q = np.array([o.detach().pow(2).mean().item() for o in outs])
    d = np.array([o.grad.pow(2).mean().item() for o in outs])
    return q, d / d[-1]


def _mlp():
    return nn.Sequential(
        nn.Linear(256, 512), nn.Tanh(),
        nn.Linear(512, 1024), nn.GELU(),
        nn.Linear(1024, 512), nn.ReLU(),
        nn.Linear(512, 256),
    )  # fmt: skip


class FunctionalMLP(nn.Module):
    """Same stack, activations called functionally: predict must see them through fx."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(256, 512), nn.Linear(512, 1024)
        self.c, self.d = nn.Linear(1024, 512), nn.Linear(512, 256)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = F.gelu(self.b(h))
        return self.d(F.relu(self.c(h)))


@pytest.mark.parametrize("make", [_mlp, FunctionalMLP])
def test_mlp_prediction_matches_measurement(make):
    """Mixed widths and weight scales, 4 seeds × 256 inputs of variance 2: each layer's
    variance within 10%, gradient variance relative to the top within 20%."""
    scales = [1.8, 1.4, 2.2, 1.0]
    qs, ds = [], []
    for seed in range(4):
        model = _init(make(), scales, seed)
        x = torch.randn(256, 256, generator=torch.Generator().manual_seed(1000 + seed)) * math.sqrt(
            2
        )
        q, d = _measure(model, x)
        qs.append(q)
        ds.append(d)
        pred = predict(model, input_var=2.0)  # reads this model's own weight scales
    np.testing.assert_allclose([lay.sigma_w2 for lay in pred.layers], scales, rtol=0.1)
    pred_q = np.mean([predict(_init(make(), scales, s), 2.0).q for s in range(4)], 0)
    np.testing.assert_allclose(np.mean(qs, 0), pred_q, rtol=0.10)
    np.testing.assert_allclose(np.mean(ds, 0), pred.grad_var, rtol=0.20)
    assert [lay.activation for lay in pred.layers] == ["tanh", "gelu", "relu", "linear"]


def _convnet():
    conv = dict(kernel_size=3, padding=1, padding_mode="circular")
    return nn.Sequential(
        nn.Conv2d(3, 64, **conv), nn.ReLU(),
        nn.Conv2d(64, 128, **conv), nn.Tanh(),
        nn.Conv2d(128, 128, **conv), nn.Flatten(),
        nn.Linear(128 * 8 * 8, 256),
    )  # fmt: skip


def test_conv_prediction_through_fan_in():
    """Conv layers through fan-in C_in·k² (circular padding: no border effects)."""
    scales = [2.0, 1.6, 1.2, 1.0]
    qs, ds, preds = [], [], []
    for seed in range(3):
        model = _init(_convnet(), scales, seed)
        x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1000 + seed))
        q, d = _measure(model, x)
        qs.append(q)
        ds.append(d)
        preds.append(predict(model, input_var=1.0))
    assert preds[0].layers[1].fan_in == 64 * 9
    np.testing.assert_allclose(np.mean(qs, 0), np.mean([p.q for p in preds], 0), rtol=0.10)
    pred_d = np.mean([p.grad_var for p in preds], 0)
    np.testing.assert_allclose(np.mean(ds, 0), pred_d, rtol=0.20)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x):
        return x + torch.relu(self.a(x))


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), "BatchNorm1d"),
        (nn.Sequential(nn.Linear(4, 4), nn.Softmax(-1)), "not elementwise"),
        (Residual(), "skip"),
        (nn.Sequential(nn.ReLU(), nn.Linear(4, 4)), "start with a Linear"),
        (nn.Sequential(nn.Tanh()), "without Linear"),
        (nn.LSTM(4, 4), "LSTM"),
        ("not a model", "nn.Module"),
    ],
)
def test_unsupported_models_are_refused(model, match):
    with pytest.raises(InvalidInputError, match=match):
        predict(model)


def test_bad_input_variance_is_refused():
    with pytest.raises(InvalidInputError, match="input_var"):
        predict(nn.Linear(3, 3), input_var=-1.0)


def test_predicted_spread_across_networks():
    """q_rel_std: how far one network's layer variance strays (Hanin & Rolnick 2018).
    300 real width-64 ReLU stacks at He scale, one fixed input: within 30%."""
    x = torch.randn(1, 64, generator=torch.Generator().manual_seed(7))
    x = x / x.pow(2).mean().sqrt()
    last, rel = [], []
    for seed in range(300):
        g = torch.Generator().manual_seed(seed)
        layers = []
        for _ in range(6):
            lin = nn.Linear(64, 64)
            with torch.no_grad():
                lin.weight.normal_(0, math.sqrt(2 / 64), generator=g)
                lin.bias.zero_()
            layers += [lin, nn.ReLU()]
        model = nn.Sequential(*layers)
        q, _ = _measure(model, x)
        last.append(q[-1])
        if seed < 3:
            rel.append(predict(model, 1.0).layers[-1].q_rel_std)
    measured = float(np.std(last) / np.mean(last))
    # at exactly σ_w² = 2, σ_b² = 0: (1 + 2/64)(1 + 5/64)^5 − 1
    exact = math.sqrt((1 + 2 / 64) * (1 + 5 / 64) ** 5 - 1)
    assert np.mean(rel) == pytest.approx(exact, rel=0.1)  # each model's own scales
    assert measured == pytest.approx(exact, rel=0.3)
