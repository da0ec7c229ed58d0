"""The third held-out zoo batch: architectures none of the earlier batches has, judged as
issue 15's evaluator judges its own, with the *input* varied too — healthy ones get no
warning and no error at two sizes × two init draws × every input shape of their modality
(image 8/16/32 px, sequence length 16/64, batch 2/16/64, graphs of 16/64 nodes); broken ones
get their kind at the right layer or block on every one. Counts before and after the fixes:
docs/DIAGNOSIS.md ("Third held-out batch"). Each fixed false alarm has its regression test
below.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Context, Thresholds
from gradprobe.diagnose.expected import hidden_gains

from . import _zoo_heldout3 as H
from . import _zoo_heldout3_broken as HB
from ._zoo_heldout3_hf import HF3
from ._zoo_heldout_broken import _normal_
from ._zoo_models import TorchLM

HEALTHY = {**H.HEALTHY, **HF3}
# the costliest configurations (about a second each or more on one thread)
SLOW = {"seq2seq_post_ln_deep", "mamba", "bit", "gpt_neo", "segformer", "qwen3_init_range_1"}


def _cases(table):
    for name, (_, modality, *_) in sorted(table.items()):
        marks = [pytest.mark.slow] if name in SLOW else []
        for size in (0, 1):
            for seed in (0, 1):
                for shape in range(len(H.SHAPES[modality])):
                    yield pytest.param(name, size, seed, shape, marks=marks)


@functools.cache
def _check(table, name, size, seed, shape):
    build = HEALTHY[name][0] if table == "healthy" else HB.BROKEN[name][0]
    return gp.check(*build(size, seed, shape), histograms=False)


def _serious(findings):
    return [f for f in findings if f.severity in ("warning", "error")]


@pytest.mark.parametrize(("name", "size", "seed", "shape"), _cases(HEALTHY))
def test_heldout3_healthy_has_no_warning_or_error(name, size, seed, shape):
    found = _check("healthy", name, size, seed, shape).findings
    assert [str(f) for f in _serious(found)] == []


@pytest.mark.parametrize(("name", "size", "seed", "shape"), _cases(HB.BROKEN))
def test_heldout3_broken_gets_its_kind_at_the_right_layer(name, size, seed, shape):
    _, _, kinds, where = HB.BROKEN[name]
    every = _check("broken", name, size, seed, shape).findings
    found = [f for f in _serious(every) if f.kind in kinds]
    assert found, [str(f) for f in every]
    if where is not None:
        assert any(where(f.layer) for f in found), [(f.kind, f.layer) for f in found]


# -- the false alarms the batch found, each fixed in general ----------------------------------


def _pre_ln_lm(seed, embed_std):
    torch.manual_seed(seed)
    model = TorchLM(4, norm_first=True)
    nn.init.normal_(model.embed.weight, std=embed_std)
    ids = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(seed))
    return model, ids, ids


@pytest.mark.parametrize("seed", [0, 1])
def test_a_small_token_embedding_made_the_first_pre_ln_block_exploding(seed):
    """A Pre-LN nn.TransformerEncoder whose token embedding is N(0, 0.02²) (nanoGPT's and
    BERT's embedding init) read "exploding at stack.layers.0: scales the stream 16×": its
    branches read the stream normalised and add their unit-scale output to a stream of rms
    0.02. What entered a block is taken at no less than its own norms' output now."""
    model, ids, _ = _pre_ln_lm(seed, 0.02)
    ctx = Context(gp.check(model, ids, ids, histograms=False).run, Thresholds())
    assert ctx.norm_place == "pre"
    assert max(g for _, g in ctx.stream_growth(0)) > 10  # the old reading
    assert max(g for _, g in ctx.stream_growth(0, against_norms=True)) < 2
    assert not _serious(gp.check(model, ids, ids, histograms=False).findings)
    # weights at N(0, 1) still scale the stream far past the line
    model, ids, _ = _pre_ln_lm(seed, 1.0)
    _normal_(model, only=lambda n: n.startswith("stack."))
    found = _serious(gp.check(model, ids, ids, histograms=False).findings)
    assert any(f.kind == "exploding" and f.layer == "stack.layers.0" for f in found)


def test_rwkv_time_mix_coefficients_were_read_as_weight_matrices():
    """RWKV's (1, 1, d) time-mix coefficients (up to 1 each) gave an upper-quartile
    "σ² · fan_in" of 11.5 and "exploding: weights far above their fan-in scale" at every
    size, draw and length; its 1e-4 embedding, normalised by the first block's own
    LayerNorm, read a stream growth of 3,400×. A parameter of a custom module with one
    dimension above 1 is a per-channel vector, not a matrix with a fan-in."""
    ctx = Context(_check("healthy", "rwkv", 0, 0, 0).run, Thresholds())
    gains = hidden_gains(ctx)
    assert gains and not any("time_mix" in p for p in gains)
    assert max(gains.values()) < 4
    assert max(g for _, g in ctx.stream_growth(0)) > 1000  # the old reading
    assert max(g for _, g in ctx.stream_growth(0, against_norms=True)) < 2
    assert not _serious(_check("healthy", "rwkv", 0, 0, 0).findings)


@pytest.mark.parametrize("image", [8, 64])
def test_a_batch_of_one_under_batchnorm_and_a_pool_was_a_vanishing_error(image):
    """ConvMixer's last block ends in BatchNorm and its head mean-pools it: on one example
    the pooled output is β whatever the input, and the gradient below is float32 rounding
    (5e-8 of the top block's). That read "vanishing (error) at blocks.0: re-initialise with
    its own scheme" — the weights already are at that scale. The cancellation inside the
    BatchNorm is named now, as info (the check's batch, not the model), with the batch as
    the remedy; at batch 2 there is nothing to say."""
    from . import _zoo_heldout3_models as M

    g = torch.Generator().manual_seed(0)
    for batch in (1, 2):
        torch.manual_seed(0)
        x = torch.randn(batch, 3, image, image, generator=g)
        found = gp.check(M.ConvMixer(16, 2), x, torch.zeros(batch, dtype=torch.long)).findings
        assert not _serious(found)
        said = [f for f in found if f.kind == "vanishing"]
        if batch == 2:
            assert said == []
            continue
        assert [(f.severity, f.evidence["cancelled_in"]) for f in said] == [
            ("info", "blocks.1.bn2")
        ]
        assert "batch of two or more" in said[0].remedy.text
