"""Which activation follows each layer: the gain ``nonlinearity="auto"`` uses.

With an example input the model runs once and the modules are ordered as they
ran; without one, registration order is used (which is the order of an
``nn.Sequential``). After each layer with weights, modules that do not change
the nonlinearity (dropout, normalisation, pooling, reshapes) are skipped; the
next module is the layer's activation if it is one, else the layer is followed
by a linear map (gain 1), as is the last layer. Activations applied as
functions inside ``forward`` cannot be seen, except for the Transformer layers
whose ``activation`` attribute names them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import InvalidInputError

_TRANSPARENT = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.ChannelShuffle,
    *(getattr(nn, n) for n in ("RMSNorm",) if hasattr(nn, n)),
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
)
_NOT_ELEMENTWISE = (
    nn.MultiheadAttention,
    nn.Softmax,
    nn.Softmin,
    nn.LogSoftmax,
    nn.Softmax2d,
    nn.GLU,
)
_FUNCTIONAL_ACTIVATION_OWNERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def has_direct_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def is_activation(module: nn.Module) -> bool:
    """An elementwise activation: torch's activation modules, or a parameterless leaf of ours."""
    if isinstance(module, (*_TRANSPARENT, *_NOT_ELEMENTWISE)):
        return False
    if type(module).__module__ == "torch.nn.modules.activation":
        return True
    leaf = next(module.children(), None) is None
    return (
        leaf
        and not has_direct_parameters(module)
        and not type(module).__module__.startswith("torch.nn")
    )


def is_transparent(module: nn.Module) -> bool:
    return isinstance(module, _TRANSPARENT)


def _candidates(model: nn.Module) -> list[nn.Module]:
    """Modules that matter for ordering: those with weights, and leaves."""
    return [
        m for m in model.modules() if has_direct_parameters(m) or next(m.children(), None) is None
    ]


def execution_order(model: nn.Module, example_input=None) -> list[nn.Module]:
    """Candidate modules in the order they first run on ``example_input`` (else registration);
    modules that did not run come last, in registration order."""
    ran = ran_modules(model, example_input)
    ran_ids = {id(m) for m in ran}
    return ran + [m for m in _candidates(model) if id(m) not in ran_ids]


def ran_modules(model: nn.Module, example_input=None) -> list[nn.Module]:
    """Candidate modules in the order they first ran on ``example_input``; without an
    example, all candidates in registration order."""
    candidates = _candidates(model)
    if example_input is None:
        return candidates
    seen: dict[int, nn.Module] = {}

    def record(module, _args):
        seen.setdefault(id(module), module)

    handles = [m.register_forward_pre_hook(record) for m in candidates]
    try:
        run_example(model, example_input, "or leave it out to use registration order")
    finally:
        for handle in handles:
            handle.remove()
    return list(seen.values())


def run_example(model: nn.Module, example_input, hint: str = "") -> None:
    """One forward of ``model`` on ``example_input`` (a tensor, a tuple of positional inputs
    or a dict of keyword inputs) under ``no_grad``; a failure is an InvalidInputError."""
    try:
        with torch.no_grad():
            if isinstance(example_input, dict):
                model(**example_input)
            elif isinstance(example_input, (tuple, list)):
                model(*example_input)
            else:
                model(example_input)
    except Exception as err:
        raise InvalidInputError(
            f"the example input could not run through the model ({type(err).__name__}: {err}); "
            f"pass a batch the model accepts{', ' + hint if hint else ''}"
        ) from err


def following_activations(
    model: nn.Module, example_input=None
) -> dict[nn.Module, nn.Module | Callable | None]:
    """Map each module with weights to the activation that follows it (None: linear)."""
    order = ran_modules(model, example_input)
    result: dict[nn.Module, nn.Module | Callable | None] = {}
    for i, module in enumerate(order):
        if not has_direct_parameters(module) or module in result:
            continue
        follower = None
        for later in order[i + 1 :]:
            if is_transparent(later):
                continue
            if is_activation(later):
                follower = later
            break
        result[module] = follower
    for owner in model.modules():
        if isinstance(owner, _FUNCTIONAL_ACTIVATION_OWNERS):
            result[owner.linear1] = owner.activation
    return result


def describe(activation) -> str:
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    if isinstance(activation, nn.Module):
        return type(activation).__name__
    return getattr(activation, "__name__", type(activation).__name__)


def check_is_module(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InvalidInputError(
            f"expected a torch.nn.Module, got {type(model).__name__}; to initialise a tensor "
            f"call a function of gradprobe.init.functional"
        )
    if next(model.parameters(), None) is None:
        raise InvalidInputError(
            f"{type(model).__name__} has no parameters, so there is nothing to initialise"
        )
    return model
