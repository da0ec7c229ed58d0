"""Remedies that fit the cause: the activation in use, the architecture, the layer type."""

from __future__ import annotations

from .context import Context
from .finding import Remedy


def reinit(ctx: Context) -> Remedy:
    """The initialisation that fits the activations the model uses."""
    kinds = ctx.activation_kinds
    if kinds & {"relu", "leakyrelu"}:
        return Remedy(
            "re-initialise with Kaiming/He (gain √2 for ReLU, He et al. 2015) or LSUV",
            "kaiming_normal",
            "gp.init.apply(model, 'kaiming_normal')",
        )
    if "sigmoid" in kinds:
        return Remedy(
            "sigmoid's slope is at most 1/4 and its mean is 0.5, so gradients shrink at "
            "every layer (Glorot & Bengio 2010): use tanh or ReLU, or at least Xavier init "
            "and batch normalisation",
            "xavier_normal",
            "gp.init.apply(model, 'xavier_normal')",
        )
    if kinds & {"tanh", "hardtanh", "softsign"}:
        return Remedy(
            "re-initialise with Xavier/Glorot (gain 5/3 before tanh) or LSUV",
            "xavier_normal",
            "gp.init.apply(model, 'xavier_normal')",
        )
    if kinds & {"gelu", "silu"}:
        return Remedy(
            "re-initialise with Kaiming using the activation's numeric gain, or LSUV",
            "kaiming_normal",
            "gp.init.apply(model, 'kaiming_normal')",
        )
    return Remedy(
        "re-initialise with a variance-preserving scheme (LeCun/Kaiming for the "
        "activation used, or LSUV on a data batch)",
        "lsuv",
        "gp.init.apply(model, 'lsuv', data=batch)",
    )


def with_architecture(ctx: Context, remedy: Remedy) -> Remedy:
    """Add the architectural advice for a deep plain stack (it cannot be applied for you)."""
    if ctx.depth >= 10 and not ctx.has_normalisation:
        text = (
            f"{remedy.text}; the network is a plain stack of {ctx.depth} weight layers "
            f"without normalisation: residual connections or batch/layer normalisation make "
            f"it robust to the init (He et al. 2016; Ioffe & Szegedy 2015)"
        )
        return Remedy(text, remedy.scheme, remedy.code)
    return remedy


def recurrent(ctx: Context, module_type: str) -> Remedy:
    if module_type == "RNN":
        return Remedy(
            "a vanilla RNN forgets over long sequences: use an LSTM or GRU, or an orthogonal "
            "(or identity, IRNN) recurrent init with gradient clipping",
            "orthogonal",
            "gp.init.apply(model, 'xavier_uniform', recurrent='orthogonal'); "
            "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)",
        )
    if module_type == "LSTM":
        return Remedy(
            "PyTorch initialises the LSTM forget-gate bias to 0, so the gate sits near 0.5 "
            "and the memory halves each step: set the forget-gate bias to 1–3 (Gers et al. "
            "2000; Jozefowicz et al. 2015)",
            None,
            "gp.init.apply(model, 'xavier_uniform', recurrent='orthogonal', forget_bias=1.0)",
        )
    return Remedy(
        "the GRU's update gate starts near 0.5, so the memory decays each step: bias the "
        "update gate towards keeping the state, use an orthogonal recurrent init, and clip "
        "gradients",
        "orthogonal",
        "gp.init.apply(model, 'xavier_uniform', recurrent='orthogonal')",
    )
