"""An eighth batch of held-out training-time cases: Hugging Face model FAMILIES none of the
corpus and the seven earlier batches trains (they had GPT-2, BERT, ViT, T5 and Llama) —
Mistral (grouped-query attention, a sliding window), GPT-NeoX (partial rotary, parallel
residual), Bloom (ALiBi), OPT with ``do_layer_norm_before=False`` (a real Post-LN model),
Gemma2 (attention-logit soft-capping, eager attention), ALBERT (one layer shared across
depth, a factorised embedding), BART (encoder-decoder, learned positions), Mamba (the slow
pure-torch selective scan), a Hugging Face ResNet and ConvNeXt — each built from a tiny
config (nothing downloaded) and trained a few seconds on one CPU thread.

Every case runs under the loop of the first batch (``_training_heldout.train``: watch()'s
DEFAULT schedule, ``probe.step(loss=loss)`` after ``opt.step()``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._training import V
from ._training_heldout import Held, _adam, _adamw, _images, _sgd, _warmup_cosine
from ._training_heldout import train as _train_held
from ._zoo import _quiet

__all__ = ["BROKEN", "DROPPED", "FAMILIES", "HEALTHY", "train"]

train = _train_held

_LM = dict(vocab_size=V + 1, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
           num_attention_heads=4, max_position_embeddings=64, pad_token_id=V)  # fmt: skip


class _Logits(nn.Module):
    """A Hugging Face model called with ``input_ids`` (or ``pixel_values``): its logits."""

    def __init__(self, model: nn.Module, key: str = "input_ids") -> None:
        super().__init__()
        self.model = model
        self.key = key

    def forward(self, x):
        return self.model(**{self.key: x}).logits


def _hf(config: str, model: str, key: str = "input_ids", **cfg):
    def build() -> nn.Module:
        import transformers

        _quiet()
        return _Logits(getattr(transformers, model)(getattr(transformers, config)(**cfg)), key)

    build.__name__ = model
    return build


def mistral(attn: str = "sdpa"):
    return _hf("MistralConfig", "MistralForCausalLM", num_key_value_heads=2, sliding_window=16,
               attn_implementation=attn, **_LM)  # fmt: skip


def gpt_neox(attn: str = "sdpa"):
    return _hf("GPTNeoXConfig", "GPTNeoXForCausalLM", rotary_pct=0.25, use_parallel_residual=True,
               attn_implementation=attn, **_LM)  # fmt: skip


def bloom(attn: str = "eager"):
    return _hf("BloomConfig", "BloomForCausalLM", vocab_size=V + 1, hidden_size=32, n_layer=2,
               n_head=4, pad_token_id=V, attn_implementation=attn)  # fmt: skip


def opt(post_ln: bool = True, attn: str = "sdpa"):
    return _hf("OPTConfig", "OPTForCausalLM", vocab_size=V + 1, hidden_size=32, ffn_dim=64,
               num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
               word_embed_proj_dim=32, do_layer_norm_before=not post_ln, dropout=0.0,
               pad_token_id=V, attn_implementation=attn)  # fmt: skip


def gemma2(attn: str = "eager"):
    return _hf("Gemma2Config", "Gemma2ForCausalLM", num_key_value_heads=2, head_dim=8,
               sliding_window=16, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
               attn_implementation=attn, **_LM)  # fmt: skip


def albert(attn: str = "sdpa"):
    return _hf("AlbertConfig", "AlbertForMaskedLM", vocab_size=V + 1, embedding_size=16,
               hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
               max_position_embeddings=64, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0, pad_token_id=V,
               attn_implementation=attn)  # fmt: skip


def mamba():
    return _hf("MambaConfig", "MambaForCausalLM", vocab_size=V + 1, hidden_size=32,
               state_size=8, expand=2, num_hidden_layers=2, pad_token_id=V,
               use_mambapy=False)  # fmt: skip


def hf_resnet():
    return _hf("ResNetConfig", "ResNetForImageClassification", "pixel_values", num_channels=1,
               embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
               downsample_in_first_stage=False, num_labels=10)  # fmt: skip


def hf_convnext():
    return _hf("ConvNextConfig", "ConvNextForImageClassification", "pixel_values",
               num_channels=1, patch_size=2, hidden_sizes=[16, 32], depths=[1, 1],
               num_stages=2, num_labels=10)  # fmt: skip


def _half(build):
    return lambda: build().half()


class BartCopy(nn.Module):
    """A tiny BART (Post-LN encoder and decoder, learned positions): the Markov tokens in,
    the same tokens out, the decoder reading them shifted by one."""

    def __init__(self, attn: str = "sdpa") -> None:
        super().__init__()
        from transformers import BartConfig, BartForConditionalGeneration

        _quiet()
        cfg = BartConfig(vocab_size=V + 1, d_model=32, encoder_layers=2, decoder_layers=2,
                         encoder_attention_heads=4, decoder_attention_heads=4,
                         encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                         dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                         pad_token_id=V, bos_token_id=V, eos_token_id=V,
                         decoder_start_token_id=V, forced_eos_token_id=None,
                         attn_implementation=attn)  # fmt: skip
        self.bart = BartForConditionalGeneration(cfg)

    def forward(self, idx):
        dec = torch.cat([torch.full_like(idx[:, :1], V), idx[:, :-1]], 1)
        return self.bart(input_ids=idx, decoder_input_ids=dec).logits


# -- data and losses --------------------------------------------------------------------------


def token_ce(out, y):
    return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1))


@functools.cache
def bigram_stream(n: int = 20_000) -> torch.Tensor:
    """Tokens of a first-order Markov chain over V: each token's successor one of 3 drawn
    for it, with probabilities 0.7 / 0.2 / 0.1 (an entropy of 0.8 nats, against ln V = 3.47
    for a model that has learnt nothing): learnt in tens of steps, so a short run shows
    whether a model learns."""
    g = np.random.default_rng(4321)
    succ = g.integers(0, V, size=(V, 3))
    choice = g.choice(3, size=n, p=[0.7, 0.2, 0.1])
    out = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        out[i] = succ[out[i - 1], choice[i]]
    return torch.from_numpy(out)


def _lm(batch, gen, t: int = 16):
    s = bigram_stream()
    while True:
        start = torch.randint(0, s.numel() - t - 1, (batch,), generator=gen)
        chunk = s[start[:, None] + torch.arange(t + 1)]
        yield chunk[:, :-1], chunk[:, 1:]


def _masked(batch, gen, rate: float = 0.25):
    """Masked-token denoising for an encoder: a quarter of the tokens replaced by the mask
    id V, every position's target its original token."""
    for x, _y in _lm(batch, gen):
        hide = torch.rand(x.shape, generator=gen) < rate
        yield x.masked_fill(hide, V), x


