"""Regressions from the eighth held-out training check (tests/diagnose/_training_heldout8.py,
Hugging Face families), on runs written by hand or a few steps of a tiny model."""

import numpy as np
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import diagnose
from gradprobe.diagnose.context import Context
from gradprobe.diagnose.finding import Finding, Remedy
from gradprobe.diagnose.link import link
from gradprobe.diagnose.thresholds import Thresholds

from ._judge import first, lr_in, serious
from ._runs import noisy, training_run

_ATT = [("attn", "MultiheadAttention", None), ("head", "Linear", None)]
_W = ["attn.in_proj_weight", "head.weight"]
_LOGGED = [*range(20), *range(20, 100, 10)]
_ADAM = {"type": "Adam", "groups": 1, "weight_decay": 0.0, "eps": 1e-8}


def _attention_run(ratio, logit):
    """100 steps of a loss that never falls (3.47 = ln 32), Adam at a constant lr; per logged
    step each weight's update ratio ``ratio(s)`` (norm 4, gradient rms 0.01) and the
    attention's largest logit ``logit(s)``."""
    logged = {s: [r for w in _W for r in ((w, "update", "ratio", ratio(s)),
                                          (w, "weight", "norm", 4.0),
                                          (w, "param_grad", "rms", 0.01))]
              + [("attn", "attention", "max_logit", logit(s)),
                 ("attn", "attention", "entropy", 0.1 if logit(s) > 100 else 3.0)]
              for s in _LOGGED}  # fmt: skip
    return training_run(loss=noisy(np.full(100, 3.47), 0.01), lr=np.full(100, 1.0),
                        grad_norm=np.full(100, 0.5), logged=logged, modules=_ATT, params=_W,
                        meta={"optimizer": _ADAM})  # fmt: skip


def test_logits_that_jumped_in_the_step_that_replaced_the_weights_were_told_qk_norm_regression():
    """Mistral at Adam 1 (every weight set to about ±1 by the first step: 50x q_proj's norm)
    and ALBERT at SGD 10 (update ratios of 1e3 at step 4-5): the attention logits pass 100 at
    the next logged step, with everything else, and ``link`` ranked attention first — "add
    QK-norm" for a learning rate 100-1000x too high. Logits that jump in the update that
    moved the attention's weights by more than their norm are now that update's (the lr
    first); logits that grow over the steps after one large first update (GPT-2 and T5 at
    Adam 3e-2: crossing at steps 18-50) keep QK-norm first."""
    jumped = _attention_run(lambda s: 20.0 if s == 0 else 0.05, lambda s: 0.05 if s == 0 else 500)
    s = first(diagnose(jumped), ("not_learning",))
    assert s.causes[0].kind == "large_updates", [str(c) for c in s.causes]
    assert lr_in(s.remedy.code) < 0.1 and not s.remedy.code.startswith("self.q_norm")
    grew = _attention_run(lambda s: 3.0 if s == 0 else 0.05, lambda s: 0.05 * 1.6**s)
    s = first(diagnose(grew), ("not_learning",))
    assert s.causes[0].kind == "attention_logits" and "q_norm" in s.remedy.code


def test_two_step_size_causes_wrote_the_warmup_twice_regression():
    """The large updates' remedy and the exploding residual stream's after it both say "lower
    the lr, warm it up": the second's lr line was dropped but its warm-up kept, so the
    symptom's code built the same LambdaLR twice (Mistral at Adam 1, ALBERT at SGD 10). Each
    line is now said once."""
    run = _attention_run(lambda s: 0.05, lambda s: 1.0)
    warm = "warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 80))"

    def cause(kind, layer, said):
        code = f"for group in opt.param_groups:\n    group['lr'] = {said}\n{warm}"
        return Finding(kind, layer, "warning", 0, remedy=Remedy(kind, None, code))

    symptom = Finding("not_learning", "(loss)", "warning", 0, evidence={"window": 10})
    causes = [cause("large_updates", "head.weight", 1e-3), cause("vanishing", "attn", 3e-4)]
    linked = link(Context(run, Thresholds()), [*causes, symptom])
    s = next(f for f in linked if f.kind == "not_learning")
    lines = [x for x in s.remedy.code.split("\n") if x]
    assert lines.count(warm) == 1 and lr_in(s.remedy.code) == 1e-3, s.remedy.code


class _Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(64, 16)
        self.head = nn.Linear(16, 64)

    def forward(self, idx):
        return self.head(self.emb(idx))


