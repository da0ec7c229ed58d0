"""Fixup (Zhang, Dauphin & Ma 2019): train deep residual nets without normalisation.

The initialisation part of Fixup, for any model with residual blocks:

1. the last weight layer of the model (the classifier) and the last weight layer of
   each residual branch are set to zero, so every block starts as the identity;
2. every other weight layer gets He init (``kaiming_normal``, with the gain of the
   activation that follows it), and the layers inside residual branches are scaled by
   L^(−1/(2m−2)), L the number of residual blocks, m the number of weight layers in a
   branch (for m = 1 the only layer is the zeroed one).

Fixup's scalar multipliers and biases are architectural and are not added here.

Blocks are found automatically as the outermost non-container modules, repeated (two or
more of the same class), with at least two weight layers; layers named like a shortcut
(``downsample``, ``shortcut``, ``skip``) belong to no branch. Pass ``blocks=`` (names of
block modules, or a dict block name -> its branch layers in order) to say it exactly.
"""

from __future__ import annotations

import re
from collections import Counter

import torch
from torch import nn

from ..errors import InvalidInputError
from .activations import execution_order
from .policies import initialize
from .report import InitReport
from .schemes import Scheme, register

_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_SHORTCUT = re.compile(r"(^|\.)(downsample|shortcut|skip)\w*(\.|$)")


def _auto_blocks(model: nn.Module) -> list[str]:
    def weight_layers(module):
        return sum(isinstance(m, _WEIGHT_LAYERS) for m in module.modules())

    candidates = [
        (name, m)
        for name, m in model.named_modules()
        if name and not isinstance(m, (*_CONTAINERS, *_WEIGHT_LAYERS)) and weight_layers(m) >= 2
    ]
    counts = Counter(type(m) for _, m in candidates)
    repeated = [name for name, m in candidates if counts[type(m)] >= 2]
    return [n for n in repeated if not any(n.startswith(o + ".") for o in repeated if o != n)]


def fixup(
    model: nn.Module,
    *,
    blocks: list[str] | dict[str, list[str]] | None = None,
    nonlinearity="auto",
    example_input=None,
    generator: torch.Generator | None = None,
    bias="zeros",
    policy=None,
) -> InitReport:
    """Fixup's initialisation (see module docstring); returns what was done."""
    report = initialize(
        model,
        "kaiming_normal",
        nonlinearity,
        bias=bias,
        example_input=example_input,
        policy=policy,
        generator=generator,
    )
    report.scheme = "fixup"
    modules = dict(model.named_modules())
    order = {id(m): i for i, m in enumerate(execution_order(model, example_input))}
    branches: dict[str, list[str]] = {}
    for block in (blocks or _auto_blocks(model)) if not isinstance(blocks, dict) else blocks:
        if block not in modules:
            raise InvalidInputError(f"fixup: no module named {block!r} in the model")
        if isinstance(blocks, dict):
            branches[block] = list(blocks[block])
            continue
        inner = [
            name
            for name, m in modules[block].named_modules()
            if isinstance(m, _WEIGHT_LAYERS) and not _SHORTCUT.search(name)
        ]
        inner.sort(key=lambda n: order.get(id(modules[block].get_submodule(n)), 0))
        branches[block] = inner
    if not branches:
        raise InvalidInputError(
            "fixup found no residual blocks (repeated modules with two or more weight layers); "
            "pass blocks=['layer1.0', ...] naming them"
        )
    depth = len(branches)
    scaled, zeroed = [], []
    with torch.no_grad():
        for block, layers in branches.items():
            m = len(layers)
            for i, layer_name in enumerate(layers):
                layer = modules[block].get_submodule(layer_name)
                if i == m - 1:
                    layer.weight.zero_()
                    zeroed.append(f"{block}.{layer_name}")
                else:
                    layer.weight.mul_(depth ** (-1.0 / (2 * m - 2)))
                    scaled.append(f"{block}.{layer_name}")
        in_blocks = {id(x) for b in branches for x in modules[b].modules()}
        outside = [m for m in model.modules() if isinstance(m, _WEIGHT_LAYERS)]
        outside = [m for m in outside if id(m) not in in_blocks]
        if outside:
            head = max(outside, key=lambda m: order.get(id(m), -1))
            head.weight.zero_()
            if getattr(head, "bias", None) is not None:
                head.bias.zero_()
            zeroed.append(next(n for n, m in modules.items() if m is head))
    report.details = {"blocks": depth, "branches": branches, "scaled": scaled, "zeroed": zeroed}
    return report


register(
    Scheme(
        "fixup",
        fixup,
        "He init; branch layers × L^(−1/(2m−2)); last branch layer and classifier = 0",
        "Zhang, Dauphin & Ma 2019",
        kind="model",
    )
)
