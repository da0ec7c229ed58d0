"""A zoo of healthy models, each at two sizes and two init draws, with its authors' init:
no finding at all (no warning, no error, no info noise).

Models are built from their configs (nothing downloaded) at tiny sizes; Hugging Face models
compute their own loss from ``labels``, which ``gp.check`` uses. Also here: what the probe
sees of models as people write them (Hugging Face activation classes, the functional
activation of a Transformer layer, a tied head, long layer names).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Context, Thresholds
from gradprobe.probe.modules import activation_of, tied_parameters

from . import _zoo as Z


def _check(name, size, seed):
    return gp.check(*Z.HEALTHY[name](size, seed), histograms=False)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("size", [0, 1])
@pytest.mark.parametrize("name", sorted(Z.HEALTHY))
def test_healthy_zoo_has_no_finding(name, size, seed):
    result = _check(name, size, seed)
    findings = result.findings
    assert findings == [], [str(f) for f in findings]


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "t5", "vit", "bert_classifier"])
def test_hugging_face_models_are_checked_on_their_own_loss(name):
    model, inputs, _ = Z.HEALTHY[name](0, 0)
    result = gp.check(model, inputs, histograms=False)
    assert result.run.meta["loss_source"] == "model"
    assert result.loss == pytest.approx(float(model(**inputs).loss), rel=1e-5)


def test_gpt2_checked_with_input_ids_and_labels_as_a_user_writes_it():
    """``gp.check(lm, ids, labels)`` failed with "Expected target size [8, 512]"; the dict
    form passes the labels to the model, whose loss is used."""
    lm, inputs, _ = Z.gpt2(0, 0)
    result = gp.check(lm, {"input_ids": inputs["input_ids"], "labels": inputs["labels"]})
    assert result.healthy and result.run.meta["loss_source"] == "model"


@pytest.mark.parametrize(("name", "blocks"), [("gpt2", 4), ("t5", 8), ("resnet", 6)])
def test_depth_is_counted_in_blocks(name, blocks):
    """ "×1.01 per layer over 386 layers" for 48 blocks: every LayerNorm and projection was a
    layer of depth. Now the repeated children are the blocks."""
    ctx = Context(_check(name, 1, 0).run, Thresholds())
    assert ctx.structure.depth == blocks
    assert not ctx.structure.plain


def test_block_kinds_come_from_the_module_tree():
    names = {
        "gpt2": ("transformer.h.0", "pre"),
        "bert": ("bert.encoder.layer.0", "post"),
        "llama": ("model.layers.0", "pre"),
        "t5": ("encoder.block.0", "pre"),
        "vit": ("vit.layers.0", "pre"),
        "torch_post_ln": ("stack.layers.0", "post"),
        "torch_pre_ln": ("stack.layers.0", "pre"),
        "mixer": ("blocks.0", "pre"),
        "resnet": ("layers.0.0", None),
        "convnext": ("stages.0.0", None),
        "unet": ("downs.0", None),
    }
    for name, (first, place) in names.items():
        ctx = Context(_check(name, 0, 0).run, Thresholds())
        assert (ctx.structure.blocks[0].name, ctx.norm_place) == (first, place), name


# -- models as people write them ---------------------------------------------------------------


def test_hugging_face_activation_classes_were_invisible():
    from transformers.activations import ACT2CLS

    kinds = {}
    for key in ("gelu", "gelu_new", "gelu_fast", "quick_gelu", "silu", "mish", "relu2"):
        cls = ACT2CLS[key]
        cls, kwargs = cls if isinstance(cls, tuple) else (cls, {})
        act = activation_of(cls(**kwargs))
        kinds[key] = None if act is None else act.label()
    assert kinds == {
        "gelu": "smooth:gelu",
        "gelu_new": "smooth:gelu",
        "gelu_fast": "smooth:gelu",
        "quick_gelu": "smooth:gelu",
        "silu": "smooth:silu",
        "mish": "smooth:mish",
        "relu2": "relu",
    }


def test_gelu_silu_elu_with_negative_bias_were_told_their_units_get_no_gradient():
    """A negative GELU/SiLU/ELU output still has a gradient: "dead" is only for ReLU."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 16, generator=g), torch.randint(0, 4, (64,), generator=g)
    for act in (nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), act(), nn.Linear(32, 32), act(), nn.Linear(32, 4))
        gp.init.apply(model, "kaiming_normal", bias=-5.0)
        findings = gp.check(model, x, y, histograms=False).findings
        assert not [f for f in findings if f.kind == "dead_units"], (act, findings)
        assert activation_of(act()).kind == "smooth" and not activation_of(act()).can_die
    torch.manual_seed(0)
    relu = gp.init.apply(
        nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), "kaiming_normal", bias=-5.0
    )
    assert "dead_units" in {f.kind for f in gp.check(relu, x, y, histograms=False).findings}


