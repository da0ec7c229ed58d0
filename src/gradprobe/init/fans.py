"""Fan-in and fan-out of a weight, by torch's convention or by the layer's role.

For a tensor of shape ``(out, in, *kernel)`` torch counts
``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``: the number
of inputs that reach one output unit, and of outputs one input reaches.
Roles where that convention is wrong are handled here:

* ``ConvTranspose`` weights are stored ``(in, out/groups, *kernel)``; an output
  unit receives ``in/groups * prod(kernel) / prod(stride)`` inputs on average and
  an input reaches ``out/groups * prod(kernel)`` outputs.
* ``Embedding`` is a one-hot input times the table: one input is active, so
  ``fan_in = 1`` and ``fan_out = embedding_dim`` (LeCun then gives N(0, 1),
  torch's own default, and unit-variance embeddings).
* Stacked gates (RNN/LSTM/GRU ``weight_ih``/``weight_hh``) and MultiheadAttention's
  packed ``in_proj_weight`` are split into chunks first (see ``policies``); each
  chunk then has its own, torch-convention fan.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InvalidInputError

Fan = tuple[int, int]


def tensor_fans(tensor: torch.Tensor) -> Fan:
    """(fan_in, fan_out) of a weight by torch's ``(out, in, *kernel)`` convention."""
    if tensor.dim() < 2:
        raise InvalidInputError(
            f"a fan-based init needs a tensor with at least 2 dimensions (out, in, ...), got "
            f"shape {tuple(tensor.shape)}; use a bias init (zeros, constant, normal) for 1-D "
            f"tensors, or pass fan=(fan_in, fan_out) explicitly"
        )
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def module_fans(module: nn.Module, weight: torch.Tensor) -> Fan:
    """(fan_in, fan_out) of ``weight`` (a whole parameter or one gate chunk) in ``module``."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        kernel = math.prod(module.kernel_size)
        stride = math.prod(module.stride)
        c_in, c_out = weight.shape[0] // module.groups, weight.shape[1]
        return max(1, round(c_in * kernel / stride)), c_out * kernel
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return 1, weight.shape[1]
    return tensor_fans(weight)


def pick_fan(fan: Fan, mode: str) -> int:
    """``fan_in``, ``fan_out`` or ``fan_avg`` (their mean, Glorot's compromise)."""
    fan_in, fan_out = fan
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2
    raise InvalidInputError(f"mode must be one of 'fan_in', 'fan_out', 'fan_avg', got {mode!r}")
