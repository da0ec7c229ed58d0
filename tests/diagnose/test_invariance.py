"""The depth verdict on a healthy model does not change with what does not matter: image
size, sequence length, batch size, depth, width, pooling, a CLS token, embeddings, a final
norm, a tied head. The per-block measures themselves barely move (they compare blocks with
blocks, per example), and they match plain-torch references computed here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Context, Thresholds

from . import _zoo as Z


def _measures(built):
    """(findings, backward ratio, relative ratio) of a check."""
    result = gp.check(*built, histograms=False)
    ctx = Context(result.run, Thresholds())
    b, a = ctx.block_profile("backward", 0), ctx.block_profile("relative", 0)
    return result.findings, b.ratio, a.ratio


def _invariant(builds, band=3.0):
    """Every configuration healthy; each measure within ``band``× across them (measured: at
    most ×2.1, the relative gradient of a ResNet from 32 to 128 px; the lines are ×100)."""
    seen = [_measures(b) for b in builds]
    for findings, _, _ in seen:
        assert findings == [], [str(f) for f in findings]
    for k in (1, 2):
        values = [s[k] for s in seen]
        assert max(values) / min(values) < band, values
    return seen


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("family", ["resnet", "vit", "mixer"])
def test_image_size_32_to_128(family, seed):
    """A healthy ResNet with BatchNorm read "vanishing" at 64 px (0.0036) and 128 px (9.6e-4)
    but not at 32 px: global pooling over P positions divides each one's gradient by P."""
    _invariant([Z.HEALTHY[family](0, seed, image=size) for size in (32, 64, 128)])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_sequence_length_32_to_512(family, seed):
    _invariant([Z.HEALTHY[family](0, seed, length=n, batch=2) for n in (32, 128, 512)])


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_size_8_to_256(seed):
    _invariant([Z.resnet(0, seed, batch=n) for n in (8, 64, 256)])
    _invariant([Z.gpt2(0, seed, batch=n, length=8) for n in (8, 256)])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_depth_2_to_24_blocks(seed):
    """Depth changes a residual stack's drift polynomially (a BatchNorm ResNet: ×1.9 at 3
    blocks, ×36-40 at 24, measured), which is not an exponential vanishing or explosion:
    verdicts stay healthy; a Pre-LN GPT-2's measures do not move at all."""
    _invariant([Z.gpt2(0, seed, layers=n) for n in (2, 8, 24)])
    for blocks in ((1, 1, 1), (4, 4, 4), (8, 8, 8)):
        findings, b, a = _measures(Z.resnet(0, seed, blocks=blocks))
        assert findings == [] and b < 100 and a < 100
    for layers in (2, 24):
        assert _measures(Z.torch_transformer(0, seed, norm_first=True, layers=layers))[0] == []


@pytest.mark.slow
def test_a_48_block_resnet_drifts_past_100_but_not_exponentially():
    """×190-254 over 48 BatchNorm blocks is ×1.12 per block: the stream's variance grows
    like the block count (De & Smith 2020), under ``block_rate`` = 1.25."""
    findings, b, _ = _measures(Z.resnet(0, 0, blocks=(16, 16, 16)))
    assert findings == [] and b > 100
    assert b ** (1 / 47) < Thresholds().block_rate


@pytest.mark.parametrize("seed", [0, 1])
def test_width(seed):
    _invariant([Z.gpt2(0, seed, embd=d) for d in (32, 128)])


class _PoolNet(nn.Module):
    """The same convolutions with a global average pool, a max pool or a flatten head."""

    def __init__(self, head):
        super().__init__()
        self.body = nn.Sequential(*[Z.BasicBlock(8, 8, 1) for _ in range(3)])
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.head = head
        self.fc = nn.Linear(8 if head != "flatten" else 8 * 16 * 16, 10)

    def forward(self, x):
        h = self.body(self.stem(x))
        if self.head == "avg":
            h = h.mean((2, 3))
        elif self.head == "max":
            h = h.amax((2, 3))
        return self.fc(h.flatten(1))


@pytest.mark.parametrize("seed", [0, 1])
def test_pooling(seed):
    def built(head):
        torch.manual_seed(seed)
        return (_PoolNet(head), *Z._images(seed, 8, 16))

    _invariant([built(h) for h in ("avg", "max", "flatten")])


@pytest.mark.parametrize("seed", [0, 1])
def test_cls_token(seed):
    """A BERT classifier's gradient enters at one position (the CLS token); an MLM at all."""
    _invariant([Z.bert_classifier(0, seed), Z.bert(0, seed)])


class _Continuous(Z.TorchLM):
    """The same Transformer fed continuous vectors through a linear projection."""

    def __init__(self, layers):
        super().__init__(layers, norm_first=True)
        self.embed = nn.Linear(8, 32)


@pytest.mark.parametrize("seed", [0, 1])
def test_embeddings(seed):
    torch.manual_seed(seed)
    ids = torch.randint(0, Z.VOCAB, (4, 16))
    with_embedding = Z.torch_transformer(1, seed, norm_first=True)
    torch.manual_seed(seed)
    continuous = (_Continuous(4), torch.randn(4, 16, 8), ids)
    _invariant([with_embedding, continuous])


@pytest.mark.parametrize("seed", [0, 1])
def test_final_norm(seed):
    def built(final):
        torch.manual_seed(seed)
        model = Z.TorchLM(4, norm_first=True, final_norm=final)
        ids = torch.randint(0, Z.VOCAB, (4, 16), generator=torch.Generator().manual_seed(seed))
        return model, ids, ids

    _invariant([built(True), built(False)])