def _in_out(batch, gen):
    for x, _y in _lm(batch, gen):
        yield x, x


#: the families and how each is built with its attention implementations (the probe must
#: see every family's attention: ``attention_logits`` reads it)
FAMILIES = {
    "mistral": (mistral, ("eager", "sdpa")),
    "gpt_neox": (gpt_neox, ("eager", "sdpa")),
    "bloom": (bloom, ("eager",)),
    "opt": (lambda attn: opt(True, attn), ("eager", "sdpa")),
    "gemma2": (gemma2, ("eager",)),  # transformers refuses SDPA for Gemma2 (soft-capping)
    "albert": (albert, ("eager", "sdpa")),
    "bart": (lambda attn: lambda: BartCopy(attn), ("eager", "sdpa")),
}

_S = dict(batch=8, steps=80, loss=token_ce)

BROKEN = {
    # Mistral at Adam 1, no warm-up: the first step sets every weight to about ±1 (50x the
    # norm of q_proj), the stream grows 1e4x and the logits pass 100 at step 1; the loss
    # never gets below its start
    "mistral_adam_1": Held("mistral_adam_1", mistral(), _adam(1.0), _lm, **_S),
    # the model cast whole to float16 under Adam (eps 1e-8 is 0 in float16; a row of the
    # embedding with no gradient has m = v = 0): 0/0 in the first step
    "mistral_half_adam": Held("mistral_half_adam", _half(mistral()), _adam(1e-3), _lm, **_S),
    # Mamba's pure-torch scan at SGD 1e-5: nothing moves
    "mamba_sgd_1e-5": Held("mamba_sgd_1e-5", mamba(), _sgd(1e-5), _lm, **{**_S, "steps": 60}),
    # BART (Post-LN encoder and decoder) at Adam 0.1, no warm-up
    "bart_adam_1e-1": Held("bart_adam_1e-1", BartCopy, _adam(1e-1), _in_out, **_S),
    # ALBERT's one shared layer at SGD 10: NaN by step 8
    "albert_sgd_10": Held("albert_sgd_10", albert(), _sgd(10.0), _masked, **_S),
    # a Hugging Face ConvNeXt at SGD 10: NaN by step 6
    "convnext_sgd_10": Held("convnext_sgd_10", hf_convnext(), _sgd(10.0), _images, steps=80),
}  # fmt: skip

