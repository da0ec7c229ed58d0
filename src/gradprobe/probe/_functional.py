"""Activations applied as functions inside a ``forward`` (``torch.tanh(self.fc(x))``,
``F.relu(x)``, ``x.sigmoid()``): no module to hook, so without this the probe never knew
that ``fc``'s output goes through a tanh, and neither saturation nor dead units were measured.

Once, on the first logged forward that computes gradients, the root's ``forward`` runs under
a ``TorchFunctionMode`` that sees every call of the functions below. A call whose input is
the output of a watched module (a Linear, a Conv) that is no activation itself names that
module's activation: from then on the module's output is recorded as the activation's
*input* (``Activation.pre``): a ReLU unit is dead where it is ``<= 0`` on every example, a
tanh/sigmoid value is saturated where the function's value is within 1 % of a bound
(``Activation.count_bounds``). A module whose output two different functions read gets none.
The mode only looks: each function is called with the arguments it was given, so training
is bit for bit the same. Compiled forwards are not looked into.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import reducers as R
from ._sample import unit_max
from .modules import Activation, real_values

_T = torch.Tensor


def _sat(name: str, lo: float, hi: float) -> Activation:
    return Activation("saturating", lo, hi, name, pre=True)


def _relu(name: str = "relu") -> Activation:
    return Activation("relu", name=name, pre=True)


def _smooth(name: str) -> Activation:
    return Activation("smooth", name=name, pre=True)


# the function (as the mode sees it: the user-level call) -> the activation it applies;
# F.tanh and F.sigmoid are seen as the Tensor methods they call
FUNCTIONS: dict[Callable, Activation] = {
    **{f: _relu() for f in (torch.relu, torch.relu_, F.relu, F.relu_, _T.relu, _T.relu_)},
    F.relu6: _relu("relu6"),
    **{f: _sat("tanh", -1.0, 1.0) for f in (torch.tanh, torch.tanh_, _T.tanh, _T.tanh_)},
    **{
        f: _sat("sigmoid", 0.0, 1.0)
        for f in (torch.sigmoid, torch.sigmoid_, _T.sigmoid, _T.sigmoid_)
    },
    torch.special.expit: _sat("sigmoid", 0.0, 1.0),
    F.softsign: _sat("softsign", -1.0, 1.0),
    F.hardsigmoid: _sat("hardsigmoid", 0.0, 1.0),
    F.gelu: _smooth("gelu"),
    F.silu: _smooth("silu"),
    F.mish: _smooth("mish"),
    F.elu: _smooth("elu"),
    F.celu: _smooth("celu"),
    F.selu: _smooth("selu"),
    torch.selu: _smooth("selu"),
    F.leaky_relu: _smooth("leakyrelu"),
    F.softplus: _smooth("softplus"),
    F.hardswish: _smooth("hardswish"),
}


def hardtanh_of(args: tuple, kwargs: dict) -> Activation:
    """``F.hardtanh(x, min_val, max_val)``'s bounds (defaults -1, 1)."""
    lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    return _sat("hardtanh", float(lo), float(hi))


_MUL = (torch.mul, _T.mul, _T.__mul__, _T.__rmul__)
_ADD = (torch.add, _T.add, _T.add_, _T.__add__, _T.__radd__, _T.__iadd__, torch.sub, _T.sub,
        _T.__sub__, _T.__rsub__)  # fmt: skip
SILU = _smooth("silu")
GATES = ("tanh", "sigmoid")  # the squashing functions whose product with a tensor gates it