@pytest.mark.parametrize("seed", [0, 1])
def test_tied_head(seed):
    """GPT-2 with its embedding std 0.02 and a tied head read "exploding" (131×) at the
    token embedding, whose gradient is sparse over rows: embeddings are the stem now."""
    _invariant([Z.gpt2(0, seed, tie=True), Z.gpt2(0, seed, tie=False)])


def test_the_old_per_layer_ratio_followed_tensor_sizes():
    """The rms of ∂L/∂out at the lowest weight layer over the output layer's moved ×15 from
    32 to 128 px on the same healthy ResNet; the backward ratio over blocks moves < ×1.3."""
    old, new = [], []
    for size in (32, 128):
        run = gp.check(*Z.resnet(0, 0, image=size), histograms=False).run
        ctx = Context(run, Thresholds())
        old.append(ctx.gradient_profile(0).ratio)
        new.append(ctx.block_profile("backward", 0).ratio)
    assert old[0] / old[1] > 8
    assert max(new) / min(new) < 1.3


# -- the numbers the rule uses, against plain torch -------------------------------------------


def test_block_measures_match_autograd():
    """‖∂L/∂h‖ at each block's output (a backward hook) and ‖∂L/∂θ‖/‖θ‖ over the parameters
    every block has (``.grad``; a stage's first block's shortcut is not compared with the
    blocks that lack one), for a ResNet: to float32 rounding."""
    model, x, y = Z.resnet(1, 0)
    run = gp.check(model, x, y, histograms=False).run
    ctx = Context(run, Thresholds())
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, Z.BasicBlock)}
    assert [b.name for b in ctx.chain] == list(blocks)
    grads = {}
    hooks = [
        m.register_full_backward_hook(
            lambda mod, gi, go, n=n: grads.__setitem__(n, float(go[0].double().norm()))
        )
        for n, m in blocks.items()
    ]
    F.cross_entropy(model(x), y).backward()
    for h in hooks:
        h.remove()
    shared = set.intersection(*[{n for n, _ in b.named_parameters()} for b in blocks.values()])
    assert shared == {
        f"{c}.{w}" for c in ("conv1", "bn1", "conv2", "bn2") for w in ("weight", "bias")
    } - {"conv1.bias", "conv2.bias"}
    for j, (name, block) in enumerate(blocks.items()):
        assert ctx.backward_matrix[j, 0] == pytest.approx(grads[name], rel=1e-5)
        params = [p for n, p in block.named_parameters() if n in shared]
        g = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params))
        w = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in params))
        assert ctx.relative_matrix[j, 0] == pytest.approx(g / w, rel=1e-5)
    model.zero_grad()


def test_stream_growth_matches_the_forward():
    """rms of a block's output over the rms of what entered it, on GPT-2 (the embedding
    dropout's output feeds block 0)."""
    lm, inputs, _ = Z.gpt2(0, 0)
    run = gp.check(lm, inputs, histograms=False).run
    growth = dict(Context(run, Thresholds()).stream_growth(0))
    with torch.no_grad():
        out = lm.transformer(inputs["input_ids"], output_hidden_states=True)
    h = out.hidden_states  # embeddings, block 0, block 1 (the last after ln_f in HF)
    rms = [float(t.double().pow(2).mean().sqrt()) for t in h]
    assert growth["transformer.h.0"] == pytest.approx(rms[1] / rms[0], rel=1e-4)
    assert set(growth) == {"transformer.h.0", "transformer.h.1"}
    assert np.isfinite(list(growth.values())).all()


class _OneOf(nn.Module):
    """``model`` as the only member of a module list (``body.0``), its layers its own direct
    children: one chain of weight layers, not a block of branches."""

    def __init__(self, model: nn.Sequential) -> None:
        super().__init__()
        chain = nn.Module()
        for i, m in enumerate(model):
            chain.add_module(f"l{i}", m)
        chain.forward = lambda x: model(x)
        self.body = nn.ModuleList([chain])

    def forward(self, x):
        return self.body[0](x)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_one_block_transformer_is_one_block_not_a_stack_of_its_projections(seed):
    """Regression: with one block there is no group of repeated blocks, and the net was read
    as a plain stack of its weight layers: a one-layer Llama and BERT were "vanishing at
    q_proj / query" (attention is near uniform at init, so the query's gradient is small
    next to the MLP's; they are branches, not a chain). Depth one: nothing to compare."""
    transformers = pytest.importorskip("transformers")
    from gradprobe.diagnose import Context, Thresholds

    Z._quiet()
    torch.manual_seed(seed)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
    ))  # fmt: skip
    torch.manual_seed(seed)
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=3,
    ))  # fmt: skip
    ids = torch.randint(0, 32, (4, 16), generator=torch.Generator().manual_seed(seed))
    for model, labels, block in (
        (llama, ids, "model.layers.0"),
        (bert, torch.tensor([0, 1, 2, 0]), "bert.encoder.layer.0"),
    ):
        result = gp.check(model, {"input_ids": ids, "labels": labels}, histograms=False)
        assert [f for f in result.findings if f.severity != "info"] == [], [
            str(f) for f in result.findings
        ]
        chain = Context(result.run, Thresholds()).chain
        assert [b.name for b in chain] == [block]
    for built in (Z.gpt2(0, seed, layers=1), Z.torch_transformer(0, seed, layers=1)):
        assert gp.check(*built, histograms=False).findings == []


def test_a_chain_of_layers_alone_in_a_list_is_still_judged_layer_by_layer():
    """The other side of a block of one: ten sigmoid layers held as ``body.0`` are one chain,
    and Glorot & Bengio's vanishing is still found in it."""
    model, x, y = Z.sigmoid_mlp_standard(0, 0)
    result = gp.check(_OneOf(model), x, y, histograms=False)
    assert "vanishing" in {f.kind for f in result.findings if f.severity != "info"}
