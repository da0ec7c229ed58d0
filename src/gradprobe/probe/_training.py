"""What is recorded on every step, logged or not, for the whole model (layer ``"(model)"``):
the loss, the learning rate(s) and the global gradient norm; and, on accelerators, whether the
weights are still finite after the optimizer's step (for the ``update`` event).

No host synchronisation on unlogged steps. On the CPU in one process a 0-dim tensor is in
host memory already, so it is read at once. Elsewhere (an accelerator, or ``distributed=True``,
where the ranks' values are combined) each value stays on the device; every ``COMPACT`` values
are stacked into one tensor (memory stays small over long gaps between logged steps), and all
of them are queued in the next logged step's packer, so they travel with its one copy (or
with one copy at close). Each value is stored as a row at its own step.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import NamedTuple

import torch

from ..errors import InvalidInputError
from . import reducers as R
from ._distributed import is_shard, local

MODEL = "(model)"
COMPACT = 256  # device values stacked into one tensor


class Key(NamedTuple):
    """Where a queued device value lands: a row ``(step, quantity, stat)``; ``how`` it is read:
    "value", "sqrt" (a squared norm), "mean" (a sum over ranks), "flag" (not a row: > 0 when
    the weights held NaN/Inf after the step)."""

    step: int
    quantity: str
    stat: str
    how: str


def check_loss(loss: object) -> object:
    """A loss given to ``probe.step``: a number or a one-value tensor (NaN/Inf are data)."""
    if loss is None or (isinstance(loss, torch.Tensor) and loss.numel() == 1):
        if isinstance(loss, torch.Tensor) and loss.is_complex():
            raise InvalidInputError("probe.step(loss=...) got a complex tensor; pass a real loss")
        return loss
    if isinstance(loss, torch.Tensor):
        raise InvalidInputError(
            f"probe.step(loss=...) needs one value, got a tensor of shape {tuple(loss.shape)}; "
            "reduce it first, e.g. loss.mean()"
        )
    if isinstance(loss, bool) or not hasattr(loss, "__float__"):
        raise InvalidInputError(
            f"probe.step(loss=...) needs a number or a one-value tensor, got {type(loss).__name__}"
        )
    return float(loss)  # type: ignore[arg-type]


#: the hyper-parameters of a param group the diagnosis reads (SGD's momentum and dampening,
#: Adam's eps: 0 makes a gradient of exactly 0 divide 0 by 0)
HYPER = ("momentum", "dampening", "nesterov", "betas", "eps", "weight_decay", "alpha",
         "centered", "lr_decay", "amsgrad", "maximize")  # fmt: skip


def _plain(v: object) -> object:
    """A hyper-parameter as a JSON number, bool or list of numbers (None if it is not one)."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (tuple, list)) and all(isinstance(x, (int, float)) for x in v):
        return [float(x) for x in v]
    return None


def optimizer_meta(optimizer) -> dict:
    """``run.meta["optimizer"]``: the optimizer's class name, its number of param groups,
    whether they share their hyper-parameters and learning rate, and the first group's
    hyper-parameters of :data:`HYPER` that it has."""
    groups = list(getattr(optimizer, "param_groups", ()))
    out: dict = {"type": type(optimizer).__name__, "groups": len(groups)}
    if not groups:
        return out
    keys = [k for k in HYPER if _plain(groups[0].get(k)) is not None]
    out.update({k: _plain(groups[0][k]) for k in keys})

    def same(g: dict) -> bool:
        return all(_plain(g.get(k)) == out[k] for k in keys) and _plain(g.get("lr")) == _plain(
            groups[0].get("lr")
        )

    out["groups_alike"] = all(same(g) for g in groups[1:])
    return out


def is_grad_scaler(obj) -> bool:
    """A ``torch.amp.GradScaler`` (or one of its kind: ``get_scale``, ``is_enabled`` and
    ``unscale_``)?"""
    return obj is not None and all(
        callable(getattr(obj, a, None)) for a in ("get_scale", "is_enabled", "unscale_")
    )


