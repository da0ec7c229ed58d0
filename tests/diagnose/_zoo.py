"""Models as people build them, at tiny sizes, with their authors' default init.

Each builder takes ``(size, seed)`` and returns ``(model, inputs, target)`` ready for
``gp.check(model, inputs, target)``; ``size`` is 0 (smallest) or 1 (the next one up), the
depth or width its authors vary. Hugging Face models come from their ``XConfig`` (nothing is
downloaded) and compute their own loss from ``labels``. Sizes are kept tiny so the whole
zoo checks in seconds on one thread.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
from torch import nn

from ._zoo_models import (  # noqa: F401  (re-exported: tests build variants)
    LSTMLM,
    VOCAB,
    BasicBlock,
    ChannelsLayerNorm,
    ConvNeXt,
    ConvNeXtBlock,
    DoubleConv,
    GRUClassifier,
    LSTMClassifier,
    Mixer,
    MixerBlock,
    MlpBlock,
    ResNet,
    TorchLM,
    UNet,
)


def _ids(g, batch=4, length=16, vocab=VOCAB):
    return torch.randint(0, vocab, (batch, length), generator=g)


def _quiet():
    from transformers.utils import logging

    logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*loss_type=None.*")


# -- Hugging Face ---------------------------------------------------------------------------


def gpt2(size, seed, length=16, batch=4, layers=None, embd=32, tie=True):
    from transformers import GPT2Config, GPT2LMHeadModel

    _quiet()
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_embd=embd, n_layer=layers or (2, 4)[size], n_head=2, vocab_size=VOCAB,
        n_positions=max(64, length), bos_token_id=0, eos_token_id=0, tie_word_embeddings=tie,
    )  # fmt: skip
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return GPT2LMHeadModel(cfg), {"input_ids": ids, "labels": ids}, None


def bert(size, seed, length=16, batch=4):
    from transformers import BertConfig, BertForMaskedLM

    _quiet()
    torch.manual_seed(seed)
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=(2, 4)[size], num_attention_heads=2,
        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=max(64, length),
    )  # fmt: skip
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return BertForMaskedLM(cfg), {"input_ids": ids, "labels": ids}, None


def bert_classifier(size, seed, length=16, batch=4):
    """The CLS token's pooled output, classified: the gradient enters at one position."""
    from transformers import BertConfig, BertForSequenceClassification

    _quiet()
    torch.manual_seed(seed)
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=(2, 4)[size], num_attention_heads=2,
        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=max(64, length),
        num_labels=3,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 100)
    ids, labels = _ids(g, batch, length), torch.randint(0, 3, (batch,), generator=g)
    return BertForSequenceClassification(cfg), {"input_ids": ids, "labels": labels}, None


def llama(size, seed, length=16, batch=4):
    from transformers import LlamaConfig, LlamaForCausalLM

    _quiet()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=(2, 4)[size],
        num_attention_heads=2, num_key_value_heads=2, vocab_size=VOCAB,
        max_position_embeddings=max(64, length), bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return LlamaForCausalLM(cfg), {"input_ids": ids, "labels": ids}, None


def t5(size, seed, length=16, batch=4):
    from transformers import T5Config, T5ForConditionalGeneration

    _quiet()
    torch.manual_seed(seed)
    cfg = T5Config(
        d_model=32, d_ff=64, d_kv=16, num_layers=(2, 4)[size], num_heads=2,
        vocab_size=VOCAB, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 100)
    ids, labels = _ids(g, batch, length), _ids(g, batch, length // 2)
    decoder = torch.cat([torch.zeros(batch, 1, dtype=torch.long), labels[:, :-1]], 1)
    inputs = {"input_ids": ids, "decoder_input_ids": decoder, "labels": labels}
    return T5ForConditionalGeneration(cfg), inputs, None


def vit(size, seed, image=32, batch=4, layers=None):
    from transformers import ViTConfig, ViTForImageClassification

    _quiet()
    torch.manual_seed(seed)
    cfg = ViTConfig(
        image_size=image, patch_size=8, hidden_size=32, num_hidden_layers=layers or (2, 4)[size],
        num_attention_heads=2, intermediate_size=64, num_labels=10, num_channels=3,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, 3, image, image, generator=g)
    labels = torch.randint(0, 10, (batch,), generator=g)
    return ViTForImageClassification(cfg), {"pixel_values": x, "labels": labels}, None


def torch_transformer(size, seed, norm_first=False, decoder=False, length=16, batch=4, layers=None):
    torch.manual_seed(seed)
    model = TorchLM(layers or (2, 4)[size], norm_first=norm_first, decoder=decoder)
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return model, ids, ids


# -- convolutional ---------------------------------------------------------------------------


def _images(seed, batch, image, classes=10):
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, 3, image, image, generator=g)
    return x, torch.randint(0, classes, (batch,), generator=g)


