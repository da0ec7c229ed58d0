"""``apply(model, scheme)``: initialise every parameter of a model by its role.

One rule per parameter role:

* Linear, Bilinear, ConvNd, ConvTransposeNd, Embedding: the weight by the scheme with
  the role's fans (:mod:`.fans`); the bias by the bias policy (zeros by default).
* RNN/LSTM/GRU and their cells: ``weight_ih``/``weight_hh`` split into their gates
  (LSTM i, f, g, o; GRU r, z, n), each gate initialised on its own with its own fan and,
  under ``nonlinearity="auto"``, its own activation's gain (sigmoid gates 1, tanh 5/3,
  a vanilla RNN its ``nonlinearity``). ``recurrent="orthogonal"`` (or any scheme) for
  the hidden-hidden weights; ``forget_bias`` sets the LSTM forget-gate bias (torch's 0
  makes gradients vanish through time; Jozefowicz et al. 2015 recommend 1).
* MultiheadAttention: the packed ``in_proj_weight`` as three projections q, k, v.
* Normalisation layers: weight 1, bias 0. PReLU keeps its slope.
* Any other parameter with ≥ 2 dims: the scheme with torch's fan convention; 1-D
  parameters of unknown modules are kept, and the report says so.

A ``policy(module, qualified_name)`` may return None (default rule), False (leave the
module as it is), a scheme name, or a dict of options (``scheme``, ``gain``, and the
scheme's own keyword arguments) for that module — e.g. to zero a head or scale a
residual projection by 1/√(2·depth).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import GradprobeWarning, InvalidInputError
from .activations import check_is_module, describe, following_activations
from .fans import module_fans, tensor_fans
from .gains import gain as activation_gain
from .report import InitReport, ParamRecord
from .schemes import SCHEMES, Scheme
from .usage import is_builtin, observed_fans

Policy = Callable[[nn.Module, str], Any]

_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    *(getattr(nn, n) for n in ("RMSNorm",) if hasattr(nn, n)),
)
_GATES = {"LSTM": ("sigmoid", "sigmoid", "tanh", "sigmoid"), "GRU": ("sigmoid", "sigmoid", "tanh")}


def apply(
    model: nn.Module, scheme: str = "kaiming_normal", nonlinearity: Any = "auto", **options
) -> nn.Module:
    """Initialise ``model`` in place with ``scheme`` and return it (see :func:`initialize`).

    >>> model = apply(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)), "kaiming_normal")
    """
    return initialize(model, scheme, nonlinearity, **options).model


def initialize(
    model: nn.Module,
    scheme: str = "kaiming_normal",
    nonlinearity: Any = "auto",
    *,
    bias: str | float = "zeros",
    recurrent: str | None = None,
    forget_bias: float | None = None,
    example_input: Any = None,
    policy: Policy | None = None,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> InitReport:
    """Initialise ``model`` in place; return an :class:`InitReport` of what was done.

    ``nonlinearity``: ``"auto"`` (the activation that follows each layer, see
    :mod:`.activations`), a name, an activation module/callable, or a number (the gain).
    ``example_input`` makes ``"auto"`` follow the order modules really run in.
    ``bias``: ``"zeros"``, ``"keep"`` or a constant. ``kwargs`` go to the scheme
    (``mode="fan_out"``, ``scale=0.01``, ``data=batch`` for LSUV ...).
    """
    check_is_module(model)
    spec = SCHEMES.get(scheme)
    if spec.kind == "model":
        _check_kwargs(spec, kwargs)
        return spec.fn(
            model,
            nonlinearity=nonlinearity,
            bias=bias,
            example_input=example_input,
            policy=policy,
            generator=generator,
            **kwargs,
        )
    _check_kwargs(spec, kwargs)
    if recurrent is not None:
        SCHEMES.get(recurrent)
    if bias not in ("zeros", "keep") and not isinstance(bias, (int, float)):
        raise InvalidInputError(f"bias must be 'zeros', 'keep' or a number, got {bias!r}")
    followers = (
        following_activations(model, example_input)
        if isinstance(nonlinearity, str) and nonlinearity == "auto"
        else {}
    )
    report = InitReport(model=model, scheme=scheme)
    observed = _raw_matrix_fans(model, example_input) if spec.fan_based else {}
    done: set[int] = set()
    with torch.no_grad():
        for name, module in model.named_modules():
            own = [(n, p) for n, p in module.named_parameters(recurse=False) if id(p) not in done]
            if not own:
                continue
            rule = _module_rule(policy, module, name, spec, kwargs)
            if rule is None:
                report.records.extend(
                    ParamRecord(_qual(name, n), type(module).__name__, "kept", "policy")
                    for n, _ in own
                )
            else:
                if isinstance(nonlinearity, str) and nonlinearity == "auto":
                    act = followers.get(module)
                else:
                    act = nonlinearity
                rule_spec, rule_kwargs = rule
                ctx = _Context(
                    rule_spec, rule_kwargs, act, bias, recurrent, forget_bias, generator, report
                )
                ctx.auto = isinstance(nonlinearity, str) and nonlinearity == "auto"
                ctx.observed = observed
                _init_module(module, name, own, ctx)
            done.update(id(p) for _, p in own)
    return report


def _raw_matrix_fans(model: nn.Module, example_input) -> dict:
    """Fans of the non-square 2-D parameters of non-torch modules, read from their use in the
    forward on ``example_input``; without one, a warning that torch's (out, in) convention is
    assumed for them (a raw ``x @ W`` parameter is stored (in, out)). See :mod:`.usage`."""
    raw = [
        (f"{name}.{pname}" if name else pname, p)
        for name, module in model.named_modules()
        if not is_builtin(module)
        for pname, p in module.named_parameters(recurse=False)
        if p.dim() == 2 and p.shape[0] != p.shape[1]
    ]
    if not raw:
        return {}
    if example_input is not None:
        return observed_fans(model, example_input, [p for _, p in raw])
    names = ", ".join(f"{n} {tuple(p.shape)}" for n, p in raw[:4])
    names += ", ..." if len(raw) > 4 else ""
    warnings.warn(
        f"fan-in of the raw weight matrices {names} is read by torch's (out, in) convention; "
        "a parameter used as x @ W is stored (in, out) and would get the wrong scale: pass "
        "example_input=batch to read the fans from how the forward uses them",
        GradprobeWarning,
        stacklevel=3,
    )
    return {}


class _Context:
    def __init__(self, spec, kwargs, activation, bias, recurrent, forget_bias, generator, report):
        self.observed: dict[int, tuple[int, int]] = {}  # raw matrices' fans (see .usage)
        self.spec, self.kwargs, self.activation = spec, kwargs, activation
        self.bias, self.recurrent, self.forget_bias = bias, recurrent, forget_bias
        self.generator, self.report = generator, report
        self.auto = False


def _qual(module_name: str, param_name: str) -> str:
    return f"{module_name}.{param_name}" if module_name else param_name


def _check_kwargs(spec: Scheme, kwargs: dict) -> None:
    common = {"tensor", "model", "generator", "fan", "nonlinearity", "bias", "example_input"}
    accepted = set(inspect.signature(spec.fn).parameters) - common - {"policy"}
    unknown = set(kwargs) - accepted
    if unknown:
        raise InvalidInputError(
            f"scheme {spec.name!r} takes no option(s) {sorted(unknown)}; "
            f"it accepts {sorted(accepted) or 'none'}"
        )


def _module_rule(policy, module, name, spec, kwargs):
    """(scheme, kwargs) for this module after the user's policy; None to leave it alone."""
    if policy is None:
        return spec, kwargs
    choice = policy(module, name)
    if choice is None:
        return spec, kwargs
    if choice is False or choice == "skip":
        return None
    if isinstance(choice, str):
        choice = {"scheme": choice}
    if not isinstance(choice, dict):
        raise InvalidInputError(
            f"policy returned {choice!r} for {name!r}; return None, False, a scheme name or "
            f"a dict of options"
        )
    options = dict(choice)
    chosen = SCHEMES.get(options.pop("scheme", spec.name))
    if chosen.kind == "model":
        raise InvalidInputError(
            f"a policy cannot apply the model scheme {chosen.name!r} to one module"
        )
    merged = {**kwargs, **options} if chosen is spec else options
    _check_kwargs(chosen, {k: v for k, v in merged.items() if k != "gain"})
    return chosen, merged


