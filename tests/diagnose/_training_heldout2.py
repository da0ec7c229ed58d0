"""A second batch of held-out training-time cases (issue 16): runs neither the corpus
(_training.py) nor the first held-out batch (_training_heldout.py) has, built to judge the
training-time diagnosis as an outside evaluator would. Same loop (``train``), same data
(the project's digits and MNIST-1D, the adding problem, the order-2 Markov tokens), same
DEFAULT ``gp.watch(model, optimizer=opt)``; other models, optimisers and failures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._training import RecurrentLM, ResNet, T, V, mlp, shift_batches
from ._training_heldout import (
    Held,
    SmallCNN,
    _adam,
    _adamw,
    _digits,
    _flat,
    _images,
    _Logits,
    _sgd,
    _tokens,
    _warmup_cosine,
    signal_batches,
    token_ce,
    train,
)

__all__ = ["BROKEN", "DROPPED", "HEALTHY", "Held", "train"]


# -- models ---------------------------------------------------------------------------------


def deep_mlp(depth: int, act=nn.ReLU, width: int = 64, kaiming: bool = False, d_in: int = 64):
    model = mlp((d_in, *([width] * depth), 10), act)
    if kaiming:
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return model


class EncoderLM(nn.Module):
    """torch's nn.TransformerEncoder as a causal LM: Post-LN (norm_first=False, torch's
    default) or Pre-LN, no final norm in the Post-LN case (its last block ends in one)."""

    def __init__(self, d=32, layers=6, heads=4, norm_first=False) -> None:
        super().__init__()
        self.wte = nn.Embedding(V, d)
        self.wpe = nn.Embedding(T, d)
        layer = nn.TransformerEncoderLayer(
            d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d) if norm_first else nn.Identity()
        self.head = nn.Linear(d, V)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        mask = nn.Transformer.generate_square_subsequent_mask(idx.shape[1])
        return self.head(self.norm(self.encoder(x, mask=mask, is_causal=True)))


class GNCNN(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.GroupNorm(4, c), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.GroupNorm(4, 2 * c), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * c, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


def _gpt2(layers=2, d=32, heads=4) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=V, n_positions=T, n_embd=d, n_layer=layers, n_head=heads,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return _Logits(GPT2LMHeadModel(cfg))


def _bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=20, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=80, num_labels=10,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return _Logits(BertForSequenceClassification(cfg))


# -- data -----------------------------------------------------------------------------------


def _shift(batch, gen):
    return shift_batches(batch, gen)


def _pixel_tokens(batch, gen):
    """The 8×8 digits as 64 tokens: each pixel's centred value in one of 16 bins (+ a [CLS]
    token 17 in front), for a BERT classifier."""
    x, y = _digits()
    edges = torch.linspace(-2.0, 2.0, 15)
    tok = torch.bucketize(x.flatten(1), edges) + 1  # 1..16
    tok = torch.cat([torch.full((tok.shape[0], 1), 17), tok], 1)
    while True:
        idx = torch.randint(0, tok.shape[0], (batch,), generator=gen)
        yield tok[idx], y[idx]


def _smooth_ce(out, y):
    return F.cross_entropy(out.float(), y, label_smoothing=0.1)


def _onecycle(total: int, peak: float):
    return lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, peak, total_steps=total)


# -- the cases ------------------------------------------------------------------------------

BROKEN = {
    # 15 sigmoid layers at PyTorch's default init: the gradient vanishes from the first step
    # (1e-12 at the lowest layer: SGD's steps round away in float32)
    "deep_sigmoid_sgd": Held(
        "deep_sigmoid_sgd", lambda: deep_mlp(15, nn.Sigmoid), _sgd(0.1), _flat
    ),
    # six Post-LN encoder layers (torch's default norm_first=False), Adam 3e-2, no warm-up
    "postln_encoder_adam": Held(
        "postln_encoder_adam", EncoderLM, _adam(3e-2), _shift, batch=16, loss=token_ce
    ),
    # an LSTM LM on the tokens at SGD lr 100 with no clipping: exploding through time
    "lstm_lm_sgd_no_clip": Held(
        "lstm_lm_sgd_no_clip", RecurrentLM, _sgd(100.0), _tokens, batch=16, loss=token_ce
    ),
    # a GroupNorm CNN at SGD lr 5: its first steps blow the loss up, then it sits at chance
    "cnn_sgd_lr_5": Held("cnn_sgd_lr_5", GNCNN, _sgd(5.0), _images),
    # a Pre-LN transformer LM at Adam 1e-6: it does not move
    "encoder_adam_1e-6": Held(
        "encoder_adam_1e-6",
        lambda: EncoderLM(layers=2, norm_first=True),
        _adam(1e-6),
        _tokens,
        batch=16,
        loss=token_ce,
    ),
    # a tanh MLP on MNIST-1D at SGD 2: the loss swings (and ends above its start)
    "tanh_sgd_2_swings": Held(
        "tanh_sgd_2_swings", lambda: mlp((40, 128, 128, 10), nn.Tanh), _sgd(2.0), signal_batches
    ),
    # plain SGD at lr 2 on a ReLU MLP: its units die and it learns nothing
    "dying_relu_sgd": Held("dying_relu_sgd", lambda: mlp((64, 128, 128, 10)), _sgd(2.0), _flat),
    # a Hugging Face GPT-2 (no QK-norm) at Adam 0.1 on the copy task: the logits grow
    "gpt2_hf_adam_0.1": Held(
        "gpt2_hf_adam_0.1", _gpt2, _adam(0.1), _shift, batch=16, loss=token_ce
    ),
}

#: tried and left out (docs/DIAGNOSIS.md, "second held-out training check"): seed-dependent
DROPPED = {
    # NaN at step 4 on seed 1; seed 0 stays finite (loss ~1e3) for 200 steps
    "cnn_sgd_1e3_momentum": Held(
        "cnn_sgd_1e3_momentum", SmallCNN, _sgd(1e3, momentum=0.9), _images
    ),
    # ReLU MLP at SGD 0.5 + momentum 0.9: stalled on seed 0, diverging on seed 1
    "mlp_sgd_momentum_swings": Held(
        "mlp_sgd_momentum_swings",
        lambda: mlp((40, 128, 128, 10)),
        _sgd(0.5, momentum=0.9),
        signal_batches,
    ),
    # six Post-LN layers at Adam 1e-2: learns to 0.16 on seed 0, not at all on seed 1
    "postln_encoder_adam_1e-2": Held(
        "postln_encoder_adam_1e-2", EncoderLM, _adam(1e-2), _shift, batch=16, loss=token_ce
    ),
}

HEALTHY = {
    # six Post-LN layers at Adam 5e-3 without warm-up still learn the copy task (to ~0.01);
    # 60 % of an FFN's ReLUs stop firing late in training with usual update ratios
    "postln_encoder_adam_5e-3": Held(
        "postln_encoder_adam_5e-3", EncoderLM, _adam(5e-3), _shift, batch=16, loss=token_ce
    ),
    "preln_encoder_adamw_warmup": Held(
        "preln_encoder_adamw_warmup",
        lambda: EncoderLM(layers=4, norm_first=True),
        _adamw(3e-3),
        _tokens,
        batch=16,
        loss=token_ce,
        scheduler=_warmup_cosine(20, 200),
    ),
    "resnet_sgd_wd": Held(
        "resnet_sgd_wd", lambda: ResNet(16, 3), _sgd(0.05, momentum=0.9, weight_decay=5e-4), _images
    ),
    "gru_lm_clipped": Held(
        "gru_lm_clipped",
        lambda: RecurrentLM("GRU"),
        _adam(3e-3),
        _tokens,
        batch=16,
        clip=1.0,
        loss=token_ce,
    ),
    "deep_relu_kaiming_adam": Held(
        "deep_relu_kaiming_adam", lambda: deep_mlp(12, kaiming=True), _adam(1e-3), _flat
    ),
    "bert_adamw_warmup": Held(
        "bert_adamw_warmup",
        _bert,
        _adamw(3e-3),
        _pixel_tokens,
        scheduler=_warmup_cosine(20, 200),
    ),
    "cnn_groupnorm_adam": Held("cnn_groupnorm_adam", GNCNN, _adam(1e-3), _images),
    "mlp_label_smoothing": Held(
        "mlp_label_smoothing",
        lambda: mlp((40, 128, 128, 10)),
        _adam(1e-3),
        signal_batches,
        loss=_smooth_ce,
    ),
    "cnn_onecycle_sgd": Held(
        "cnn_onecycle_sgd",
        GNCNN,
        _sgd(0.1, momentum=0.9),
        _images,
        scheduler=_onecycle(200, 0.1),
    ),
    "wide_mlp_batch_128": Held(
        "wide_mlp_batch_128", lambda: mlp((64, 512, 512, 10)), _adam(1e-3), _flat, batch=128
    ),
    "gpt2_hf_adamw_warmup": Held(
        "gpt2_hf_adamw_warmup",
        _gpt2,
        _adamw(3e-3),
        _tokens,
        batch=16,
        loss=token_ce,
        scheduler=_warmup_cosine(20, 200),
    ),
}