def resnet(size, seed, image=32, batch=8, blocks=None):
    torch.manual_seed(seed)
    model = ResNet(blocks or ((1, 1, 1), (2, 2, 2))[size])
    return model, *_images(seed, batch, image)


def mixer(size, seed, image=32, batch=8, depth=None):
    torch.manual_seed(seed)
    return Mixer(depth or (2, 4)[size], image), *_images(seed, batch, image)


def convnext(size, seed, image=32, batch=8):
    torch.manual_seed(seed)
    model = ConvNeXt(((1, 1), (2, 2, 2))[size], ((16, 32), (16, 32, 64))[size])
    return model, *_images(seed, batch, image)


def unet(size, seed, image=32, batch=4):
    torch.manual_seed(seed)
    model = UNet((2, 3)[size])
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, 3, image, image, generator=g)
    return model, x, torch.randint(0, 3, (batch, image, image), generator=g)


def lenet(size, seed, act=nn.ReLU, keras=False, batch=32):
    """LeNet-5's layout (conv-pool-conv-pool-dense-dense) on 28×28 inputs in [0, 1], as the
    small Keras-era benchmark models are: PyTorch's init, or Keras's (Glorot uniform, zero
    bias). The old per-layer ratio read these "vanishing" (1e-3-5e-3) though they train."""
    torch.manual_seed(seed)
    c1, c2 = ((6, 16), (12, 32))[size]
    model = nn.Sequential(
        nn.Conv2d(1, c1, 5, padding=2), act(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), act(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(c2 * 25, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10),
    )  # fmt: skip
    if keras:
        for m in model:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.rand(batch, 1, 28, 28, generator=g)
    return model, x, torch.randint(0, 10, (batch,), generator=g)


# -- recurrent -------------------------------------------------------------------------------


def lstm_lm(size, seed, length=32, batch=4):
    torch.manual_seed(seed)
    ids = _ids(torch.Generator().manual_seed(seed + 100), batch, length)
    return LSTMLM((1, 2)[size]), ids, ids


def gru_classifier(size, seed, length=32, batch=8):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 100)
    ids = _ids(g, batch, length)
    return GRUClassifier((1, 2)[size]), ids, torch.randint(0, 4, (batch,), generator=g)


HEALTHY = {
    "gpt2": gpt2,
    "bert": bert,
    "bert_classifier": bert_classifier,
    "llama": llama,
    "t5": t5,
    "vit": vit,
    "torch_post_ln": functools.partial(torch_transformer, norm_first=False),
    "torch_pre_ln": functools.partial(torch_transformer, norm_first=True),
    "torch_decoder_post_ln": functools.partial(torch_transformer, norm_first=False, decoder=True),
    "torch_decoder_pre_ln": functools.partial(torch_transformer, norm_first=True, decoder=True),
    "resnet": resnet,
    "mixer": mixer,
    "convnext": convnext,
    "unet": unet,
    "lenet": lenet,
    "lenet_tanh_keras": functools.partial(lenet, act=nn.Tanh, keras=True),
    "lenet_sigmoid_keras": functools.partial(lenet, act=nn.Sigmoid, keras=True),
    "lstm_lm": lstm_lm,
    "gru_classifier": gru_classifier,
}


# -- broken: each builder also returns what the diagnosis must say -----------------------------


def _normal_(model, std=1.0, only=None):
    """Every weight matrix (and conv kernel) N(0, std²); biases left as they are."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and (only is None or only(name)):
                p.normal_(0.0, std)
    return model


def deep_post_ln(size, seed, length=16, batch=4):
    """Xiong et al. 2020 / Wang et al. 2022: 24 or 48 Post-LN layers need warm-up."""
    layers = (24, 48)[size]
    return torch_transformer(0, seed, norm_first=False, length=length, batch=batch, layers=layers)


def transformer_unit_gaussian(size, seed):
    model, inputs, target = gpt2(size, seed)
    return _normal_(model), inputs, target


def resnet_no_norm_unit_gaussian(size, seed, image=32, batch=8):
    torch.manual_seed(seed)
    model = _normal_(ResNet(((1, 1, 1), (2, 2, 2))[size], norm=False))
    return model, *_images(seed, batch, image)


def mixer_saturating(size, seed, image=32, batch=8):
    """Tanh MLPs with N(0, 1) weights: pre-activations of size ~√fan_in."""
    torch.manual_seed(seed)
    model = Mixer((2, 4)[size], image, act=nn.Tanh)
    _normal_(model, only=lambda n: ".fc" in n)
    return model, *_images(seed, batch, image)


def vit_saturating(size, seed, image=32, batch=4):
    from transformers import ViTConfig, ViTForImageClassification

    _quiet()
    torch.manual_seed(seed)
    cfg = ViTConfig(
        image_size=image, patch_size=8, hidden_size=32, num_hidden_layers=(2, 4)[size],
        num_attention_heads=2, intermediate_size=64, num_labels=10, hidden_act="sigmoid",
        initializer_range=1.0,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, 3, image, image, generator=g)
    labels = torch.randint(0, 10, (batch,), generator=g)
    return ViTForImageClassification(cfg), {"pixel_values": x, "labels": labels}, None


def lstm_default_long(size, seed, batch=8, lengths=(200, 400), **cell):
    """PyTorch's LSTM (forget-gate bias 0) over 200/400 steps, or LSTMClassifier(**cell)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, lengths[size], 16, generator=g)
    return LSTMClassifier(**cell), x, torch.randint(0, 4, (batch,), generator=g)