class _Watch(TorchFunctionMode):
    """Calls ``seen(activation, input)`` before each activation function; ``x * sigmoid(x)``
    (SiLU written out) is then seen again as ``seen(SILU, x)``. A tanh or sigmoid whose
    output multiplies another tensor (not a number, not its own input) is a gate
    (``tanh(a) * sigmoid(b)`` of WaveNet, GLU, a squeeze-excitation's ``x * sigmoid(s)``, a
    hand-written LSTM cell): ``gated(output, input)``."""

    def __init__(self, seen: Callable, gated: Callable, bypassed: Callable) -> None:
        super().__init__()
        self.seen, self.gated, self.bypassed = seen, gated, bypassed
        # id(f(x)) -> (f(x), x, f's name) for f tanh or sigmoid
        self.squashed: dict[int, tuple[torch.Tensor, torch.Tensor, str]] = {}
        self.inputs: dict[int, torch.Tensor] = {}  # id(x) -> x of each activation function

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        act = hardtanh_of(args, kwargs) if func is F.hardtanh else FUNCTIONS.get(func)
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if act is not None and x is not None:
            self.seen(act, x)  # before the call: an in-place one changes its input
            self.inputs[id(x)] = x
        elif func in _ADD and self.inputs:  # relu(x) + x: the gradient passes by the skip
            for a in args:
                if isinstance(a, torch.Tensor) and self.inputs.get(id(a)) is a:
                    self.bypassed(a)
        out = func(*args, **kwargs)
        if act is not None and act.name in GATES and x is not None and out is not x:
            self.squashed[id(out)] = (out, x, act.name)  # held: the id is not reused
        elif func in _MUL and len(args) == 2 and self.squashed:
            for a, b in (args, args[::-1]):
                entry = self.squashed.get(id(b))
                if entry is None or entry[0] is not b:
                    continue
                if entry[1] is a and entry[2] == "sigmoid":
                    self.seen(SILU, a)
                elif isinstance(a, torch.Tensor) and a is not entry[1] and a.numel() > 1:
                    self.gated(b, entry[1])
        return out


def _is_leaf(module: torch.nn.Module) -> bool:
    return next(module.children(), None) is None and next(module.parameters(), None) is None