def scale_of(scaler) -> object:
    """A ``torch.amp.GradScaler``'s current scale, the factor of the backward's gradients
    (1.0 when it is disabled): a float on the CPU; on an accelerator a copy of its scale
    tensor (``scaler.update()`` changes it in place), read with the step's numbers."""
    if not scaler.is_enabled():
        return 1.0
    t = getattr(scaler, "_scale", None)
    if isinstance(t, torch.Tensor) and not R.on_host(t.device):
        return t.detach().reshape(()).clone()
    return float(scaler.get_scale())


def learning_rates(optimizer) -> list:
    """``lr`` of every param group (floats, or tensors as the optimizer holds them)."""
    return [g.get("lr") for g in getattr(optimizer, "param_groups", ()) if "lr" in g]


class TrainingScalars:
    """The per-step scalars of a probe, from the step's end to the run."""

    def __init__(self, reducer=None) -> None:
        self.reducer = reducer  # distributed: values are combined across ranks
        self.rows: dict[int, list[tuple]] = defaultdict(list)  # step -> rows read on the host
        self._loose: list[tuple[Key, torch.Tensor, str]] = []
        self._chunks: list[tuple[list[Key], torch.Tensor, str]] = []
        self.grad_sq: dict[int, object] = {}  # parameter index -> ‖g‖² of this step (latest)
        self.dist_grad_sq: torch.Tensor | None = None  # distributed: read after the sync
        self.last_grad_norm: tuple[int, float] | None = None  # (step, value) on the host

    @property
    def pending(self) -> bool:
        return bool(self.rows or self._loose or self._chunks)

    def _host(self, t: torch.Tensor) -> bool:
        return self.reducer is None and R.on_host(t.device)

    def add(self, key: Key, value, op: str = "rank0") -> None:
        """A value of step ``key.step``: a number, or a tensor (read at once on the host)."""
        if isinstance(value, torch.Tensor):
            t = value.detach().reshape(())
            if not self._host(t):
                self._loose.append((key, t, op))
                if len(self._loose) >= COMPACT:
                    self._compact()
                return
            value = t.item()
        self._row(key, float(value))

    def _row(self, key: Key, v: float, combined: bool = False) -> None:
        if key.how == "sqrt":
            v = math.sqrt(v) if v >= 0 else math.nan
        last = self.last_grad_norm
        if key.quantity == "grad_norm" and (last is None or key.step >= last[0]):
            self.last_grad_norm = (key.step, v)
        if key.how == "flag":
            if v > 0:
                self.rows[key.step].append(("flag",))
            return
        if key.how == "mean" and combined and self.reducer is not None:
            v /= self.reducer.world  # the sum over ranks -> their mean
        self.rows[key.step].append((MODEL, key.quantity, key.stat, v))

    def _compact(self) -> None:
        groups: dict[tuple, tuple[list[Key], list[torch.Tensor]]] = {}
        for key, t, op in self._loose:
            keys, ts = groups.setdefault((t.dtype, t.device, op), ([], []))
            keys.append(key)
            ts.append(t)
        for (_, _, op), (keys, ts) in groups.items():
            self._chunks.append((keys, torch.stack(ts), op))
        self._loose = []

    # -- per step ------------------------------------------------------------------------
    def param_grad(self, index: int, g: torch.Tensor) -> torch.Tensor:
        """``‖g‖²`` of a parameter's gradient on an unlogged step (the latest accumulation
        wins: it is what the optimizer sees); the same value serves the NaN/Inf search."""
        sq = R.sq_norm(g)
        self.grad_sq[index] = sq.item() if self._host(sq) else sq
        return sq

    def dist_grads(self, params: list, rank: int) -> None:
        """Distributed, unlogged step, after the gradient sync: ``Σ‖g‖²`` to be summed over
        ranks (shards from every rank, replicated gradients from rank 0 only)."""
        total = None
        with torch.no_grad():
            for _, p in params:
                g = p.grad
                if g is None or g.numel() == 0:
                    continue
                if total is None:  # every rank queues one value (the same packed layout)
                    total = torch.zeros((), dtype=torch.float64, device=local(g).device)
                if rank == 0 or is_shard(g):
                    total = total + R.sq_norm(local(g)).double()
        self.dist_grad_sq = total

    def end_step(self, step: int, logged: bool, loss, lrs, weights_flag=None, scale=None) -> None:
        """The step's loss, learning rates, global gradient norm (unlogged steps; a logged
        step's comes from its moments; divided by a GradScaler's ``scale``, also recorded)
        and weight flag (accelerators)."""
        if loss is not None:
            self.add(Key(step, "loss", "value", "mean"), loss, op="sum")
        self.add_lrs(step, lrs)
        if scale is not None:
            self.add(Key(step, "grad_scale", "value", "mean"), scale, op="sum")
        if not logged:
            if self.dist_grad_sq is not None:
                total = self.dist_grad_sq
                if scale is not None:
                    total = total / (scale * scale)
                self.add(Key(step, "grad_norm", "global", "sqrt"), total, op="sum")
            elif self.grad_sq:
                vals = list(self.grad_sq.values())
                total: object
                if isinstance(vals[0], torch.Tensor):
                    total = torch.stack([v.double() for v in vals]).sum()  # type: ignore[attr-defined]
                else:
                    total = math.fsum(vals)  # type: ignore[arg-type]
                if scale is not None:  # ‖g‖² of the scaled gradients: / scale²
                    total = total / (scale * scale)  # type: ignore[operator]
                self.add(Key(step, "grad_norm", "global", "sqrt"), total)
        self.grad_sq = {}
        self.dist_grad_sq = None
        if weights_flag is not None:
            self.add(Key(step, "", "", "flag"), weights_flag, op="sum")

    def late(self, step: int, loss, lrs) -> None:
        """``probe.step(loss=...)`` right after ``optimizer=`` ended ``step``."""
        if loss is not None:
            self.add(Key(step, "loss", "value", "mean"), loss, op="sum")
        self.add_lrs(step, lrs)

    def add_lrs(self, step: int, lrs) -> None:
        if lrs is None:
            return
        lrs = list(lrs) if isinstance(lrs, (list, tuple)) else [lrs]
        if not lrs:
            return
        self.add(Key(step, "lr", "value", "value"), lrs[0])
        plain = [v for v in lrs if not isinstance(v, torch.Tensor)]
        if len(lrs) > 1 and (len(plain) < len(lrs) or len(set(plain)) > 1):
            for i, v in enumerate(lrs):
                self.add(Key(step, "lr", f"group{i}", "value"), v)

    # -- to the run ----------------------------------------------------------------------
    def queue(self, pk) -> list[tuple[list[Key], slice]]:
        """Put every device value in ``pk`` (the logged step's packer); read them back with
        :meth:`take` after its copy."""
        self._compact()
        out = [(keys, pk.add(t, op=op)) for keys, t, op in self._chunks]
        self._chunks = []
        return out

    def take(
        self, queued, host: list[float], combined: bool = True
    ) -> tuple[dict[int, list[tuple]], list[int]]:
        """Rows per step (everything pending), and the steps whose weights were not finite.
        ``combined``: the packer combined the values across ranks (distributed)."""
        for keys, sl in queued:
            for key, v in zip(keys, host[sl], strict=True):
                self._row(key, float(v), combined)
        rows, self.rows = self.rows, defaultdict(list)
        bad = sorted(s for s, rs in rows.items() if ("flag",) in rs)
        return {s: [r for r in rs if len(r) == 4] for s, rs in rows.items()}, bad

    def flush(self):
        """At close: everything pending, with one copy of its own (no collective: other
        ranks may be gone, so these are this rank's own values)."""
        pk = R.Packer()
        queued = self.queue(pk)
        return self.take(queued, pk.to_host() if queued else [], combined=False)


def weights_flags(params: list) -> torch.Tensor | None:
    """Per trainable parameter, 1.0 (on the device) when it holds NaN/Inf: one fused max|w|
    (finite iff every value is; a 2-norm would overflow for large finite weights)."""
    ws = [local(p.detach()) for _, p in params if p.requires_grad and p.numel()]
    if not ws:
        return None
    top = torch._foreach_norm(ws, math.inf)
    return (~torch.isfinite(torch.stack([n.float() for n in top]))).float()


def first_nonfinite_param(params: list) -> str | None:
    """The first parameter holding NaN/Inf (reads the device: for the rare case only)."""
    with torch.no_grad():
        for name, p in params:
            if p.numel() and not bool(torch.isfinite(local(p.detach())).all()):
                return name
    return None
