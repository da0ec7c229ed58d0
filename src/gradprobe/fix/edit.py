"""Model edits that a remedy's code calls: ``gp.fix.swap_activations``, ``insert_norm``,
``set_forget_bias``, ``set_norm_first``.

Each one is what the remedy's code text says, so ``trial.apply(model)`` and executing
``trial.code`` do the same thing. Each raises a :class:`~gradprobe.errors.InvalidInputError`
that says why when the model has nothing it can change (e.g. activations applied as functions
in ``forward``, which no module swap can reach).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from ..init.activations import is_activation

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    *(getattr(nn, n) for n in ("RMSNorm",) if hasattr(nn, n)),
)
_TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every elementwise activation module in ``model``."""
    return [(n, m) for n, m in model.named_modules() if n and is_activation(m)]


def _activation_class(name: str) -> Any:
    cls = getattr(nn, name, None)
    ok = isinstance(cls, type) and cls.__module__ == "torch.nn.modules.activation"
    if not ok or cls in (nn.MultiheadAttention, nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.GLU):
        raise InvalidInputError(
            f"{name!r} is not an activation class of torch.nn; pass e.g. 'ReLU', 'GELU' or "
            "'LeakyReLU'"
        )
    return cls


def output_activations(model: nn.Module) -> set[int]:
    """ids of the activation modules registered after the model's last weight layer: the
    output's own (a final Sigmoid for BCE, a Tanh bounding a regression), not hidden ones."""
    modules = list(model.modules())
    last = max((i for i, m in enumerate(modules) if isinstance(m, _WEIGHT_LAYERS)), default=-1)
    return {id(m) for m in modules[last + 1 :] if is_activation(m)}


def swap_activations(
    model: nn.Module,
    to: str,
    *,
    only: Iterable[str] | None = None,
    hidden_only: bool = True,
    keep: Iterable[str] = (),
    **options,
) -> nn.Module:
    """Replace every hidden activation module (of the types named in ``only``: class names,
    e.g. ``["Sigmoid"]``) with ``torch.nn.<to>(**options)``, in place; returns the model.
    ``hidden_only``: leave the activations after the last weight layer (the output's);
    ``keep``: qualified module names left as they are (gates, whose product gates a tensor).

    >>> swap_activations(nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()), "ReLU")  # doctest: +SKIP
    """
    cls = _activation_class(to)
    wanted = None if only is None else set(only)
    kept = set(keep)
    keep_ids = output_activations(model) if hidden_only else set()
    swapped = 0
    for prefix, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if not is_activation(child) or id(child) in keep_ids:
                continue
            if (f"{prefix}.{name}" if prefix else name) in kept:
                continue
            if wanted is not None and type(child).__name__ not in wanted:
                continue
            parent._modules[name] = cls(**options)  # keeps the Sequential's order
            swapped += 1
    if not swapped:
        what = f" of type {', '.join(sorted(wanted))}" if wanted else ""
        raise InvalidInputError(
            f"{type(model).__name__} has no activation module{what} to swap; an activation "
            "applied as a function in forward() (torch.sigmoid(x), F.relu(x)) cannot be "
            "swapped from outside: use an nn.Module for it (nn.Sigmoid()) or change forward"
        )
    return model


def _norm_for(layer: Any, kind: str) -> nn.Module:
    weight = layer.weight
    device, dtype = weight.device, weight.dtype
    if isinstance(layer, nn.Linear):
        features = layer.out_features
        if kind == "batch":
            return nn.BatchNorm1d(features, device=device, dtype=dtype)
        return nn.LayerNorm(features, device=device, dtype=dtype)
    channels = int(layer.out_channels)
    if kind == "layer":  # LayerNorm over (C, *spatial)
        return nn.GroupNorm(1, channels, device=device, dtype=dtype)
    batch: dict[type, Any] = {
        nn.Conv1d: nn.BatchNorm1d,
        nn.Conv2d: nn.BatchNorm2d,
        nn.Conv3d: nn.BatchNorm3d,
    }
    return batch[type(layer)](channels, device=device, dtype=dtype)


def _check_kind(kind: str) -> None:
    if kind not in ("batch", "layer"):
        raise InvalidInputError(f"kind must be 'batch' or 'layer', got {kind!r}")


def _flat_weight_layers(seq: nn.Sequential) -> list[nn.Module]:
    out: list[nn.Module] = []
    for child in seq:
        if isinstance(child, nn.Sequential):
            out.extend(_flat_weight_layers(child))
        elif isinstance(child, _WEIGHT_LAYERS):
            out.append(child)
    return out