class FunctionalHooks:
    """Part of :class:`~gradprobe.probe.probe.Probe`: the look for functional activations
    (module docstring), on the first logged forward with gradients."""

    def _install_functional(self) -> None:
        """The mode is entered by a pre-hook on the root and left by its forward hook, which
        runs even when the forward raises; both are removed after the look."""
        # slot id -> (the activation, or None: two different ones; the slot; its stats)
        self._functional: dict[int, tuple] = {}
        hooks, model = self.hooks, self.model  # type: ignore[attr-defined]
        self._gates: list[str] = []  # modules whose tanh/sigmoid output gates a tensor
        self._bypassed: set[int] = set()  # slots whose output is also added to (a skip)
        self._watch = _Watch(
            hooks.wrap(self._on_functional, "functional activations"),
            hooks.wrap(self._on_gate, "gates"),
            hooks.wrap(self._on_bypass, "functional activations bypassed"),
        )
        self._watching = False
        self._functional_hooks = [
            hooks.forward_pre(model, self._enter_functional, "(model) functional activations"),
            hooks.forward(
                model, self._leave_functional, "(model) functional activations", always_call=True
            ),
        ]

    def _enter_functional(self, module, args) -> None:
        if not self._watching and self._wants_functional():
            self._watch.__enter__()
            self._watching = True

    def _leave_functional(self, module, args, output) -> None:
        if self._watching:
            self._watching = False
            self._watch.squashed.clear()
            self._watch.inputs.clear()
            self._watch.__exit__(None, None, None)
            self._remove_functional()
            self._functional_done()

    def _remove_functional(self) -> None:
        if self._watching:  # closed mid-forward (a hook's failure): leave the mode now
            self._watching = False
            self._watch.__exit__(None, None, None)
        for hook in getattr(self, "_functional_hooks", ()):
            hook.remove()

    def _wants_functional(self) -> bool:
        hooks = self.hooks  # type: ignore[attr-defined]
        return (
            hooks.active
            and not hooks.compiled
            and not torch.compiler.is_compiling()
            and self._state.logged  # type: ignore[attr-defined]
            and torch.is_grad_enabled()
        )

    def _on_functional(self, act: Activation, t: torch.Tensor) -> None:
        """``act`` applied to ``t``: if ``t`` is the output a watched module (no activation
        itself) just made, its dead-unit or saturation count of this step is taken now, on
        the function's input (before an in-place call changes it)."""
        out = self._state.outputs.get(id(t))  # type: ignore[attr-defined]
        if out is None or out.ref() is not t:
            return
        slot, running = out.rec.slot, self._state.running  # type: ignore[attr-defined]
        if slot.act is not None:  # an activation module, or known already
            return
        if running and running[-1] is not slot and _is_leaf(running[-1].module):
            return  # inside a parameterless leaf (nn.ReLU, a Swish): its output is recorded
        old = self._functional.get(slot.id)
        if old is not None:
            if old[0] is not None and old[0].name == "sigmoid" and act == SILU:
                self._functional[slot.id] = (act, slot, None, None)  # x * sigmoid(x)
            elif old[0] != act:  # two functions read it: neither is its activation
                self._functional[slot.id] = (None, slot, None, None)
            return
        with torch.no_grad():
            unit = unit_max(t) if act.can_die and t.dim() > 0 and t.shape[0] > 0 else None
            sat = None
            if act.kind == "saturating":
                sat = R.saturated_count(real_values(t), *act.count_bounds())
        self._functional[slot.id] = (act, slot, unit, sat)

    def _on_gate(self, out: torch.Tensor, x: torch.Tensor) -> None:
        """A tanh/sigmoid's output ``out`` (of input ``x``) multiplied another tensor: the
        activation module that returned it, or the watched module whose output ``x`` is (a
        functional gate, ``torch.sigmoid(self.gate(h))``), is a gate."""
        outputs = self._state.outputs  # type: ignore[attr-defined]
        for t in (out, x):
            rec = outputs.get(id(t))
            if rec is not None and rec.ref() is t:
                if rec.rec.slot.name not in self._gates:
                    self._gates.append(rec.rec.slot.name)
                return

    def _on_bypass(self, x: torch.Tensor) -> None:
        """An activation function's input ``x`` is also added to (``relu(h) + h``): the
        gradient reaches the module that made it by the sum, whatever the function's zero
        or flat parts, so they are not that module's dead or saturated units."""
        out = self._state.outputs.get(id(x))  # type: ignore[attr-defined]
        if out is not None and out.ref() is x:
            self._bypassed.add(out.rec.slot.id)

    def _functional_done(self) -> None:
        """The looked-at forward returned: each module's activation from now on, stored in
        the run's layer (its label) and ``meta["functional_activations"]``; this step's
        forward records of those modules get the counts taken at the call."""
        st, found = self._state, self._functional  # type: ignore[attr-defined]
        names, bypassed = {}, {}
        for act, slot, unit, sat in found.values():
            if act is not None and slot.id in self._bypassed:
                bypassed[slot.name] = act.name
                continue
            if act is None:
                continue
            slot.act = act
            names[slot.name] = act.name
            for i in range(len(st.forward) - 1, -1, -1):  # its last call this step
                f = st.forward[i]
                if f.slot is slot:
                    upd = {}
                    if unit is not None:
                        upd["unit_max"], upd["samples"] = unit
                    if sat is not None:
                        upd["saturated"] = st.packer.add(sat)
                    st.forward[i] = f._replace(**upd)
                    break
            self.run.set_activation(slot.name, act.label())  # type: ignore[attr-defined]
        if names:
            self.run.set_meta("functional_activations", names)  # type: ignore[attr-defined]
        if self._gates:
            self.run.set_meta("gates", list(self._gates))  # type: ignore[attr-defined]
        if bypassed:  # not the module's activation: the skip carries its gradient
            self.run.set_meta("functional_bypassed", bypassed)  # type: ignore[attr-defined]
        found.clear()
