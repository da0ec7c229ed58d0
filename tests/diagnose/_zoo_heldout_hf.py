"""Hugging Face models of the held-out zoo, built from their configs (nothing downloaded),
computing their own loss from ``labels``; and the data helpers the held-out builders share.
Builders take ``(size, seed)`` and return the arguments of ``gp.check``."""

from __future__ import annotations

import torch

from ._zoo import _quiet

VOCAB = 64


def _ids(g, batch=4, length=16, vocab=VOCAB):
    return torch.randint(2, vocab, (batch, length), generator=g)


def _gen(seed):
    return torch.Generator().manual_seed(seed + 1000)


def _lm(cfg_cls, model_cls, size, seed, length=16, **cfg):
    _quiet()
    torch.manual_seed(seed)
    ids = _ids(_gen(seed), 4, length)
    return model_cls(cfg_cls(**cfg)), {"input_ids": ids, "labels": ids}, None


# -- Hugging Face, from configs ---------------------------------------------------------------


def distilbert(size, seed):
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    return _lm(
        DistilBertConfig,
        DistilBertForMaskedLM,
        size,
        seed,
        vocab_size=VOCAB,
        dim=32,
        n_layers=(2, 3)[size],
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=64,
    )


def roberta(size, seed):
    from transformers import RobertaConfig, RobertaForMaskedLM

    return _lm(
        RobertaConfig,
        RobertaForMaskedLM,
        size,
        seed,
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=(2, 4)[size],
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=1,
    )


def gpt_neox(size, seed):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return _lm(
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        size,
        seed,
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=(2, 4)[size],
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        rotary_pct=0.5,
    )


def gptj(size, seed):
    from transformers import GPTJConfig, GPTJForCausalLM

    return _lm(
        GPTJConfig,
        GPTJForCausalLM,
        size,
        seed,
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=(2, 3)[size],
        n_head=2,
        rotary_dim=8,
        n_positions=64,
    )


def mistral(size, seed):
    from transformers import MistralConfig, MistralForCausalLM

    return _lm(
        MistralConfig,
        MistralForCausalLM,
        size,
        seed,
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=96,
        num_hidden_layers=(2, 4)[size],
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        sliding_window=8,
    )


def qwen2(size, seed):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return _lm(
        Qwen2Config,
        Qwen2ForCausalLM,
        size,
        seed,
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=96,
        num_hidden_layers=(2, 3)[size],
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )


def _seq2seq(cfg_cls, model_cls, size, seed, **cfg):
    _quiet()
    torch.manual_seed(seed)
    g = _gen(seed)
    src, labels = _ids(g, 4, 16), _ids(g, 4, 12)
    decoder = torch.cat([torch.full((4, 1), 2), labels[:, :-1]], 1)
    inputs = {"input_ids": src, "decoder_input_ids": decoder, "labels": labels}
    return model_cls(cfg_cls(**cfg)), inputs, None


def bart(size, seed):
    from transformers import BartConfig, BartForConditionalGeneration

    n = (1, 2)[size]
    return _seq2seq(
        BartConfig,
        BartForConditionalGeneration,
        size,
        seed,
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=n,
        decoder_layers=n,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
    )


def marian(size, seed):
    from transformers import MarianConfig, MarianMTModel

    n = (2, 3)[size]
    return _seq2seq(
        MarianConfig,
        MarianMTModel,
        size,
        seed,
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=n,
        decoder_layers=n,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=0,
        decoder_start_token_id=0,
    )


def _pixels(seed, batch=4, image=32, classes=10, channels=3):
    g = _gen(seed)
    x = torch.randn(batch, channels, image, image, generator=g)
    return x, torch.randint(0, classes, (batch,), generator=g)


def _vision(cfg_cls, model_cls, seed, image=32, **cfg):
    _quiet()
    torch.manual_seed(seed)
    x, y = _pixels(seed, image=image)
    return model_cls(cfg_cls(num_labels=10, **cfg)), {"pixel_values": x, "labels": y}, None


def deit(size, seed):
    from transformers import DeiTConfig, DeiTForImageClassification

    return _vision(
        DeiTConfig,
        DeiTForImageClassification,
        seed,
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=(2, 4)[size],
        num_attention_heads=2,
        intermediate_size=64,
    )


def swin(size, seed):
    from transformers import SwinConfig, SwinForImageClassification

    return _vision(
        SwinConfig,
        SwinForImageClassification,
        seed,
        image_size=32,
        patch_size=2,
        embed_dim=16,
        depths=((1, 1), (2, 2))[size],
        num_heads=(2, 4),
        window_size=4,
    )


def hf_resnet(size, seed):
    from transformers import ResNetConfig, ResNetForImageClassification

    return _vision(
        ResNetConfig,
        ResNetForImageClassification,
        seed,
        embedding_size=8,
        hidden_sizes=(8, 16),
        depths=((1, 1), (2, 2))[size],
        layer_type="basic",
    )


def hf_convnext(size, seed):
    from transformers import ConvNextConfig, ConvNextForImageClassification

    return _vision(
        ConvNextConfig,
        ConvNextForImageClassification,
        seed,
        hidden_sizes=(8, 16),
        depths=((1, 1), (2, 2))[size],
        num_stages=2,
    )


# -- broken (tests/diagnose/_zoo_heldout_broken.py) --


def gpt2_init_range_1(size, seed):
    """GPT-2 with initializer_range=1.0: width 16 over 8 layers (its first block scales the
    stream only 4.6-8.3×: the weights' σ² · fan_in say it), width 32 over 4."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return _lm(
        GPT2Config,
        GPT2LMHeadModel,
        size,
        seed,
        vocab_size=VOCAB,
        n_embd=(16, 32)[size],
        n_layer=(8, 4)[size],
        n_head=2,
        n_positions=64,
        initializer_range=1.0,
    )


def bert_deep(size, seed):
    """BERT is Post-LN: 24 (BERT-large's depth) or 30 layers."""
    from transformers import BertConfig, BertForMaskedLM

    return _lm(
        BertConfig,
        BertForMaskedLM,
        size,
        seed,
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=(24, 30)[size],
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )


HF_HEALTHY = {
    "distilbert": distilbert,
    "roberta": roberta,
    "gpt_neox": gpt_neox,
    "gptj": gptj,
    "mistral": mistral,
    "qwen2": qwen2,
    "bart": bart,
    "marian": marian,
    "deit": deit,
    "swin": swin,
    "hf_resnet": hf_resnet,
    "hf_convnext": hf_convnext,
}
