"""More Hugging Face architectures for the held-out zoo, one line each: (task, config class,
model class, config, the depth key and its two sizes). Built from configs, nothing
downloaded; each computes its own loss from ``labels``."""

from __future__ import annotations

import functools

import torch

from ._zoo import _quiet
from ._zoo_heldout_hf import VOCAB, _gen, _ids, _pixels

_ENC = dict(
    vocab_size=VOCAB, hidden_size=32, num_attention_heads=2, intermediate_size=64,
    max_position_embeddings=64,
)  # fmt: skip
_S2S = dict(
    vocab_size=VOCAB, d_model=32, encoder_attention_heads=2, decoder_attention_heads=2,
    encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
)  # fmt: skip

TABLE = {
    "electra": ("lm", "ElectraConfig", "ElectraForMaskedLM", dict(embedding_size=16, **_ENC),
                "num_hidden_layers", (2, 4)),
    "albert": ("lm", "AlbertConfig", "AlbertForMaskedLM", dict(embedding_size=16, **_ENC),
               "num_hidden_layers", (2, 4)),
    "deberta_v2": ("lm", "DebertaV2Config", "DebertaV2ForMaskedLM", _ENC, "num_hidden_layers",
                   (2, 3)),
    "roberta_classifier": ("cls", "RobertaConfig", "RobertaForSequenceClassification",
                           dict(pad_token_id=1, **_ENC), "num_hidden_layers", (2, 4)),
    "opt": ("lm", "OPTConfig", "OPTForCausalLM", dict(vocab_size=VOCAB, hidden_size=32,
            num_attention_heads=2, ffn_dim=64, max_position_embeddings=64,
            word_embed_proj_dim=32), "num_hidden_layers", (2, 4)),
    "bloom": ("lm", "BloomConfig", "BloomForCausalLM", dict(vocab_size=VOCAB, hidden_size=32,
              n_head=2), "n_layer", (2, 4)),
    "falcon": ("lm", "FalconConfig", "FalconForCausalLM", dict(vocab_size=VOCAB, hidden_size=32,
               num_attention_heads=2), "num_hidden_layers", (2, 4)),
    "phi": ("lm", "PhiConfig", "PhiForCausalLM", _ENC, "num_hidden_layers", (2, 4)),
    "gemma": ("lm", "GemmaConfig", "GemmaForCausalLM", dict(vocab_size=VOCAB, hidden_size=32,
              intermediate_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
              max_position_embeddings=64), "num_hidden_layers", (2, 4)),
    "gpt_bigcode": ("lm", "GPTBigCodeConfig", "GPTBigCodeForCausalLM", dict(vocab_size=VOCAB,
                    n_embd=32, n_head=2, n_positions=64), "n_layer", (2, 4)),
    "pegasus": ("s2s", "PegasusConfig", "PegasusForConditionalGeneration", _S2S,
                ("encoder_layers", "decoder_layers"), (1, 2)),
    "mbart": ("s2s", "MBartConfig", "MBartForConditionalGeneration", _S2S,
              ("encoder_layers", "decoder_layers"), (1, 2)),
    "m2m100": ("s2s", "M2M100Config", "M2M100ForConditionalGeneration", _S2S,
               ("encoder_layers", "decoder_layers"), (1, 2)),
    "t5_gated_gelu": ("s2s", "T5Config", "T5ForConditionalGeneration", dict(vocab_size=VOCAB,
                      d_model=32, d_ff=64, d_kv=16, num_heads=2, feed_forward_proj="gated-gelu",
                      decoder_start_token_id=0), "num_layers", (2, 3)),
    "beit": ("vision", "BeitConfig", "BeitForImageClassification", dict(image_size=32,
             patch_size=8, hidden_size=32, num_attention_heads=2, intermediate_size=64),
             "num_hidden_layers", (2, 4)),
    "dinov2": ("vision", "Dinov2Config", "Dinov2ForImageClassification", dict(image_size=32,
               patch_size=8, hidden_size=32, num_attention_heads=2, mlp_ratio=2),
               "num_hidden_layers", (2, 4)),
    "regnet": ("vision", "RegNetConfig", "RegNetForImageClassification", dict(embedding_size=8,
               hidden_sizes=[8, 16], groups_width=8), "depths", ([1, 1], [1, 2])),
    "convnext_v2": ("vision", "ConvNextV2Config", "ConvNextV2ForImageClassification",
                    dict(hidden_sizes=[8, 16], num_stages=2), "depths", ([1, 1], [2, 2])),
    "swin_v2": ("vision", "Swinv2Config", "Swinv2ForImageClassification", dict(image_size=32,
                patch_size=2, embed_dim=16, num_heads=[2, 4], window_size=4), "depths",
                ([1, 1], [2, 2])),
    "mobilenet_v2_hf": ("vision", "MobileNetV2Config", "MobileNetV2ForImageClassification",
                        dict(image_size=32), "depth_multiplier", (0.25, 0.35)),
    "mobilevit": ("vision", "MobileViTConfig", "MobileViTForImageClassification",
                  dict(image_size=32, hidden_sizes=[16, 24, 32],
                       neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 48]), "expand_ratio", (2.0, 4.0)),
}  # fmt: skip


def build(name, size, seed):
    import transformers

    task, cfg_name, model_name, cfg, key, sizes = TABLE[name]
    _quiet()
    cfg = dict(cfg)
    for k in (key,) if isinstance(key, str) else key:
        cfg[k] = sizes[size]
    if task == "vision":
        cfg["num_labels"] = 10
    if task == "cls":
        cfg["num_labels"] = 3
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(getattr(transformers, cfg_name)(**cfg))
    g = _gen(seed)
    if task == "vision":
        x, y = _pixels(seed)
        return model, {"pixel_values": x, "labels": y}, None
    ids = _ids(g, 4, 16)
    if task == "lm":
        return model, {"input_ids": ids, "labels": ids}, None
    if task == "cls":
        return model, {"input_ids": ids, "labels": torch.randint(0, 3, (4,), generator=g)}, None
    labels = _ids(g, 4, 12)
    decoder = torch.cat([torch.full((4, 1), 2), labels[:, :-1]], 1)
    return model, {"input_ids": ids, "decoder_input_ids": decoder, "labels": labels}, None


HF_MORE = {name: functools.partial(build, name) for name in TABLE}