def _gain_for(ctx: _Context, activation) -> float:
    if "gain" in ctx.kwargs:
        return float(ctx.kwargs["gain"])
    if isinstance(activation, (int, float)) and not isinstance(activation, bool):
        return float(activation)
    if isinstance(activation, str):
        return activation_gain(activation, ctx.kwargs.get("a"))
    return activation_gain(activation)


def _fill(ctx: _Context, tensor: torch.Tensor, fan, activation, spec: Scheme | None = None):
    """Run one tensor scheme on ``tensor`` (a parameter or a gate's view of one)."""
    spec = spec or ctx.spec
    call = {k: v for k, v in ctx.kwargs.items() if k != "gain"} if spec is ctx.spec else {}
    params = inspect.signature(spec.fn).parameters
    g = None
    if spec.uses_gain:
        g = _gain_for(ctx, activation)
        call["gain"] = g
        call.pop("nonlinearity", None)
    if spec.fan_based and "fan" in params:
        call["fan"] = fan
    if spec.name == "delta_orthogonal" and tensor.dim() < 3:
        spec = SCHEMES.get("orthogonal")  # a 2-D "kernel" has only its centre tap
    fn = spec.fn
    generator = ctx.generator
    if generator is not None and generator.device != tensor.device:
        scratch = torch.empty(tensor.shape, dtype=tensor.dtype, device=generator.device)
        tensor.copy_(fn(scratch, generator=generator, **call))
    else:
        fn(tensor, generator=generator, **call)
    return g


