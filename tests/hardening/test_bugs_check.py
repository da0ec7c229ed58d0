"""Regression tests (issue 14, ``gp.check``): crashes, silently wrong numbers and misleading
messages on models and inputs as people write them."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeError


def _mlp(width=8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))


def test_all_parameters_frozen_is_a_clear_error_not_a_runtime_error():
    model = _mlp().requires_grad_(False)
    with pytest.raises(GradprobeError, match="frozen"):
        gp.check(model, torch.randn(16, 8))


def test_partly_frozen_model_is_checked():
    model = _mlp()
    model[0].requires_grad_(False)
    result = gp.check(model, torch.randn(16, 8))
    assert math.isfinite(result.loss)
    assert model[0].weight.grad is None  # nothing left behind


def test_meta_device_is_a_clear_error_not_item_on_meta():
    with torch.device("meta"):
        model = _mlp()
        x = torch.randn(16, 8)
    with pytest.raises(GradprobeError, match="meta"):
        gp.check(model, x)


def test_empty_batch_is_an_error_not_a_healthy_nan_loss():
    with pytest.raises(GradprobeError, match="empty"):
        gp.check(_mlp(), torch.randn(0, 8))


class _OwnLoss(nn.Module):
    """Returns its own scalar loss, as a training wrapper or a HF model with labels does."""

    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, x, y):
        return F.cross_entropy(self.net(x), y)


def test_model_that_returns_its_own_scalar_loss_is_used_as_the_loss():
    model = _OwnLoss()
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    result = gp.check(model, (x, y))
    expected = float(F.cross_entropy(model.net(x), y).detach())
    assert result.loss == pytest.approx(expected, rel=1e-6)  # was ½ℓ²
    # the gradients are those of ℓ itself, not scaled by ℓ
    ref = _OwnLoss()
    ref.load_state_dict(model.state_dict())
    ref(x, y).backward()
    norm = ref.net[2].weight.grad.norm().item()
    recorded = (
        result.run.to_pandas()
        .query("layer == 'net.2.weight' and quantity == 'param_grad' and stat == 'norm'")["value"]
        .item()
    )
    assert recorded == pytest.approx(norm, rel=1e-5)
    assert result.run.meta["loss_source"] == "model"


class _DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, x):
        logits = self.net(x)
        return {"aux": logits.mean(), "logits": logits}


def test_dict_output_says_which_key_was_used_and_how_to_choose():
    with pytest.raises(GradprobeError, match=r"'aux'.*loss_fn"):
        gp.check(_DictOut(), torch.randn(16, 8), torch.randn(16, 2))


def test_loss_fn_error_keeps_its_type_and_does_not_blame_the_target():
    def loss_fn(out, batch):
        return F.cross_entropy(out, batch["labels"])

    with pytest.raises(GradprobeError, match="KeyError") as info:
        gp.check(_mlp(), torch.randn(16, 8), {"label": torch.zeros(16, dtype=torch.long)}, loss_fn)
    assert "loss_fn" in str(info.value)


def test_embedding_model_with_float_inputs_hints_at_token_ids():
    model = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 2))
    with pytest.raises(GradprobeError, match="integer token ids"):
        gp.check(model, torch.randn(4, 8))


def test_inf_in_the_target_is_recorded_for_the_diagnosis():
    y = torch.randn(16, 2)
    y[0, 0] = math.inf
    result = gp.check(_mlp(), torch.randn(16, 8), y)
    assert result.run.meta["target_nonfinite"] == pytest.approx(1 / 32)
    assert not result.healthy


def test_check_is_still_callable_after_its_module_was_imported():
    import gradprobe.app.check  # noqa: F401  (imports gradprobe.check as a submodule)

    assert gp.check(_mlp(), torch.randn(4, 8)).run is not None