def test_the_functional_relu_inside_a_transformer_layer_was_invisible():
    """nn.TransformerEncoderLayer applies F.relu to linear1's output: its dead units are
    linear1's outputs ≤ 0 on every example, computed here by brute force."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    with torch.no_grad():
        layer.linear1.bias.fill_(-1.0)
    x = torch.randn(32, 8, 16)
    run = gp.check(layer, x, histograms=False).run
    acts = {la.name: la.activation for la in run.layers("module")}
    assert acts["linear1"] == "relu"
    names, _, values = run.matrix("activation", "dead")
    with torch.no_grad():
        h = layer.norm1(x + layer.self_attn(x, x, x, need_weights=False)[0])
        pre = layer.linear1(h)
    expected = float((pre <= 0).all(dim=0).float().mean())  # units: (position, feature)
    assert dict(zip(names, values[:, 0], strict=True))["linear1"] == pytest.approx(expected)
    gelu = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu")
    assert activation_of(gelu.linear1) is None  # not yet seen by watched_modules
    run = gp.check(gelu, torch.randn(8, 4, 16), histograms=False).run
    assert {la.name: la.activation for la in run.layers("module")}["linear1"] == "smooth:gelu"


def test_a_tied_lm_head_was_not_a_weight_layer():
    lm, inputs, _ = Z.gpt2(0, 0)
    assert tied_parameters(lm) == {"lm_head.weight": "transformer.wte.weight"}
    ctx = Context(gp.check(lm, inputs, histograms=False).run, Thresholds())
    head = [la.name for la in ctx.structure.head]
    assert head[-1] == "lm_head" and "transformer.ln_f" in head
    assert next(la for la in ctx.structure.head if la.name == "lm_head").tied


def test_layer_names_are_never_shortened_in_findings():
    """``…attn.c_attn`` and ``…attn.c_proj`` could not be told apart: the evidence and the
    layer of a finding carry the qualified names."""
    lm, inputs, _ = Z.gpt2(0, 0)
    with torch.no_grad():
        for block in lm.transformer.h:
            block.attn.c_attn.weight.mul_(300)  # attention logits far beyond 100
    findings = gp.check(lm, inputs, histograms=False).findings
    layers = {f.layer for f in findings}
    assert layers and all(layer is None or "…" not in layer for layer in layers)
    assert all("…" not in str(f.evidence) for f in findings)


def test_a_loss_the_model_does_not_return_is_passed_as_loss_fn():
    model, ids, target = Z.lstm_lm(0, 0)
    result = gp.check(model, ids, loss_fn=lambda out: F.cross_entropy(out, target))
    assert result.run.meta["loss_source"] == "loss_fn" and result.healthy


def test_a_monotone_three_layer_trend_was_called_finite_width_drift():
    """A 3-layer net with a lowest/output ratio of 0.035 got an info "fluctuation: finite-width
    drift": a healthy shallow net says nothing now; fluctuation is the narrow-stack warning."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )
    x, y = torch.rand(64, 784), torch.randint(0, 10, (64,))
    result = gp.check(model, x, y, histograms=False)
    assert result.findings == []
    assert Context(result.run, Thresholds()).gradient_profile(0).ratio < 0.1  # the old reading
