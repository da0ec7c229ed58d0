"""Hugging Face architectures of the third held-out batch, none in the earlier batches, one
line each: (task, config class, model class, config, the depth key and its two sizes). Built
from configs (nothing downloaded), each computing its own loss from ``labels``, at the input
shapes of ``_zoo_heldout3.SHAPES`` (sequence length 16/64 with batch 16/2; images of 8/16/32
px where the architecture's strides allow it)."""

from __future__ import annotations

import functools

import torch

from ._zoo import _quiet
from ._zoo_heldout3 import SHAPES, images
from ._zoo_heldout_hf import VOCAB, _gen, _ids

_LM = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=2, intermediate_size=64,
           max_position_embeddings=128)  # fmt: skip
_KV = dict(_LM, num_key_value_heads=1)
_S2S = dict(vocab_size=VOCAB, d_model=32, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128)  # fmt: skip
_BOTH = ("encoder_layers", "decoder_layers")

TABLE = {
    "mamba": ("lm", "MambaConfig", "MambaForCausalLM", dict(vocab_size=VOCAB, hidden_size=32,
              state_size=8, expand=2), "num_hidden_layers", (2, 4)),
    "rwkv": ("lm", "RwkvConfig", "RwkvForCausalLM", dict(vocab_size=VOCAB, hidden_size=32,
             attention_hidden_size=32, intermediate_size=64, context_length=128),
             "num_hidden_layers", (2, 4)),
    "gpt_neo": ("lm", "GPTNeoConfig", "GPTNeoForCausalLM", dict(vocab_size=VOCAB, hidden_size=32,
                num_heads=2, max_position_embeddings=128, window_size=8), "num_layers", (2, 4)),
    "codegen": ("lm", "CodeGenConfig", "CodeGenForCausalLM", dict(vocab_size=VOCAB, n_embd=32,
                n_head=2, rotary_dim=8, n_positions=128, n_ctx=128), "n_layer", (2, 4)),
    "xglm": ("lm", "XGLMConfig", "XGLMForCausalLM", dict(vocab_size=VOCAB, d_model=32,
             attention_heads=2, ffn_dim=64, max_position_embeddings=128), "num_layers", (2, 4)),
    "mixtral": ("lm", "MixtralConfig", "MixtralForCausalLM", dict(_KV, num_local_experts=4,
                num_experts_per_tok=2), "num_hidden_layers", (2, 4)),
    "phi3": ("lm", "Phi3Config", "Phi3ForCausalLM", dict(_KV, pad_token_id=0),
             "num_hidden_layers", (2, 4)),
    "gemma2": ("lm", "Gemma2Config", "Gemma2ForCausalLM", dict(_KV, head_dim=16,
               sliding_window=8), "num_hidden_layers", (2, 4)),
    "olmo2": ("lm", "Olmo2Config", "Olmo2ForCausalLM", _LM, "num_hidden_layers", (2, 4)),
    "starcoder2": ("lm", "Starcoder2Config", "Starcoder2ForCausalLM", _KV, "num_hidden_layers",
                   (2, 4)),
    "qwen3": ("lm", "Qwen3Config", "Qwen3ForCausalLM", dict(_KV, head_dim=16),
              "num_hidden_layers", (2, 4)),
    "xlnet": ("lm", "XLNetConfig", "XLNetLMHeadModel", dict(vocab_size=VOCAB, d_model=32,
              n_head=2, d_inner=64), "n_layer", (2, 4)),
    "fnet": ("lm", "FNetConfig", "FNetForMaskedLM", dict(_LM, use_tpu_fourier_optimizations=False),
             "num_hidden_layers", (2, 4)),
    "funnel": ("lm", "FunnelConfig", "FunnelForMaskedLM", dict(vocab_size=VOCAB, d_model=32,
               n_head=2, d_head=16, d_inner=64), "block_sizes", ([1, 1], [2, 2])),
    "mobilebert": ("lm", "MobileBertConfig", "MobileBertForMaskedLM", dict(_LM,
                   embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                   num_feedforward_networks=2), "num_hidden_layers", (2, 4)),
    "esm": ("lm", "EsmConfig", "EsmForMaskedLM", dict(_LM, pad_token_id=1, mask_token_id=2,
            position_embedding_type="rotary"), "num_hidden_layers", (2, 4)),
    "squeezebert": ("lm", "SqueezeBertConfig", "SqueezeBertForMaskedLM", dict(_LM,
                    embedding_size=32), "num_hidden_layers", (2, 4)),
    "blenderbot": ("s2s", "BlenderbotConfig", "BlenderbotForConditionalGeneration", _S2S, _BOTH,
                   (1, 2)),
    "blenderbot_small": ("s2s", "BlenderbotSmallConfig",
                         "BlenderbotSmallForConditionalGeneration", _S2S, _BOTH, (1, 2)),
    "whisper": ("whisper", "WhisperConfig", "WhisperForConditionalGeneration", dict(_S2S,
                num_mel_bins=8, max_target_positions=128, pad_token_id=0, bos_token_id=1,
                eos_token_id=1, decoder_start_token_id=1, suppress_tokens=None,
                begin_suppress_tokens=None), _BOTH, (1, 2)),
    "wav2vec2": ("audio", "Wav2Vec2Config", "Wav2Vec2ForSequenceClassification", dict(
                 hidden_size=32, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
                 conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=8,
                 num_conv_pos_embedding_groups=4, num_labels=4, classifier_proj_size=16),
                 "num_hidden_layers", (2, 4)),
    "segformer": ("segment", "SegformerConfig", "SegformerForSemanticSegmentation", dict(
                  num_encoder_blocks=2, sr_ratios=[2, 1], hidden_sizes=[16, 32],
                  patch_sizes=[3, 3], strides=[2, 2], num_attention_heads=[1, 2],
                  decoder_hidden_size=32, num_labels=3), "depths", ([1, 1], [2, 2])),
    "bit": ("vision", "BitConfig", "BitForImageClassification", dict(embedding_size=16,
            num_groups=8, hidden_sizes=[32, 64], layer_type="preactivation",
            global_padding="SAME"), "depths", ([1, 1], [2, 2])),
    "focalnet": ("vision", "FocalNetConfig", "FocalNetForImageClassification", dict(
                 embed_dim=16, patch_size=2, hidden_sizes=[16, 32]), "depths", ([1, 1], [2, 2])),
}  # fmt: skip


