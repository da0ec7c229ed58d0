"""The probe's per-step state: what the hooks of one step queued, as typed records.

A :class:`StepState` is made at the start of every step and dropped at its end; only the
probe's hooks fill it, and only the end of the step (``_step.Finisher``) and the distributed
reducer read it. The records of statistics themselves are in ``_stats``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from . import reducers as R
from ._attention import AttentionCall
from ._distributed import local
from ._stats import Backward, Forward
from ._trail import Trail
from .modules import BwdRec, Slot


class Output(NamedTuple):
    """A watched module's output on this step, so the modules that consume it are known
    (the backward names the module whose backward produced a NaN)."""

    ref: weakref.ref
    rec: BwdRec


class RnnInput(NamedTuple):
    """``‖∂L/∂x_t‖`` of an RNN's input sequence, per time step (packer slice)."""

    slot: Slot
    norms: slice


@dataclass
class Unlogged:
    """First-non-finite search on a step that is not logged: one device value per tensor
    (``reducers.finite_sum``) and where it came from, in call order."""

    sums: list[torch.Tensor] = field(default_factory=list)
    where: list = field(default_factory=list)  # forward: a layer name; backward: BwdRec.key()

    def add(self, s: torch.Tensor, where) -> None:
        self.sums.append(s)
        self.where.append(where)


@dataclass
class StepState:
    """Everything one step collects before its end (``probe.step()``)."""

    index: int
    logged: bool
    packer: R.Packer
    update: bool = False  # measure ‖Δw‖/‖w‖ at the end of this step (a snapshot was taken)
    skipped: bool = False  # the guard skipped this step's optimizer step: no update ratio
    sentinel_fired: bool = False  # first_nonfinite="auto": a NaN/Inf gradient seen (CPU)
    forward: list[Forward] = field(default_factory=list)
    backward: list[Backward] = field(default_factory=list)
    unlogged_forward: Unlogged = field(default_factory=Unlogged)
    unlogged_backward: Unlogged = field(default_factory=Unlogged)
    hist_ranges: dict[tuple, object] = field(default_factory=dict)  # per (module, kind)
    called: dict[str, None] = field(default_factory=dict)  # forward order of the modules
    rnn_inputs: list[RnnInput] = field(default_factory=list)
    outputs: dict[int, Output] = field(default_factory=dict)  # id(output tensor) -> Output
    weight_norms: dict[int, slice] = field(default_factory=dict)  # param index -> ‖w‖ slot
    attention: list[AttentionCall] = field(default_factory=list)  # samples of attention calls
    running: list[Slot] = field(default_factory=list)  # watched modules in their forward now
    # logged steps on the host: the modules' inputs no watched module made (probe/_trail.py)
    inputs: Trail | None = None

    def unlogged(self, phase: str) -> Unlogged:
        return self.unlogged_forward if phase == "forward" else self.unlogged_backward


class Snapshot:
    """``w_{t-1}`` of the trainable parameters for the update ratio. Each parameter is copied
    in its gradient hook (``keep``), where the backward has just read its weights (in
    cache), once per update step; ``‖w_{t-1}‖`` is then the weight norm the same hook takes
    (the weights the step used). Buffers are allocated once and reused."""

    def __init__(self) -> None:
        self._bufs: dict[int, torch.Tensor] = {}
        self._kept: set[int] = set()  # copied on this step

    def start(self) -> None:
        """A new update step: nothing copied yet."""
        self._kept = set()

    def keep(self, i: int, p: torch.Tensor) -> None:
        """Copy parameter ``i`` (``p``: its detached weights) unless it was this step."""
        buf = self.buffer(i, p)
        if buf is not None:
            buf.copy_(p)

    def buffer(self, i: int, p: torch.Tensor) -> torch.Tensor | None:
        """The (contiguous) buffer parameter ``i`` is copied into, counted as kept: the
        caller fills it now (``_grads`` copies in C); None when it was kept this step."""
        if i in self._kept:
            return None
        buf = self._bufs.get(i)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = self._bufs[i] = torch.empty_like(p, memory_format=torch.contiguous_format)
        self._kept.add(i)
        return buf

    def has(self, i: int) -> bool:
        return i in self._kept

    def take(self, i: int) -> torch.Tensor:
        """``w_prev`` of parameter ``i`` (its local shard) for ``‖w - w_prev‖``; the buffer
        may be overwritten then (``reducers.norm_diff``): it is refilled at the next update."""
        self._kept.discard(i)
        return local(self._bufs[i])

    def clear(self) -> None:
        self._bufs, self._kept = {}, set()
