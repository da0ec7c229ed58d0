"""The model edits remedies' code calls: swap_activations, insert_norm, set_forget_bias,
set_norm_first; and their refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import InvalidInputError

from .conftest import Exp, mlp


def test_swap_activations_replaces_only_the_types_named():
    model = nn.Sequential(
        nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 4), nn.ReLU(), Exp(), nn.Linear(4, 2)
    )
    out = gp.fix.swap_activations(model, "GELU", only=["Sigmoid", "Exp"])
    assert out is model
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "GELU", "Linear", "ReLU", "GELU", "Linear"]


def test_swap_activations_passes_options():
    model = gp.fix.swap_activations(mlp(), "LeakyReLU", negative_slope=0.2)
    assert all(m.negative_slope == 0.2 for m in model if isinstance(m, nn.LeakyReLU))


def test_swap_activations_refuses_a_functional_activation():
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.tanh(self.fc(x))

    with pytest.raises(InvalidInputError, match="as a function in forward"):
        gp.fix.swap_activations(F(), "ReLU")


def test_swap_activations_refuses_an_unknown_class():
    with pytest.raises(InvalidInputError, match="not an activation class"):
        gp.fix.swap_activations(mlp(), "Linear")


def test_insert_norm_on_a_sequential_leaves_the_original_alone():
    model = mlp(depth=3)
    before = str(model)
    new = gp.fix.insert_norm(model, "batch")
    assert str(model) == before
    kinds = [type(m).__name__ for m in new]
    assert kinds.count("BatchNorm1d") == 3  # after every hidden layer, not the output
    assert kinds[-1] == "Linear" and kinds[1] == "BatchNorm1d"
    assert new(torch.randn(8, 4)).shape == (8, 2)


def test_insert_norm_skips_layers_already_normalised():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 2))  # fmt: skip
    new = gp.fix.insert_norm(model, "layer")
    assert [type(m).__name__ for m in new].count("LayerNorm") == 2


def test_insert_norm_traces_other_models_with_fx():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.c(torch.relu(self.b(h)) + h)

    new = gp.fix.insert_norm(Net(), "layer")
    norms = [n for n, m in new.named_modules() if isinstance(m, nn.LayerNorm)]
    assert norms == ["a_norm", "b_norm"]
    assert new(torch.randn(3, 4)).shape == (3, 2)


def test_insert_norm_for_convolutions():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(),
                          nn.LazyLinear(2))  # fmt: skip
    new = gp.fix.insert_norm(model, "batch")
    assert isinstance(new[1], nn.BatchNorm2d) and new[1].num_features == 4


def test_insert_norm_refuses_an_untraceable_model():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = self.a(x)
            return self.b(x)

    with pytest.raises(InvalidInputError, match=r"torch\.fx cannot trace"):
        gp.fix.insert_norm(Branchy(), "batch")


def test_insert_norm_refuses_a_bad_kind():
    with pytest.raises(InvalidInputError, match="'batch' or 'layer'"):
        gp.fix.insert_norm(mlp(), "group")


def test_set_forget_bias_sets_the_f_chunk_only():
    lstm = nn.LSTM(3, 5, num_layers=2)
    gp.fix.set_forget_bias(lstm, 1.0)
    for name, p in lstm.named_parameters():
        if name.startswith("bias_ih"):
            assert torch.all(p[5:10] == 1.0)
        if name.startswith("bias_hh"):
            assert torch.all(p[5:10] == 0.0)


def test_set_forget_bias_refuses_a_model_without_lstm():
    with pytest.raises(InvalidInputError, match=r"no nn\.LSTM"):
        gp.fix.set_forget_bias(mlp())


def test_set_norm_first():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    gp.fix.set_norm_first(layer)
    assert layer.norm_first
    with pytest.raises(InvalidInputError, match=r"no nn\.TransformerEncoderLayer"):
        gp.fix.set_norm_first(mlp())


def test_swap_activations_leaves_the_output_activation():
    """A final Sigmoid feeding BCE is the output's, not a hidden layer's: swapping it for a
    ReLU would break the loss."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1), nn.Sigmoid())
    gp.fix.swap_activations(model, "ReLU", only=["Sigmoid"])
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear", "Sigmoid"]
    with pytest.raises(InvalidInputError, match="no activation module"):
        gp.fix.swap_activations(nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()), "ReLU")