def build(name, size, seed, shape, **extra):
    """``extra``: config fields that a broken variant changes."""
    import transformers

    task, cfg_name, model_name, cfg, key, sizes = TABLE[name]
    _quiet()
    cfg = dict(cfg, **extra)
    for k in (key,) if isinstance(key, str) else key:
        cfg[k] = sizes[size]
    if name == "funnel":  # Funnel: one hidden layer per block size, its decoder layers
        cfg["num_decoder_layers"] = 1
    if name == "gpt_neo":  # alternating global and local attention, one pair per two layers
        cfg["attention_types"] = [[["global", "local"], cfg["num_layers"] // 2]]
    if task == "vision":
        cfg["num_labels"] = 10
        x, y = images(seed, shape)
    if task == "segment":
        x, _ = images(seed, shape)
        y = torch.randint(0, 3, (x.shape[0], *x.shape[2:]), generator=_gen(seed))
    length, batch = SHAPES["sequence"][shape] if modality(name) == "sequence" else (0, 0)
    if task == "whisper":
        cfg["max_source_positions"] = length // 2
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(getattr(transformers, cfg_name)(**cfg))
    g = _gen(seed)
    if task in ("vision", "segment"):
        return model, {"pixel_values": x, "labels": y}, None
    if task == "audio":
        x = torch.randn(batch, 10 * length + 5, generator=g)
        return (
            model,
            {"input_values": x, "labels": torch.randint(0, 4, (batch,), generator=g)},
            None,
        )
    if task == "lm":
        ids = _ids(g, batch, length)
        return model, {"input_ids": ids, "labels": ids}, None
    labels = _ids(g, batch, length // 2)
    decoder = torch.cat([torch.full((batch, 1), 2), labels[:, :-1]], 1)
    inputs = {"decoder_input_ids": decoder, "labels": labels}
    if task == "whisper":
        inputs["input_features"] = torch.randn(batch, 8, length, generator=g)
    else:
        inputs["input_ids"] = _ids(g, batch, length)
    return model, inputs, None


def modality(name):
    return "image" if TABLE[name][0] in ("vision", "segment") else "sequence"


HF3 = {name: (functools.partial(build, name), modality(name)) for name in TABLE}
