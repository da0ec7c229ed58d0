"""The registry of initialisation schemes: every name ``gradprobe.init.apply`` accepts.

A tensor scheme wraps one function of :mod:`gradprobe.init.functional`; a model
scheme (LSUV, Fixup, the model's own default) works on a whole model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .._registry import Registry
from . import functional as f


@dataclass(frozen=True)
class Scheme:
    """One named initialisation scheme and what it needs."""

    name: str
    fn: Callable
    formula: str
    paper: str
    kind: Literal["tensor", "model"] = "tensor"
    uses_gain: bool = False  # scaled by the activation's gain under nonlinearity=...
    fan_based: bool = False  # takes fan=(fan_in, fan_out) from the layer's role


SCHEMES: Registry[Scheme] = Registry("init scheme")


def register(scheme: Scheme) -> Scheme:
    return SCHEMES.register(scheme.name, scheme)


for _scheme in (
    Scheme("zeros", f.zeros_, "w = 0", "-"),
    Scheme("constant", f.constant_, "w = val", "-"),
    Scheme("normal", f.normal_, "w ~ N(mean, std²)", "-"),
    Scheme("uniform", f.uniform_, "w ~ U[a, b]", "-"),
    Scheme("trunc_normal", f.trunc_normal_, "w ~ N(mean, std²) truncated to [a, b]", "-"),
    Scheme(
        "scaled_normal",
        f.scaled_normal_,
        "w ~ N(0, scale²), scale = 0.01 by default",
        "the fixed-scale Gaussian of teaching notebooks",
    ),
    Scheme(
        "standard",
        f.standard_,
        "w ~ U[-1/√fan_in, 1/√fan_in]; Var = 1/(3 fan_in)",
        "Glorot & Bengio 2010, eq. 1 (the heuristic they replaced)",
        fan_based=True,
    ),
    Scheme(
        "xavier_uniform",
        f.xavier_uniform_,
        "w ~ U[-a, a], a = gain·√(6/(fan_in+fan_out))",
        "Glorot & Bengio 2010, eq. 16",
        uses_gain=True,
        fan_based=True,
    ),
    Scheme(
        "xavier_normal",
        f.xavier_normal_,
        "w ~ N(0, gain²·2/(fan_in+fan_out))",
        "Glorot & Bengio 2010",
        uses_gain=True,
        fan_based=True,
    ),
    Scheme(
        "kaiming_uniform",
        f.kaiming_uniform_,
        "w ~ U[-b, b], b = gain·√(3/fan); fan = fan_in or fan_out",
        "He et al. 2015, eq. 10",
        uses_gain=True,
        fan_based=True,
    ),
    Scheme(
        "kaiming_normal",
        f.kaiming_normal_,
        "w ~ N(0, gain²/fan); gain = √2 for ReLU",
        "He et al. 2015, eq. 10",
        uses_gain=True,
        fan_based=True,
    ),
    Scheme(
        "lecun_uniform",
        f.lecun_uniform_,
        "w ~ U[-√(3/fan_in), √(3/fan_in)]; Var = 1/fan_in",
        "LeCun et al. 1998, Efficient BackProp",
        fan_based=True,
    ),
    Scheme(
        "lecun_normal",
        f.lecun_normal_,
        "w ~ N(0, 1/fan_in)",
        "LeCun et al. 1998; Klambauer et al. 2017 (SELU)",
        fan_based=True,
    ),
    Scheme(
        "variance_scaling",
        f.variance_scaling_,
        "Var(w) = scale/fan; truncated normal, normal or uniform",
        "Keras VarianceScaling",
        fan_based=True,
    ),
    Scheme(
        "orthogonal",
        f.orthogonal_,
        "w = gain·Q, Q orthonormal rows/columns (QR of a Gaussian)",
        "Saxe et al. 2014",
        uses_gain=True,
    ),
    Scheme(
        "delta_orthogonal",
        f.delta_orthogonal_,
        "conv kernel 0 except centre tap = gain·Q (orthogonal)",
        "Xiao et al. 2018",
        uses_gain=True,
    ),
    Scheme(
        "identity",
        f.identity_,
        "w = I (matrix) or Dirac delta (conv kernel)",
        "Le et al. 2015 (IRNN)",
    ),
):
    register(_scheme)
