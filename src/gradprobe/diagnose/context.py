"""What the rules read from a Run: layer order, gradient profile across depth, facts."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..run import Run
from .thresholds import Thresholds

_NORM_TYPES = ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm")
_RECURRENT = ("RNN", "LSTM", "GRU")


@dataclass(frozen=True)
class Profile:
    """Per-layer values at one step, lowest layer first, and their fitted per-layer factor."""

    layers: list[str]
    values: np.ndarray

    @property
    def ratio(self) -> float:
        """lowest / output (the Glorot ratio: < 1 vanishing, > 1 exploding)."""
        return float(self.values[0] / self.values[-1])

    @property
    def growth(self) -> float:
        """exp of the least-squares slope of log(value) against depth, output towards input."""
        logs = np.log(self.values[::-1])
        slope = np.polyfit(np.arange(len(logs)), logs, 1)[0]
        return float(math.exp(slope))


class Context:
    """A Run plus the thresholds; cached views the rules share."""

    def __init__(self, run: Run, thresholds: Thresholds) -> None:
        self.run = run
        self.t = thresholds

    @functools.cached_property
    def modules(self):
        return [la for la in self.run.layers("module") if la.position is not None]

    @functools.cached_property
    def weight_layers(self) -> list[str]:
        """Modules with their own ``weight`` parameter, in execution order (the depth axis)."""
        params = {la.name for la in self.run.layers("param")}
        return [
            m.name
            for m in self.modules
            if f"{m.name}.weight" in params or m.name + ".weight_ih_l0" in params
        ]

    @functools.cached_property
    def steps(self) -> list[int]:
        return self.run.steps

    def matrix(self, quantity: str, stat: str, layers: list[str]):
        """array[layer, step] of (quantity, stat) for ``layers`` (NaN where missing)."""
        names, steps, values = self.run.matrix(quantity, stat)
        index = {n: i for i, n in enumerate(names)}
        out = np.full((len(layers), len(self.steps)), np.nan)
        col = {s: i for i, s in enumerate(self.steps)}
        for j, name in enumerate(layers):
            if name in index:
                for k, s in enumerate(steps):
                    out[j, col[s]] = values[index[name], k]
        return out

    def gradient_profile(self, step_index: int, stat: str = "rms") -> Profile | None:
        """Back-propagated gradient (∂L/∂ output of each weight layer) across depth at a step."""
        grads = self.grad_matrix[:, step_index]
        keep = np.isfinite(grads) & (grads > 0)
        if keep.sum() < self.t.min_layers:
            return None
        names = [n for n, k in zip(self.weight_layers, keep, strict=True) if k]
        return Profile(names, grads[keep])

    def activation_profile(self, step_index: int) -> Profile | None:
        """Forward rms of each weight layer's output across depth (all finite and > 0)."""
        acts = self.activation_matrix[:, step_index]
        keep = np.isfinite(acts) & (acts > 0)
        if keep.sum() < self.t.min_layers:
            return None
        names = [n for n, k in zip(self.weight_layers, keep, strict=True) if k]
        return Profile(names, acts[keep])

    @functools.cached_property
    def grad_matrix(self) -> np.ndarray:
        return self._rms("grad_output")

    @functools.cached_property
    def activation_matrix(self) -> np.ndarray:
        return self._rms("activation")

    def _rms(self, quantity: str) -> np.ndarray:
        """rms per weight layer and step; an rms of exactly 0 where max|x| > 0 (a sum of
        squares that underflowed in float32, below ~1e-23) is replaced by max|x|, an upper
        bound that keeps the layer in the profile: a layer that small is never "missing"."""
        rms = self.matrix(quantity, "rms", self.weight_layers)
        if not (rms == 0).any() or (quantity, "max_abs") not in set(self.run.quantities()):
            return rms
        peak = self.matrix(quantity, "max_abs", self.weight_layers)
        return np.where((rms == 0) & (peak > 0), peak, rms)

    # -- facts for remedies -------------------------------------------------------------
    def module_type(self, name: str | None) -> str:
        for m in self.run.layers(None):
            if m.name == name:
                return m.module_type or ""
        return ""

    @functools.cached_property
    def activation_kinds(self) -> set[str]:
        kinds = set()
        for m in self.modules:
            t = (m.module_type or "").lower()
            if t in (
                "tanh",
                "sigmoid",
                "hardtanh",
                "softsign",
                "relu",
                "leakyrelu",
                "gelu",
                "silu",
            ):
                kinds.add(t)
        return kinds

    @functools.cached_property
    def has_normalisation(self) -> bool:
        return any(any(k in (m.module_type or "") for k in _NORM_TYPES) for m in self.modules)

    @functools.cached_property
    def recurrent(self) -> list[str]:
        return [m.name for m in self.modules if (m.module_type or "") in _RECURRENT]

    @property
    def depth(self) -> int:
        return len(self.weight_layers)