_W = dict(scheduler=_warmup_cosine(10, 80), **_S)

HEALTHY = {
    "mistral_adamw": Held("mistral_adamw", mistral(), _adamw(3e-3), _lm, clip=1.0, **_W),
    "neox_adamw": Held("neox_adamw", gpt_neox(), _adamw(3e-3), _lm, clip=1.0, **_W),
    "bloom_adamw": Held("bloom_adamw", bloom(), _adamw(3e-3), _lm, clip=1.0, **_W),
    "opt_postln_adamw_warmup": Held("opt_postln_adamw_warmup", opt(True), _adamw(3e-3), _lm,
                                    clip=1.0, **_W),
    "gemma2_adamw": Held("gemma2_adamw", gemma2(), _adamw(3e-3), _lm, clip=1.0, **_W),
    "albert_adamw": Held("albert_adamw", albert(), _adamw(3e-3), _masked, clip=1.0, **_W),
    "bart_adamw": Held("bart_adamw", BartCopy, _adamw(3e-3), _in_out, clip=1.0, **_W),
    # the slow selective scan is a loop over the tokens in Python: 60 steps
    "mamba_adamw": Held("mamba_adamw", mamba(), _adamw(3e-3), _lm, clip=1.0,
                        **{**_W, "steps": 60, "scheduler": _warmup_cosine(10, 60)}),
    "resnet_sgd_momentum": Held("resnet_sgd_momentum", hf_resnet(), _sgd(0.05, momentum=0.9),
                                _images, steps=80),
    "convnext_adamw": Held("convnext_adamw", hf_convnext(), _adamw(3e-3), _images, steps=80,
                           scheduler=_warmup_cosine(10, 80)),
}  # fmt: skip

#: tried and left out, with the reason: none is broken on both seeds in one clear way
DROPPED = {
    # Mistral at Adam 0.3: stalled at 59 % of its start on seed 0 (attention logits 129 by
    # step 3), still falling to half its start on seed 1 (no symptom; the same three causes as
    # warnings): no verdict holds on both
    "mistral_adam_0.3": Held("mistral_adam_0.3", mistral(), _adam(0.3), _lm, **_S),
    # GPT-NeoX at Adam 0.3: the stream grows 1e3x and the logits pass 100 by step 3, but it
    # learns the bigrams as far as the warmed-up run (4.5 -> 1.15): warnings without a symptom
    "neox_adam_0.3": Held("neox_adam_0.3", gpt_neox(), _adam(0.3), _lm, **_S),
    # OPT Post-LN (2 layers) at Adam 3e-2 without warm-up: learns (3.3 -> 1.0); two Post-LN
    # layers are too shallow to fail without a warm-up
    "opt_postln_adam_3e-2": Held("opt_postln_adam_3e-2", opt(True), _adam(3e-2), _lm, **_S),
}  # fmt: skip
