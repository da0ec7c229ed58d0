"""What the rules read from a Run: layer order, blocks, the profiles across depth, facts.

Depth is counted in blocks (:mod:`gradprobe.diagnose.blocks`); the depth rule compares, per
block of the chain (the blocks, or in a plain stack its weight layers but the output one):

- ``backward``: ‖∂L/∂h‖ at the block's output, the back-propagated gradient. The batch's
  norm is √batch × the per-example one (in mean square), so between blocks it compares
  per-example norms: the pooling, the token count, the final norm and the loss's mean all
  divide every block's gradient alike and cancel.
- ``relative``: ‖∂L/∂θ‖ / ‖θ‖ over the block's parameters: the step SGD takes on them,
  relative to their size, per unit of learning rate, i.e. how fast that block learns.

See docs/DIAGNOSIS.md ("Depth: what is compared, and against what") for the derivation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..run import Run
from .blocks import Block, Structure, is_norm, parallel_lists, structure
from .thresholds import Thresholds

_RECURRENT = ("RNN", "LSTM", "GRU")
_ACTIVATION_TYPES = ("tanh", "sigmoid", "hardtanh", "softsign", "relu", "leakyrelu", "gelu", "silu")


@dataclass(frozen=True)
class Profile:
    """Per-layer (or per-block) values at one step, lowest first, and their fitted factor."""

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
        self._cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}

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

    @functools.cached_property
    def _quantities(self) -> set[tuple[str, str]]:
        return set(self.run.quantities())

    def matrix(self, quantity: str, stat: str, layers: list[str]):
        """array[layer, step] of (quantity, stat) for ``layers`` (NaN where missing)."""
        rows = self._rows(quantity, stat)
        out = np.full((len(layers), len(self.steps)), np.nan)
        for j, name in enumerate(layers):
            row = rows.get(name)
            if row is not None:
                out[j] = row
        return out

    def _rows(self, quantity: str, stat: str) -> dict[str, np.ndarray]:
        """layer -> its values over ``steps``, read from the run once per (quantity, stat)."""
        key = (quantity, stat)
        if key not in self._cache:
            names, steps, values = self.run.matrix(quantity, stat)
            known = [k for k, s in enumerate(steps) if s in self._step_index]
            col = [self._step_index[steps[k]] for k in known]
            rows = {}
            for i, name in enumerate(names):
                row = np.full(len(self.steps), np.nan)
                row[col] = values[i, known]
                rows[name] = row
            self._cache[key] = rows
        return self._cache[key]

    @functools.cached_property
    def _step_index(self) -> dict[int, int]:
        return {s: i for i, s in enumerate(self.steps)}

    # -- the Glorot profile over every weight layer (plain stacks; runs without norms) ------
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
        return self._rms("grad_output", self.weight_layers)

    @functools.cached_property
    def activation_matrix(self) -> np.ndarray:
        return self._rms("activation", self.weight_layers)

    def _rms(self, quantity: str, layers: list[str], stat: str = "rms") -> np.ndarray:
        """``stat`` (rms or norm) per layer and step; a value of exactly 0 where max|x| > 0
        (a sum of squares that underflowed in float32, below ~1e-23) is replaced by max|x|,
        an upper bound that keeps the layer in the profile: a layer that small is never
        "missing"."""
        values = self.matrix(quantity, stat, layers)
        if not (values == 0).any() or (quantity, "max_abs") not in self._quantities:
            return values
        peak = self.matrix(quantity, "max_abs", layers)
        return np.where((values == 0) & (peak > 0), peak, values)

    # -- blocks ------------------------------------------------------------------------------
    @functools.cached_property
    def structure(self) -> Structure:
        tied = self.run.meta.get("tied_params")
        return structure(
            self.run.layers("module"),
            self.run.layers("param"),
            tied if isinstance(tied, dict) else None,
            parallel_lists(self.run.meta),
        )

    @functools.cached_property
    def norm_place(self) -> str | None:
        """Where the blocks' norms sit: "pre", "post" (each block's output is its last
        norm's, value for value at the first step: the norm after the residual sum) or None."""
        s = self.structure
        if s.norm_place != "post":
            return s.norm_place
        if not self.steps or not s.last_norm:
            return None
        names: list[str] = []
        for b in s.blocks:
            norm = s.last_norm.get(b.name)
            if b.output is None or norm is None:
                return None
            names += [b.output, norm]
        rms = self.matrix("activation", "rms", names)[:, 0]
        same = np.isclose(rms[0::2], rms[1::2], rtol=1e-6, atol=0) & np.isfinite(rms[0::2])
        return "post" if same.all() else None

    @functools.cached_property
    def chain(self) -> list[Block]:
        """The blocks the depth judgement compares, lowest first: a plain stack's weight
        layers but its output layer (whose gradient is the loss's, of another shape)."""
        s = self.structure
        return list(s.blocks) if not s.plain else list(s.blocks[:-1])

    @functools.cached_property
    def backward_matrix(self) -> np.ndarray:
        """array[block, step]: ‖∂L/∂(block output)‖ (the batch's norm; rms for runs that
        stored only rms, which for same-sized outputs gives the same ratios)."""
        outputs = [b.output or b.name for b in self.chain]
        stat = "norm" if ("grad_output", "norm") in self._quantities else "rms"
        return self._rms("grad_output", outputs, stat)

    @functools.cached_property
    def segments(self) -> list[list[int]]:
        """The chain's indices by segment (the group each block came from), longest first:
        an encoder and a decoder are two chains. Between them the gradient passes through
        cross-attention, whose gain is its init's (std 0.02 at width 32: 0.11 per matrix, so
        a BART encoder read 0.004 of its decoder), not depth: each is judged on its own."""
        by: dict[str, list[int]] = {}
        for j, b in enumerate(self.chain):
            by.setdefault(b.segment, []).append(j)
        return sorted(by.values(), key=lambda idx: (-len(idx), idx[0]))

    def _shared(self, j: int) -> list[str]:
        """Block j's parameters that every block of its segment has, by relative name (a
        stage's downsampling layer, a first block's shortcut or relative-position bias are
        not compared with blocks that lack them; all of them in a plain stack)."""
        b = self.chain[j]
        params = list(b.params) or list(b.matrices)
        if self.structure.plain:
            return params
        seg = next(idx for idx in self.segments if j in idx)
        rel = [{p[len(self.chain[i].name) + 1 :] for p in self.chain[i].params} for i in seg]
        common = set.intersection(*rel) if rel else set()
        shared = [p for p in params if p[len(b.name) + 1 :] in common]
        return shared or params

    @functools.cached_property
    def relative_matrix(self) -> np.ndarray:
        """array[block, step]: ‖∂L/∂θ‖ / ‖θ‖ over the block's trained parameters that its
        segment's blocks share (NaN without both norms: frozen blocks, runs that did not
        record them). A Hugging Face ConvNeXt stage holds its downsampling conv: with the
        layer scale at 1e-6 it alone set the stage's gradient, 1e-4 of the next stage's."""
        out = np.full((len(self.chain), len(self.steps)), np.nan)
        if not {("param_grad", "norm"), ("weight", "norm")} <= self._quantities:
            return out
        for j in range(len(self.chain)):
            params = self._shared(j)
            if not params:
                continue
            g = self.matrix("param_grad", "norm", params)
            w = self.matrix("weight", "norm", params)
            trained = np.isfinite(g)  # frozen parameters have no gradient row
            g2 = np.where(trained, g, 0.0) ** 2
            w2 = np.where(trained & np.isfinite(w), w, 0.0) ** 2
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.sqrt(g2.sum(0)) / np.sqrt(w2.sum(0))
            out[j] = np.where(trained.any(0) & (w2.sum(0) > 0), r, np.nan)
        return out

    def block_profiles(self, which: str, step_index: int) -> list[Profile]:
        """The ``backward`` or ``relative`` profile of each segment at a step (finite, > 0
        values), longest segment first; none with fewer than two blocks (``min_layers``
        weight layers in a plain stack)."""
        values = (self.backward_matrix if which == "backward" else self.relative_matrix)[
            :, step_index
        ]
        need = 2 if not self.structure.plain else max(2, self.t.min_layers - 1)
        out = []
        for idx in self.segments:
            keep = [j for j in idx if np.isfinite(values[j]) and values[j] > 0]
            if len(keep) >= need:
                out.append(Profile([self.chain[j].name for j in keep], values[keep]))
        return out

    def block_profile(self, which: str, step_index: int) -> Profile | None:
        """The longest segment's profile (the whole chain where there is one segment)."""
        found = self.block_profiles(which, step_index)
        return found[0] if found else None

    def stream_growth(
        self, step_index: int, against_norms: bool = False
    ) -> list[tuple[str, float]]:
        """(block, rms of its output / rms of what entered it) for each block that has both:
        how much one block scales the residual stream in the forward pass.

        ``against_norms``: what entered is taken at no less than the largest rms of the
        block's own norm layers, so the ratio says what the block's weights add. A Pre-LN
        block's branches read the stream normalised, so a small stream (a std-0.02 token
        embedding, RWKV's 1e-4 one) grows by the branches' unit-scale output whatever their
        weights (an N(0, 1) GPT-2 still reads 31-41)."""
        if self.structure.plain:
            return []
        order = sorted(self.modules, key=lambda m: m.position)
        rms = dict(zip([m.name for m in order], self._rms("activation", [m.name for m in order])[
            :, step_index
        ], strict=True))  # fmt: skip
        out = []
        for b in self.structure.blocks:
            # what ran last before the block is what fed it: the previous block, or the
            # stem's last module (an embedding's dropout, a decoder's own embedding)
            inside = b.name + "."
            before = [m for m in order if m.position < b.start and not m.name.startswith(inside)]
            source = before[-1].name if before else None
            into, result = rms.get(source, np.nan), rms.get(b.output, np.nan)
            norms = [rms[m.name] for m in order if m.name.startswith(inside)
                     and is_norm(m.module_type) and np.isfinite(rms[m.name])]  # fmt: skip
            into = max([into, *norms]) if against_norms else into
            if np.isfinite(into) and np.isfinite(result) and into > 0:
                out.append((b.name, float(result / into)))
        return out

    # -- facts for remedies -------------------------------------------------------------
    def module_type(self, name: str | None) -> str:
        for m in self.run.layers(None):
            if m.name == name:
                return m.module_type or ""
        return ""

    @functools.cached_property
    def activation_kinds(self) -> set[str]:
        """The activations in use, by name: "relu", "gelu", "tanh", "sigmoid", ... (from
        the module types and the probe's labels, which see Hugging Face's classes and the
        functional activation of a Transformer layer)."""
        kinds = set()
        for m in self.modules:
            t = (m.module_type or "").lower()
            if t in _ACTIVATION_TYPES:
                kinds.add(t)
            label = m.activation or ""
            if label == "relu":
                kinds.add("relu")
            elif label.startswith("smooth:"):
                kinds.add(label.split(":", 1)[1])
        fns = {"relu" if f == "relu6" else f for f in self.functional_activations.values()}
        return kinds | fns

    @functools.cached_property
    def gates(self) -> set[str]:
        """Modules whose tanh/sigmoid output multiplies another tensor (``meta["gates"]``,
        probe/_functional.py): WaveNet's ``tanh(f) * sigmoid(g)``, a GLU, a squeeze-excitation;
        an activation module, or the module a functional gate reads."""
        found = self.run.meta.get("gates")
        return {str(n) for n in found} if isinstance(found, list) else set()

    @functools.cached_property
    def functional_activations(self) -> dict[str, str]:
        """``{module: function}``: the activation applied as a function to a module's
        output inside a ``forward`` ("tanh", "sigmoid", "relu", ...; probe/_functional.py)."""
        found = self.run.meta.get("functional_activations")
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    @functools.cached_property
    def has_normalisation(self) -> bool:
        return any(is_norm(m.module_type) for m in self.modules)

    @functools.cached_property
    def recurrent(self) -> list[str]:
        return [m.name for m in self.modules if (m.module_type or "") in _RECURRENT]

    @property
    def depth(self) -> int:
        """Blocks (or, in a plain stack, weight layers)."""
        return self.structure.depth if self.structure.blocks else len(self.weight_layers)