def _trained(dtype, eps=1e-8):
    torch.manual_seed(0)
    model = _Tokens().to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=eps)
    idx = torch.randint(0, 8, (4, 8))  # rows 8..63 of the embedding never get a gradient
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(idx).flatten(0, 1).float(), idx.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    return probe.run


def test_float16_weights_under_adam_were_told_to_lower_the_lr_regression():
    """A model cast whole with .half() under Adam (eps 1e-8, which is 0 in float16): the
    embedding rows no example reached have m = v = 0, and the first step makes them 0/0 =
    NaN. The update's remedy said "lower the learning rate" (lr /= 10 changes nothing). The
    probe now records the parameters' dtypes (meta["param_dtypes"]), and the remedy keeps
    the weights in float32 under float16 autocast with a GradScaler. The same model in
    float32 trains; in bfloat16 (eps representable) nothing is said of float16."""
    run = _trained(torch.float16)
    assert set(run.meta["param_dtypes"].values()) == {"float16"}
    assert len(run.meta["param_dtypes"]) == 3
    f = first(diagnose(run), ("non_finite",))
    assert f.evidence.get("phase") == "update" and f.onset == 0
    assert ".float()" in f.remedy.code and "autocast" in f.remedy.code
    assert lr_in(f.remedy.code) is None and "group['lr']" not in f.remedy.code
    assert "param_dtypes" not in _trained(torch.float32).meta  # only non-float32 are listed
    assert not serious(diagnose(_trained(torch.float32)))
    assert not any("float16" in f.remedy.text for f in diagnose(_trained(torch.bfloat16)))


def _watched(model, batch, steps=2):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(steps):
            out = model(**batch) if isinstance(batch, dict) else model(batch)
            loss = out.loss if hasattr(out, "loss") else out.square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    return Context(probe.run, Thresholds())


def test_a_post_ln_opt_was_told_norm_first_which_only_torch_layers_have_regression():
    """OPT with ``do_layer_norm_before=False`` (Post-LN): the Pre-LN line of its remedy was
    ``nn.TransformerEncoderLayer(..., norm_first=True)``, a switch OPT does not have; its
    config's is ``do_layer_norm_before``. A block with no switch (BART's) is told the change
    to its forward; torch's own layers keep ``norm_first=True``."""
    from transformers import BartConfig, BartForConditionalGeneration, OPTConfig, OPTForCausalLM

    from gradprobe.diagnose.training import post_ln_blocks, pre_ln_code

    torch.manual_seed(0)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    small = dict(vocab_size=64, num_attention_heads=4, max_position_embeddings=32)
    opt = OPTForCausalLM(
        OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=64, do_layer_norm_before=False,
                  word_embed_proj_dim=32, **small)
    )  # fmt: skip
    bart = BartForConditionalGeneration(
        BartConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64,
                   decoder_ffn_dim=64, encoder_attention_heads=4, decoder_attention_heads=4,
                   **{k: v for k, v in small.items() if k != "num_attention_heads"})
    )  # fmt: skip
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    torch_post = nn.Sequential(layer, nn.TransformerEncoderLayer(32, 4, 64, 0.0, batch_first=True))
    codes = {}
    for name, model, batch in (
        ("opt", opt, {"input_ids": ids, "labels": ids}),
        ("bart", bart, {"input_ids": ids, "labels": ids}),
        ("torch", torch_post, torch.randn(2, 8, 32)),
    ):
        ctx = _watched(model, batch)
        blocks = post_ln_blocks(ctx)
        assert blocks, name
        codes[name] = pre_ln_code(ctx, blocks)
    assert "do_layer_norm_before = True" in codes["opt"] and "norm_first" not in codes["opt"]
    assert "no Pre-LN switch" in codes["bart"] and "norm1(x)" in codes["bart"]
    assert "norm_first=True" in codes["torch"] and "TransformerEncoderLayer" in codes["torch"]


def test_saturated_units_judged_learnt_sparsity_were_told_leaky_relu_regression():
    """A sigmoid layer that saturated during training under usual update ratios, in a run
    whose loss falls, is info; its remedy said "LeakyReLU/GELU keeps more units alive" — the
    dead-unit words; a saturated layer's is normalisation before the activation."""
    from gradprobe.diagnose.link import _sparse

    ev = {"update_ratio_before": 0.01, "appeared": "during training"}
    sat = _sparse(Finding("saturated", "2", "warning", 40, evidence=ev))
    dead = _sparse(Finding("dead_units", "2", "warning", 40, evidence=ev))
    assert sat.severity == "info" and "LeakyReLU" not in sat.remedy.text
    assert "normalisation before the activation" in sat.remedy.text
    assert "LeakyReLU" in dead.remedy.text
