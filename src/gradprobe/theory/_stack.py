"""Read a model as a plain stack of affine layers and elementwise activations.

``torch.fx`` traces the forward pass, so activations called functionally
(``F.relu(x)``) are seen and skip connections are refused instead of silently
mispredicted. A model fx cannot trace is accepted only when it is a tree of
``nn.Sequential`` (then registration order is execution order).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
from torch import nn

from ..errors import InvalidInputError
from ._activations import Activation, resolve

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PASS_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_PASS_METHODS = {"view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze", "permute"}
_PASS_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_META = {"size", "dim", "shape", "numel"}


@dataclass(frozen=True)
class Affine:
    """One Linear/Conv layer: σ_w² = fan_in · mean(W²), σ_b² = mean(b²), read from the weights."""

    name: str
    kind: str
    fan_in: int
    fan_out: float  # units of the layer below each unit feeds, per output position
    width: int  # units per position: out_features, or out_channels for a conv
    sigma_w2: float
    sigma_b2: float


def _affine(name: str, m: Any) -> Affine:  # Linear or ConvNd (torch types them as Module)
    weight = m.weight
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise InvalidInputError(
            f"layer {name!r} ({type(m).__name__}) is not initialised yet: run one forward pass"
            " with a real batch first, then predict"
        )
    if weight.device.type == "meta":
        raise InvalidInputError(
            f"layer {name!r} is on the 'meta' device, which holds no weight values to read;"
            " materialise the model (model.to_empty(device='cpu') and an init) first"
        )
    w = weight.detach().double()
    if w.numel() == 0:
        raise InvalidInputError(f"layer {name!r} has no weights (a dimension of size 0)")
    if not torch.isfinite(w).all() or (m.bias is not None and not torch.isfinite(m.bias).all()):
        raise InvalidInputError(
            f"layer {name!r} has NaN/Inf weights or biases: there is no scale to predict from;"
            " re-initialise it (gp.init.apply) or find where training made it non-finite"
        )
    fan_in = w[0].numel()
    if isinstance(m, nn.Linear):
        fan_out, width = float(m.out_features), m.out_features
    else:  # each input position reaches C_out/groups · Πk / Πstride outputs
        fan_out = m.out_channels / m.groups * math.prod(m.kernel_size) / math.prod(m.stride)
        width = m.out_channels
    bias = 0.0 if m.bias is None else float(m.bias.detach().double().pow(2).mean())
    sigma_w2 = fan_in * float(w.pow(2).mean())
    return Affine(name, type(m).__name__, fan_in, fan_out, width, sigma_w2, bias)


def _refuse(name: str, what: str) -> InvalidInputError:
    return InvalidInputError(
        f"theory.predict handles plain stacks of Linear/Conv layers and elementwise activations;"
        f" {name!r} is {what}. Predict a sub-stack (e.g. model[:k]) or measure with gp.check."
    )


def _module_step(name: str, m: nn.Module):
    if isinstance(m, _AFFINE):
        return _affine(name, m)
    if isinstance(m, _PASS_MODULES):
        return None
    if isinstance(m, nn.PReLU) and m.weight.numel() == 1:  # one slope: an activation
        return resolve(m)
    if any(True for _ in m.parameters()) or any(True for _ in m.buffers()):
        raise _refuse(name, f"a {type(m).__name__} (not an affine layer or an activation)")
    try:
        return resolve(m)
    except Exception as err:
        raise _refuse(name, f"a {type(m).__name__}, not elementwise") from err


def _sequential_leaves(model: nn.Module, prefix: str = ""):
    if not isinstance(model, (nn.Sequential, nn.ModuleList)) or not len(model):
        yield prefix or type(model).__name__, model
        return
    for key, child in model.named_children():
        yield from _sequential_leaves(child, f"{prefix}.{key}" if prefix else key)


def _node_step(gm: torch.fx.GraphModule, node: torch.fx.Node):
    if node.op == "call_module":
        return _module_step(str(node.target), gm.get_submodule(str(node.target)))
    extra_args = [a for a in node.args[1:] if not isinstance(a, torch.fx.Node)]
    if node.op == "call_method":
        if node.target in _PASS_METHODS:
            return None
        fn = getattr(torch, str(node.target), None)
    else:
        if node.target in _PASS_FUNCTIONS:
            return None
        fn = node.target
    if fn is None or len(extra_args) != len(node.args) - 1:
        raise _refuse(node.name, f"the operation {node.target!r}")
    kwargs = dict(node.kwargs)
    if not extra_args and not kwargs:
        try:
            return resolve(fn)
        except Exception as err:
            raise _refuse(node.name, f"the operation {node.target!r}, not elementwise") from err
    try:
        act = resolve(lambda x: fn(x, *extra_args, **kwargs))
    except Exception as err:
        raise _refuse(node.name, f"the operation {node.target!r}, not elementwise") from err
    return Activation(getattr(fn, "__name__", str(fn)), act.fn)


def _traced_steps(model: nn.Module):
    gm = torch.fx.symbolic_trace(model)
    current, meta, steps = None, set(), []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise _refuse(node.name, "a second input")
            current = node
            continue
        inputs = [a for a in node.all_input_nodes if a not in meta]
        if node.op == "output":
            if inputs != [current]:
                raise _refuse("output", "not the last layer's output")
            break
        is_meta = node.target in _META or (node.target is operator.getitem and node.args[0] in meta)
        if node.op == "get_attr" or is_meta or (node.target is getattr and node.args[1] in _META):
            meta.add(node)
            continue
        if inputs != [current]:
            raise _refuse(node.name, "an operation on more than the previous layer (a skip?)")
        step = _node_step(gm, node)
        if step is not None:
            steps.append(step)
        current = node
    return steps


def stack_steps(model: nn.Module) -> list:
    """Affine and Activation steps of ``model`` in execution order; an error for anything else."""
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"predict needs a torch nn.Module, got {type(model).__name__}")
    if isinstance(model, _AFFINE):  # one layer on its own (fx would trace into its forward)
        return [_affine(type(model).__name__, model)]
    try:
        steps = _traced_steps(model)
    except InvalidInputError:
        raise
    except Exception as err:
        if not isinstance(model, nn.Sequential):
            raise _refuse(type(model).__name__, f"a model torch.fx cannot trace ({err})") from err
        steps = [s for n, m in _sequential_leaves(model) if (s := _module_step(n, m)) is not None]
    if not any(isinstance(s, Affine) for s in steps):
        raise _refuse(type(model).__name__, "a model without Linear or Conv layers")
    return steps
