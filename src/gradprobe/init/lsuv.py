"""LSUV, layer-sequential unit-variance init (Mishkin & Matas 2016), and the model's default.

1. Pre-initialise every weight with an orthonormal matrix (``orthogonal``, gain 1).
2. For each layer with a weight (Linear, Conv, ...) in the order the layers run on the
   batch (layers whose weights are used functionally, like MultiheadAttention's
   ``out_proj``, do not run as modules and keep the orthonormal init): forward the
   batch, measure the variance v of that layer's output and scale its weight by 1/√v,
   until |v − 1| < ``tol`` or ``max_iter`` passes.

A pass stops right after the layer of interest has produced its output, so LSUV costs
about ``sum over layers of (its depth × iterations)`` layer evaluations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InvalidInputError
from .activations import has_direct_parameters, ran_modules
from .policies import initialize
from .report import InitReport
from .schemes import Scheme, register

_LAYERS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


class _Stop(Exception):
    """Raised by the hook once the layer of interest has run."""


def _forward(model: nn.Module, data) -> None:
    if isinstance(data, dict):
        model(**data)
    elif isinstance(data, (tuple, list)):
        model(*data)
    else:
        model(data)


def _output_variance(model: nn.Module, layer: nn.Module, data) -> float:
    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        captured.append(output.detach().float())
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        _forward(model, data)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise InvalidInputError(f"layer {type(layer).__name__} did not run on the data batch")
    return float(captured[0].var())


def lsuv(
    model: nn.Module,
    *,
    data=None,
    tol: float = 0.1,
    max_iter: int = 10,
    target_var: float = 1.0,
    generator: torch.Generator | None = None,
    policy=None,
    bias="zeros",
    nonlinearity=None,
    example_input=None,
) -> InitReport:
    """LSUV: orthonormal init, then rescale each layer until Var(output) ≈ ``target_var``."""
    if data is None:
        raise InvalidInputError(
            "LSUV is data-dependent: pass a batch the model accepts, e.g. "
            "gradprobe.init.apply(model, 'lsuv', data=x[:256])"
        )
    if tol <= 0 or max_iter < 1:
        raise InvalidInputError(f"LSUV needs tol > 0 and max_iter >= 1, got {tol}, {max_iter}")
    report = initialize(
        model, "orthogonal", nonlinearity=1.0, bias=bias, policy=policy, generator=generator
    )
    report.scheme = "lsuv"
    was_training = model.training
    model.eval()  # dropout off; BatchNorm uses running stats (its own output is not rescaled)
    names = {m: n for n, m in model.named_modules()}
    iterations: dict[str, int] = {}
    variances: dict[str, float] = {}
    try:
        with torch.no_grad():
            try:
                order = ran_modules(model, data)
            except InvalidInputError as err:
                raise InvalidInputError(
                    f"LSUV could not run the data batch through the model: {err.__cause__}; "
                    f"pass data= with the shape and dtype the model expects"
                ) from err
            layers = [m for m in order if isinstance(m, _LAYERS) and has_direct_parameters(m)]
            for layer in layers:
                var, steps = _output_variance(model, layer, data), 0
                while abs(var - target_var) >= tol and steps < max_iter:
                    if not math.isfinite(var) or var <= 0:
                        break  # a dead or non-finite layer: rescaling cannot help
                    layer.weight.mul_(math.sqrt(target_var / var))
                    var, steps = _output_variance(model, layer, data), steps + 1
                iterations[names[layer]] = steps
                variances[names[layer]] = var
    finally:
        model.train(was_training)
    skipped = [
        n for n, m in model.named_modules() if isinstance(m, _LAYERS) and n not in iterations
    ]
    report.details = {"iterations": iterations, "variances": variances, "tol": tol}
    if skipped:  # e.g. MultiheadAttention's out_proj, whose weight is used functionally
        report.details["not_run_as_modules"] = skipped
    return report


def default(
    model: nn.Module,
    *,
    generator: torch.Generator | None = None,
    nonlinearity=None,
    bias=None,
    example_input=None,
    policy=None,
) -> InitReport:
    """The model's own initialisation: ``reset_parameters()`` of every module that has one.

    With ``generator``, torch's global RNG is seeded from it inside a fork, so the result
    is reproducible and the caller's RNG state is untouched.
    """
    report = InitReport(model=model, scheme="default")
    seed = None if generator is None else int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for name, module in model.named_modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and has_direct_parameters(module):
                reset()
                report.details.setdefault("reset", []).append(name or "(root)")
    return report


register(
    Scheme(
        "lsuv",
        lsuv,
        "orthonormal, then per layer w ← w/√Var(output) until |Var − 1| < tol",
        "Mishkin & Matas 2016",
        kind="model",
    )
)
register(
    Scheme(
        "default",
        default,
        "each module's own reset_parameters() (torch's defaults)",
        "PyTorch",
        kind="model",
    )
)