def _bias(ctx: _Context, qual: str, module: nn.Module, p: torch.Tensor, value=None) -> None:
    if value is None and ctx.bias == "keep":
        ctx.report.records.append(ParamRecord(qual, type(module).__name__, "bias", "kept"))
        return
    val = float(value if value is not None else (0.0 if ctx.bias == "zeros" else ctx.bias))
    p.fill_(val)
    ctx.report.records.append(ParamRecord(qual, type(module).__name__, "bias", f"constant {val:g}"))


def _weight(ctx, qual, module, p, fan, activation, role="weight", spec=None, chunks=1, acts=None):
    """Initialise ``p`` (split into ``chunks`` gates, each with its own activation)."""
    spec = spec or ctx.spec
    pieces = p.chunk(chunks, dim=0) if chunks > 1 else (p,)
    acts = acts or [activation] * len(pieces)
    gains = []
    for piece, act in zip(pieces, acts, strict=True):
        gains.append(_fill(ctx, piece, fan(piece), act, spec))
    fan_in, fan_out = fan(pieces[0]) if p.dim() >= 2 else (None, None)
    unit = "projection (q, k, v)" if isinstance(module, nn.MultiheadAttention) else "gate"
    label = spec.name + (f" per {unit} (×{chunks})" if chunks > 1 else "")
    g = gains[0] if len(set(gains)) == 1 else "/".join(f"{x:.3g}" for x in gains)
    ctx.report.records.append(
        ParamRecord(
            qual,
            type(module).__name__,
            role,
            label,
            fan_in,
            fan_out,
            g,
            "/".join(describe(a) for a in acts) if spec.uses_gain else None,
            float(p.float().std()) if p.numel() > 1 else float(p.float().abs().mean()),
        )
    )


def _init_module(module: nn.Module, name: str, own: list, ctx: _Context) -> None:
    mtype = type(module).__name__
    for pname, p in own:
        qual = _qual(name, pname)
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise InvalidInputError(
                f"{qual} of {mtype} is not materialised yet; run one forward pass through the "
                f"model before initialising it"
            )
        if isinstance(module, _NORMS):
            value = 1.0 if pname == "weight" else 0.0
            p.fill_(value)
            ctx.report.records.append(
                ParamRecord(qual, mtype, "norm " + pname, f"constant {value:g}")
            )
        elif isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
            _init_recurrent(module, qual, pname, p, ctx)
        elif isinstance(module, nn.MultiheadAttention):
            if pname == "in_proj_weight":
                _weight(ctx, qual, module, p, tensor_fans, ctx.activation, chunks=3)
            elif p.dim() >= 2 and pname.endswith("proj_weight"):
                _weight(ctx, qual, module, p, tensor_fans, ctx.activation)
            else:  # in_proj_bias, bias_k, bias_v
                _bias(ctx, qual, module, p)
        elif isinstance(module, nn.PReLU):
            ctx.report.records.append(ParamRecord(qual, mtype, "activation slope", "kept"))
        elif pname == "bias" or (p.dim() < 2 and pname.startswith("bias")):
            _bias(ctx, qual, module, p)
        elif p.dim() == 2 and id(p) in ctx.observed:  # a raw matrix, fans from its use
            fan = ctx.observed[id(p)]
            _weight(ctx, qual, module, p, lambda t, f=fan: f, ctx.activation)
        elif p.dim() >= 2:
            _weight(ctx, qual, module, p, lambda t, m=module: module_fans(m, t), ctx.activation)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                p[module.padding_idx].zero_()
        else:
            ctx.report.records.append(ParamRecord(qual, mtype, "unknown 1-D", "kept"))


def _init_recurrent(module, qual: str, pname: str, p: torch.Tensor, ctx: _Context) -> None:
    kind = type(module).__name__.replace("Cell", "")
    gates = _GATES.get(kind, (getattr(module, "nonlinearity", "tanh"),))
    acts = list(gates) if ctx.auto else [ctx.activation] * len(gates)
    if pname.startswith("weight_hh"):
        spec = SCHEMES.get(ctx.recurrent) if ctx.recurrent else None
        _weight(ctx, qual, module, p, tensor_fans, None, "hidden-hidden", spec, len(gates), acts)
    elif pname.startswith("weight_ih"):
        _weight(ctx, qual, module, p, tensor_fans, None, "input-hidden", None, len(gates), acts)
    elif pname.startswith("weight_hr"):  # LSTM projection: a plain linear map
        _weight(ctx, qual, module, p, tensor_fans, None, "projection")
    elif pname.startswith("bias"):
        _bias(ctx, qual, module, p)
        if kind == "LSTM" and ctx.forget_bias is not None:
            forget = p.chunk(4)[1]
            forget.fill_(ctx.forget_bias if pname.startswith("bias_ih") else 0.0)
            ctx.report.records[-1] = ParamRecord(
                qual, type(module).__name__, "bias", f"forget gate {forget[0].item():g}, rest 0"
            )


__all__ = ["apply", "initialize"]