def _insert_sequential(seq: nn.Sequential, kind: str, last: nn.Module) -> nn.Sequential:
    children = list(seq.named_children())
    out: list[tuple[str, nn.Module]] = []
    for i, (name, child) in enumerate(children):
        if isinstance(child, nn.Sequential):
            out.append((name, _insert_sequential(child, kind, last)))
            continue
        out.append((name, child))
        following = children[i + 1][1] if i + 1 < len(children) else None
        weighted = isinstance(child, _WEIGHT_LAYERS) and child is not last
        if weighted and not isinstance(following, _NORMS):
            out.append((f"{name}_norm", _norm_for(child, kind)))
    return nn.Sequential(OrderedDict(out))


def _insert_traced(model: nn.Module, kind: str) -> nn.Module:
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as err:
        raise InvalidInputError(
            f"cannot insert normalisation into {type(model).__name__}: it is not an "
            f"nn.Sequential and torch.fx cannot trace it ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); add BatchNorm/LayerNorm "
            "after its weight layers in its own code"
        ) from None
    modules = dict(gm.named_modules())
    nodes = [
        n
        for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(modules.get(n.target), _WEIGHT_LAYERS)
    ]
    if len(nodes) < 2:
        raise InvalidInputError(
            f"{type(model).__name__} has fewer than two weight layers (Linear/Conv) called as "
            "modules: there is no hidden layer to normalise"
        )
    for node in nodes[:-1]:  # not after the output layer: it would fix the logits' scale
        users = list(node.users)
        single = len(users) == 1 and users[0].op == "call_module"
        if single and isinstance(modules.get(users[0].target), _NORMS):
            continue
        name = f"{str(node.target).replace('.', '_')}_norm"
        gm.add_submodule(name, _norm_for(modules[node.target], kind))
        with gm.graph.inserting_after(node):
            norm = gm.graph.call_module(name, (node,))
        node.replace_all_uses_with(norm, delete_user_cb=lambda user, norm=norm: user is not norm)
    gm.recompile()
    return gm


def insert_norm(model: nn.Module, kind: str = "batch") -> nn.Module:
    """A model with a normalisation layer after every weight layer but the last one
    (BatchNorm, Ioffe & Szegedy 2015, or LayerNorm/GroupNorm(1, C), Ba et al. 2016), before
    the activation; layers already followed by one are left alone.

    ``nn.Sequential`` (nested ones too) is rebuilt around the same layers; any other model is
    traced with ``torch.fx`` and returned as a ``GraphModule``. The model passed in is not
    changed: use the returned one (``model = insert_norm(model)``).
    """
    _check_kind(kind)
    if isinstance(model, nn.Sequential):
        layers = _flat_weight_layers(model)
        if len(layers) < 2:
            raise InvalidInputError(
                "the nn.Sequential has fewer than two Linear/Conv layers: there is no hidden "
                "layer to normalise"
            )
        return _insert_sequential(model, kind, layers[-1])
    return _insert_traced(model, kind)


def set_forget_bias(model: nn.Module, value: float = 1.0) -> nn.Module:
    """Set every LSTM's forget-gate bias to ``value`` (b_ih's f chunk = value, b_hh's = 0),
    in place (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1); returns the model."""
    found = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, (nn.LSTM, nn.LSTMCell)) or not module.bias:
                continue
            for name, p in module.named_parameters():
                if name.startswith(("bias_ih", "bias_hh")):
                    h = p.shape[0] // 4  # gates i, f, g, o
                    p[h : 2 * h] = value if name.startswith("bias_ih") else 0.0
                    found += 1
    if not found:
        raise InvalidInputError(
            f"{type(model).__name__} has no nn.LSTM/nn.LSTMCell with biases: there is no "
            "forget-gate bias to set"
        )
    return model


def set_norm_first(model: nn.Module) -> nn.Module:
    """Pre-LN: ``norm_first=True`` on every torch Transformer encoder/decoder layer, in place
    (Xiong et al. 2020: no warm-up needed, gradients well-behaved at init); returns the model."""
    layers = [m for m in model.modules() if isinstance(m, _TRANSFORMER_LAYERS)]
    if not layers:
        raise InvalidInputError(
            f"{type(model).__name__} has no nn.TransformerEncoderLayer/DecoderLayer; "
            "Pre-LN elsewhere means moving the LayerNorm before each sublayer in its code"
        )
    for layer in layers:
        layer.norm_first = True
    return model
