"""``Finding``: one problem, where it is, the numbers behind it and what to do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal[
    # causes seen in the layers
    "vanishing",
    "exploding",
    "non_finite",
    "saturated",
    "dead_units",
    "large_updates",
    "small_updates",
    "attention_logits",
    "overflow",
    "fluctuation",
    # symptoms seen in the loss
    "not_learning",
    "stalled",
    "diverging",
    "loss_spike",
    "oscillating",
    # the run itself: nothing was recorded to judge
    "no_steps",
]
Severity = Literal["info", "warning", "error"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Remedy:
    """What to do: words, and where one exists the scheme or the line of code that applies it."""

    text: str
    scheme: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        return self.text + (f"  →  {self.code}" if self.code else "")


@dataclass(frozen=True)
class Cause:
    """A finding in the layers that preceded a symptom in the loss: its ``kind``, ``layer``
    and ``onset``, and ``summary``, what it is in a few words a user can act on."""

    kind: str
    layer: str | None
    onset: int | None
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "onset": self.onset,
            "summary": self.summary,
        }


#: kinds seen in the loss curve (the others are causes seen in the layers)
SYMPTOMS = ("not_learning", "stalled", "diverging", "loss_spike", "oscillating")


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem.

    ``layer`` is the module's qualified name (``"(input)"`` for the data, ``"(target)"``
    for the target, ``"(loss)"`` for the loss, None for the whole model); ``step`` is the
    step it is reported at, ``onset`` the first step it was seen (0 = present at
    initialisation; by default ``step``); ``evidence`` holds the numbers that triggered it
    and the threshold; ``time_step`` is set for problems through time in recurrent layers.
    A symptom in the loss lists in ``causes`` the findings in the layers that preceded it
    (the most specific first); ``end`` is the last step of a symptom's step range.
    """

    kind: Kind
    layer: str | None
    severity: Severity
    step: int | None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    remedy: Remedy = field(default_factory=lambda: Remedy(""))
    message: str = ""
    time_step: int | None = None
    onset: int | None = None
    causes: tuple[Cause, ...] = ()
    end: int | None = None

    def __post_init__(self) -> None:
        if self.onset is None and self.step is not None:  # first seen where it is reported
            object.__setattr__(self, "onset", self.step)

    def __str__(self) -> str:
        where = f" at {self.layer}" if self.layer else ""
        return f"[{self.severity}] {self.kind}{where}: {self.message}  Remedy: {self.remedy}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "severity": self.severity,
            "step": self.step,
            "onset": self.onset,
            "time_step": self.time_step,
            "end": self.end,
            "message": self.message,
            "evidence": dict(self.evidence),
            "remedy": {
                "text": self.remedy.text,
                "scheme": self.remedy.scheme,
                "code": self.remedy.code,
            },
            "causes": [c.to_dict() for c in self.causes],
        }