def _long(kind, **cell):  # the other recurrent cases, at the layer named after their cell
    name = cell.get("cell", "LSTM").lower()
    return functools.partial(lstm_default_long, **cell), {kind}, lambda layer: layer == name


def _conv_stack(depth, act, width=16, bias=None, classes=10):
    layers, c = [], 3
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), act()]
        c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
    model = nn.Sequential(*layers)
    if bias is not None:
        for m in model:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.constant_(m.bias, bias)
    return model


def sigmoid_cnn(size, seed, image=16, batch=8):
    torch.manual_seed(seed)
    return _conv_stack((10, 16)[size], nn.Sigmoid), *_images(seed, batch, image)


def relu_cnn_bias_minus_3(size, seed, image=16, batch=16):
    torch.manual_seed(seed)
    return _conv_stack((4, 6)[size], nn.ReLU, bias=-3.0), *_images(seed, batch, image)


def _mlp(depth, width, act, d_in=16, d_out=10):
    layers = [nn.Linear(d_in, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, d_out))


def _vectors(seed, batch=64, d_in=16, classes=10):
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randn(batch, d_in, generator=g), torch.randint(0, classes, (batch,), generator=g)


def narrow_relu(size, seed):
    """16 (or 24) He-initialised ReLU layers of width 5 (Hanin & Rolnick 2018)."""
    torch.manual_seed(seed)
    model = _mlp((16, 24)[size], 5, nn.ReLU)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model, *_vectors(seed)


def gelu_unit_gaussian(size, seed):
    torch.manual_seed(seed)
    return _normal_(_mlp((10, 20)[size], 64, nn.GELU)), *_vectors(seed)


def sigmoid_mlp_standard(size, seed):
    """Glorot & Bengio 2010's case: sigmoid, U(-1/√n, 1/√n)."""
    torch.manual_seed(seed)
    model = _mlp((10, 20)[size], 64, nn.Sigmoid)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound)
                m.bias.zero_()
    return model, *_vectors(seed)


def relu_mlp_unit_gaussian(size, seed):
    torch.manual_seed(seed)
    return _normal_(_mlp((10, 20)[size], 64, nn.ReLU)), *_vectors(seed)


# name -> (builder, kinds it must report, where: a predicate on the finding's layer)


BROKEN = {
    "deep_post_ln": (deep_post_ln, {"vanishing"}, lambda layer: layer == "stack.layers.0"),
    "transformer_unit_gaussian": (transformer_unit_gaussian, None, None),
    "resnet_no_norm_unit_gaussian": (resnet_no_norm_unit_gaussian, {"exploding"}, None),
    "mixer_saturating": (mixer_saturating, {"saturated"}, None),
    "vit_saturating": (vit_saturating, {"saturated"}, None),
    "lstm_default_long": (lstm_default_long, {"vanishing"}, lambda layer: layer == "lstm"),
    "lstm_forget_bias_minus_3": _long("vanishing", lengths=(32, 64), forget_bias=-3.0),
    "rnn_default_long": _long("vanishing", cell="RNN"),
    "rnn_large_recurrent": _long("exploding", lengths=(50, 100), cell="RNN", rec_std=4.0),
    "sigmoid_cnn": (sigmoid_cnn, {"vanishing"}, lambda layer: layer == "0"),
    "relu_cnn_bias_minus_3": (relu_cnn_bias_minus_3, {"dead_units"}, None),
    "narrow_relu": (narrow_relu, None, None),
    "gelu_unit_gaussian": (gelu_unit_gaussian, {"exploding"}, lambda layer: layer == "0"),
    "sigmoid_mlp_standard": (sigmoid_mlp_standard, {"vanishing"}, lambda layer: layer == "0"),
    "relu_mlp_unit_gaussian": (relu_mlp_unit_gaussian, {"exploding"}, lambda layer: layer == "0"),
}


__all__ = ["BROKEN", "HEALTHY"]
