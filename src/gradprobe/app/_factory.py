"""Load a user's model and inputs for ``gradprobe check``: ``pkg.mod:factory`` and a batch."""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError

# random inputs larger than this are refused before torch tries to allocate them
MAX_INPUT_VALUES = 2**28  # 1 GiB of float32


def parse_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInputError(
            f"--kwargs is not valid JSON ({err.msg} at column {err.colno}); "
            f"write it like '{{\"depth\": 30}}'"
        ) from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"--kwargs must be a JSON object, got {type(value).__name__}")
    return value


def load_model(spec: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Import ``pkg.mod:factory`` (a class or a function) and call it with ``kwargs``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInputError(
            f"expected MODULE:FACTORY such as my_pkg.models:make_model, got {spec!r}"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current folder is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InvalidInputError(
            f"cannot import {module_name!r} ({err}); run from the folder that contains it or "
            f"install the package"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidInputError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidInputError(f"{spec} is not callable; name a class or a function")
    try:
        model = obj(**(kwargs or {}))
    except Exception as err:
        raise InvalidInputError(
            f"{spec}(**{kwargs or {}}) raised {type(err).__name__}: {err}"
        ) from None
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise InvalidInputError(
            f"--input-shape must be positive integers like 32,784, got {text!r}"
        )
    if math.prod(shape) > MAX_INPUT_VALUES:
        raise InvalidInputError(
            f"--input-shape {text} is {math.prod(shape):,} values, more than the "
            f"{MAX_INPUT_VALUES:,} (1 GiB of float32) check generates; a small batch shows the "
            "same gradients: pass e.g. 32 as the first dimension"
        )
    return shape


def load_tensor_file(path: str | Path, what: str = "--input"):
    """``torch.load`` with ``weights_only=True``: a tensor, tuple/list or dict of tensors."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{what} file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InvalidInputError(
            f"{what} file {str(path)!r} is not a tensor file that loads with weights_only=True "
            f"({type(err).__name__}); save it with torch.save(tensor_or_tuple, path)"
        ) from None
