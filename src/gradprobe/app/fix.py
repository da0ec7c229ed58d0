"""``gradprobe fix``: load the factory and the data, run ``gp.fix``, print the ranking.

The data: ``--data FILE.pt`` (``(inputs, targets)`` saved with ``torch.save``, loaded with
``weights_only=True``), or ``--input-shape`` with ``--task``: random normal inputs and the
targets of a fixed random linear teacher (``classes[:K]``: the argmax of K scores, K the
model's output width by default; ``regression``: the scores themselves, shaped like the
model's output), a task every healthy model can learn.
"""

from __future__ import annotations

import functools
import json
import math

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from ..fix import fix
from ..report.terminal import console
from ._factory import load_model, load_tensor_file, parse_kwargs, parse_shape

_LOSSES = {"auto": None, "mse": F.mse_loss, "ce": F.cross_entropy}
_OPTIMIZERS = {"adam": (torch.optim.Adam, 1e-3), "sgd": (torch.optim.SGD, 1e-2)}


def _data_file(path):
    data = load_tensor_file(path, "--data")
    if isinstance(data, dict):
        for keys in (("inputs", "targets"), ("x", "y")):
            if all(k in data for k in keys):
                data = (data[keys[0]], data[keys[1]])
                break
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise InvalidInputError(
            f"--data must hold (inputs, targets): save it with torch.save((x, y), {str(path)!r}); "
            f"it holds {type(data).__name__}"
        )
    if not all(isinstance(t, torch.Tensor) for t in data):
        raise InvalidInputError("--data must hold two tensors, inputs and targets")
    return tuple(data)


def _teacher_data(spec: str, kwargs: dict, shape: tuple[int, ...], task: str, seed: int):
    """Random inputs and a fixed random linear teacher's targets (see module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    torch.manual_seed(seed)
    model = load_model(spec, kwargs)
    try:
        with torch.no_grad():
            out = model(x[:2])
    except Exception as err:
        raise InvalidInputError(
            f"the model's forward failed on inputs of shape {shape} ({type(err).__name__}: "
            f"{err}); pass --input-shape as the model expects, batch first"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise InvalidInputError(
            "--input-shape needs a model that returns a (batch, ...) tensor; pass --data"
        )
    name, _, k = task.partition(":")
    flat = x.flatten(1)
    if name == "classes":
        classes = int(k) if k.isdigit() else out.shape[-1]
        if out.dim() != 2 or classes < 2 or classes > out.shape[-1]:
            raise InvalidInputError(
                f"--task classes needs a (batch, classes) output with at least 2 classes; the "
                f"model returns {tuple(out.shape)}"
            )
        w = torch.randn(flat.shape[1], classes, generator=gen)
        return x, (flat @ w).argmax(1)
    if name == "regression":
        size = math.prod(out.shape[1:])
        w = torch.randn(flat.shape[1], size, generator=gen) / math.sqrt(flat.shape[1])
        return x, (flat @ w).reshape(len(x), *out.shape[1:])
    raise InvalidInputError(f"--task must be 'classes', 'classes:K' or 'regression', got {task!r}")


def run_fix(
    factory: str,
    data_path,
    input_shape: str | None,
    task: str,
    kwargs: str | None,
    *,
    steps: int,
    lr: float | None,
    optimizer: str,
    loss: str,
    batch_size: int,
    candidates: str,
    workers: int,
    budget: float | None,
    seed: int,
    as_json: bool,
    html=None,
    executor: str = "local",
    address: str | None = None,
) -> int:
    """Returns the exit status: 0 the best trial is healthy and beats the model as given,
    1 no remedy helps."""
    if (data_path is None) == (input_shape is None):
        raise InvalidInputError("give exactly one of --data and --input-shape")
    if loss not in _LOSSES:
        raise InvalidInputError(f"--loss must be one of {sorted(_LOSSES)}, got {loss!r}")
    if optimizer not in _OPTIMIZERS:
        raise InvalidInputError(
            f"--optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}"
        )
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise InvalidInputError(f"--lr must be a positive number, got {lr!r}")
    options = parse_kwargs(kwargs)
    torch.manual_seed(seed)
    load_model(factory, options)  # a bad factory fails here, with its message
    if data_path is not None:
        data = _data_file(data_path)
    else:
        data = _teacher_data(factory, options, parse_shape(input_shape or ""), task, seed)
    cls, default_lr = _OPTIMIZERS[optimizer]
    chosen = (
        candidates
        if candidates in ("auto", "all")
        else [c.strip() for c in candidates.split(",") if c.strip()]
    )
    result = fix(
        functools.partial(load_model, factory, options),
        data,
        loss_fn=_LOSSES[loss],
        optimizer=functools.partial(cls, lr=lr or default_lr),
        steps=steps,
        candidates=chosen,
        seed=seed,
        workers=workers,
        executor=executor,
        address=address,
        budget_s=budget,
        batch_size=batch_size,
        progress=not as_json,
    )
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        console().print(result)
    if html is not None:
        path = result.save_html(html)
        if not as_json:
            console().print(f"report: {path}")
    return result.exit_code
