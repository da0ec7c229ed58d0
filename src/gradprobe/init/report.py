"""What ``gradprobe.init`` did to each parameter: a small printable table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ParamRecord:
    """One parameter: its role, the rule applied, and the numbers behind it."""

    name: str
    module: str
    role: str
    rule: str
    fan_in: int | float | None = None
    fan_out: int | float | None = None
    gain: float | str | None = None
    activation: str | None = None
    std: float | None = None


@dataclass
class InitReport:
    """Returned by :func:`gradprobe.init.initialize`; ``model`` is the initialised model."""

    model: nn.Module
    scheme: str
    records: list[ParamRecord] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # scheme-specific (LSUV iterations ...)

    def __getitem__(self, name: str) -> ParamRecord:
        for record in self.records:
            if record.name == name:
                return record
        raise KeyError(name)

    def rows(self) -> list[list[str]]:
        def fmt(v):
            if v is None:
                return ""
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        return [
            [r.name, r.module, r.role, r.rule, fmt(r.fan_in), fmt(r.fan_out), fmt(r.gain),
             fmt(r.activation), fmt(r.std)]
            for r in self.records
        ]  # fmt: skip

    HEADER = ("parameter", "module", "role", "rule", "fan_in", "fan_out", "gain", "act", "std")

    def __rich__(self):
        from rich.table import Table

        table = Table(title=f"gradprobe.init: {self.scheme}")
        for h in self.HEADER:
            table.add_column(
                h, justify="right" if h in ("fan_in", "fan_out", "gain", "std") else "left"
            )
        for row in self.rows():
            table.add_row(*row)
        return table

    def __str__(self) -> str:
        rows = [list(self.HEADER), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        extra = [f"{k}: {v}" for k, v in self.details.items()]
        return "\n".join([f"init scheme: {self.scheme}", *lines, *extra])
