"""The weight-initialisation zoo: tensor functions, gains, fans and whole-model policies.

>>> import torch, gradprobe as gp
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
>>> model = gp.init.apply(model, "xavier_normal")            # gain 5/3 before the tanh
>>> "lsuv" in gp.init.names()
True
"""

from __future__ import annotations

from . import fixup as _fixup  # noqa: F401  (registers "fixup")
from . import lsuv as _lsuv  # noqa: F401  (registers "lsuv", "default")
from .fans import module_fans, tensor_fans
from .functional import (
    constant_,
    delta_orthogonal_,
    identity_,
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    normal_,
    orthogonal_,
    scaled_normal_,
    standard_,
    trunc_normal_,
    uniform_,
    variance_scaling_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)
from .gains import gain, numeric_gain
from .policies import apply, initialize
from .report import InitReport, ParamRecord
from .schemes import SCHEMES, Scheme


def names(pattern: str | None = None) -> list[str]:
    """Every registered scheme name (glob ``pattern`` to filter)."""
    return SCHEMES.names(pattern)


def get(name: str) -> Scheme:
    """The registered :class:`Scheme` called ``name`` (an unknown name lists the known ones)."""
    return SCHEMES.get(name)


def schemes_table(pattern: str | None = None):
    """A rich table of the schemes: name, kind, formula, paper."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="gradprobe init schemes")
    for column in ("scheme", "kind", "formula", "paper"):
        table.add_column(column)
    for name in names(pattern):
        s = SCHEMES.get(name)
        kind = s.kind + (", gain" if s.uses_gain else "")
        table.add_row(name, kind, Text(s.formula), Text(s.paper))
    return table


__all__ = [
    "SCHEMES",
    "InitReport",
    "ParamRecord",
    "Scheme",
    "apply",
    "constant_",
    "delta_orthogonal_",
    "gain",
    "get",
    "identity_",
    "initialize",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "module_fans",
    "names",
    "normal_",
    "numeric_gain",
    "orthogonal_",
    "scaled_normal_",
    "schemes_table",
    "standard_",
    "tensor_fans",
    "trunc_normal_",
    "uniform_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
