"""Combining a logged step's numbers across the ranks of ``torch.distributed`` (DDP, FSDP2).

``watch(model, distributed=True)`` gives the probe a :class:`Reducer`. Its packer then
remembers how each queued number combines (the ``op`` of ``Packer.add``), and just before
the step's one device-to-host copy the reducer combines the packed buffer across ranks with
**two collectives per logged step, whatever the model's size**: one ``all_reduce(MAX)`` of a
packed tensor (maxima, negated minima, histogram ranges, per-unit maxima for dead units,
first-non-finite codes with their rank), then one ``all_reduce(SUM)`` of another (Σx, Σx²,
counts, histogram bins, element counts). Unlogged steps issue no collective. Checks that need
the host (the layout checksum, the summed element counts) run after the one copy.

What each op means (``c`` is the gradient scale, ``1/world_size``: DDP and FSDP average the
ranks' gradients, so ∂L/∂output on a rank is ``world_size`` times that of the loss being
optimised; ``c`` makes the combined numbers those of one process on the whole batch):

=================  ===========================================================================
op                 combination
=================  ===========================================================================
``sum``            summed (counts: saturated values, ...)
``moments``        ``[Σx, Σx², min, max, n_bad]``: sums summed, min/max reduced, NaN/Inf counts
                   summed; the element count ``n`` of the entry is summed too
``moments_grad``   the same, of a gradient: scaled by ``c`` (``Σx·c``, ``Σx²·c²``, ...)
``moments_shard``  the same, of a shard (FSDP2 ``DTensor``): sums of shards, no scaling
``rank0``          the value of rank 0 (replicated: DDP weights, gradients after DDP's sync)
``norms_grad``     per-time-step gradient norms: ``sqrt(Σ_ranks (c·‖g‖)²)``
``norms_shard``    a norm of one shard: ``sqrt(Σ_shards ‖w‖²)`` (global norm under FSDP2)
``hist[_grad]``    ``[r, counts[bins+2], zeros, nan, +inf, -inf]``: the global range ``R`` is the
                   max of the ranks' ``r`` (rounded up to powers of two, so that ``R/r`` is an
                   integer ``k`` and ``k`` local bins fit exactly in one global bin); each rank
                   merges its bins into the global grid, then the bins are summed
``("dead", m)``    the count of units whose max over the *global* batch is ``<= 0``: the
                   per-unit maxima ``m`` are reduced with MAX, then counted
``code``           a first-non-finite code ``step·2²⁰ + position``: the minimum over ranks,
                   and the rank it came from
=================  ===========================================================================

Parameter gradients are not read by their hooks (under DDP those see the local, unsynced
gradient) but at the very end of the backward pass, after DDP has averaged them (an autograd
end-of-backward callback, queued so that it runs after DDP's and FSDP's own), so
``param_grad`` is the gradient the optimizer sees; under FSDP2
they are the local shards of the reduced gradient, summed across shards (``norm`` is the
global norm). Weights are replicated under DDP (rank 0's), sharded under FSDP2 (global
norms).
"""

from __future__ import annotations

import math
import sys
import zlib

import torch

from ..errors import GradprobeError, InvalidInputError
from . import reducers as R

MOMENTS_OPS = ("moments", "moments_grad", "moments_shard", "rank0")


def _dtensor_type():
    """``DTensor`` (FSDP2's shards) if its module is loaded: a DTensor cannot exist before,
    and importing it costs ~1 s, which a single-process probe should not pay."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def is_shard(t: torch.Tensor) -> bool:
    cls = _dtensor_type()
    return cls is not None and isinstance(t, cls)


def local(t: torch.Tensor) -> torch.Tensor:
    """The local part of a ``DTensor`` (FSDP2 shard); any other tensor as it is."""
    return t.to_local() if is_shard(t) else t


class Reducer:
    """Combines a probe's packed buffer across the ranks of ``group`` (see module docstring)."""

    def __init__(self, group=None, grad_average: bool = True) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.c = 1.0 / self.world if grad_average else 1.0
        self.collectives = 0  # how many collectives this reducer has issued (tests, benchmarks)
        self._state = None  # () -> the probe's StepState
        self._on_backward_end = None  # packs the synced parameter gradients
        self._queued = False

    def bind(self, state, on_backward_end) -> None:
        """``state()``: the probe's current StepState; ``on_backward_end()``: called once
        the whole backward (and the gradient sync) of a logged step is done."""
        self._state, self._on_backward_end = state, on_backward_end

    # -- parameter gradients after DDP's/FSDP's own end-of-backward work ------------------
    def after_backward(self) -> None:
        """Called from a gradient hook on a logged step: read ``.grad`` of every parameter
        once the whole backward (and the gradient synchronisation) is done."""
        if self._queued:
            return
        self._queued = True
        engine = torch.autograd.Variable._execution_engine

        def first() -> None:  # DDP queues its finalisation late in the backward: go after it
            engine.queue_callback(self._read_param_grads)

        engine.queue_callback(first)

    def _read_param_grads(self) -> None:
        self._queued = False
        if self._on_backward_end is not None:
            self._on_backward_end()

    # -- the combination -----------------------------------------------------------------
    def __call__(self, x: torch.Tensor, pk) -> torch.Tensor:
        """``x``: the packed buffer (float64, position order, on the device). Returns the
        combined buffer, followed by the ranks of first non-finite values (see ``pk.rank_of``)."""
        W, c = self.world, self.c
        dev = x.device
        x = x.clone()
        scale = [1.0] * len(x)
        sums, mins, maxs, norms, rank0 = [], [], [], [], []
        hists, deads, codes, bads = [], [], [], []
        for start, stop, op in pk.ops:
            kind = op[0] if isinstance(op, tuple) else op
            grad = kind.endswith("_grad")
            if kind in MOMENTS_OPS:
                if kind == "rank0":
                    rank0 += range(start, stop)
                    continue
                s, at = (c if grad else 1.0), R.AT
                scale[start + at.s], scale[start + at.q] = s, s * s
                scale[start + at.lo], scale[start + at.hi] = s, s
                sums += (start + at.s, start + at.q, start + at.nonfinite)
                mins.append(start + at.lo)
                maxs.append(start + at.hi)
                bads.append(start + at.nonfinite)
            elif kind in ("hist", "hist_grad"):
                if grad:
                    scale[start] = c
                hists.append((start, stop - start - 5))  # r, counts[bins + 2], 4 counts
                sums += range(stop - 4, stop)
            elif kind in ("norms_grad", "norms_shard"):
                for i in range(start, stop):
                    scale[i] = c if grad else 1.0
                norms += range(start, stop)
            elif kind == "dead":
                deads.append((start, op[1]))
            elif kind == "code":
                codes.append(start)
            else:  # "sum"
                sums += range(start, stop)
        if any(s != 1.0 for s in scale):
            x.mul_(torch.tensor(scale, dtype=x.dtype).to(dev))
        i_max, i_min, i_sum, i_norm, i_r0, i_code, i_bad, i_range = (
            torch.tensor(v, dtype=torch.long).to(dev)
            for v in (maxs, mins, sums, norms, rank0, codes, bads, [h[0] for h in hists])
        )
        entries = [e for e in self._entries() if e[1] in MOMENTS_OPS]
        sig = float(zlib.crc32(repr([(a, b, str(o)[:16]) for a, b, o in pk.ops]).encode()))

        # 1) MAX: maxima, -minima (NaN as a flag: MAX of NaN is unspecified), histogram
        #    ranges, unit maxima, -(code·W + rank), -(rank with NaN/Inf), the layout checksum
        rank = torch.full((), float(self.rank), dtype=x.dtype, device=dev)
        hi, lo = x[i_max], x[i_min]
        nan = (hi.isnan() | lo.isnan()).to(x.dtype)
        bad_rank = torch.where(x[i_bad] > 0, rank, torch.full_like(rank, W))
        unit = [m.detach().reshape(-1).to(dev, x.dtype) for _, m in deads]
        parts = [
            hi.nan_to_num(nan=-math.inf),
            (-lo).nan_to_num(nan=-math.inf),
            nan,
            x[i_range],
            *unit,
            -(x[i_code] * W + rank),
            -bad_rank,
            torch.tensor([sig, -sig], dtype=x.dtype, device=dev),
        ]
        buf = torch.cat(parts)
        self._all_reduce(buf, self.dist.ReduceOp.MAX)
        out = iter(torch.split(buf, [p.numel() for p in parts]))
        hi, lo, nan = next(out), -next(out), next(out) > 0
        x[i_max] = torch.where(nan, math.nan, hi)
        x[i_min] = torch.where(nan, math.nan, lo)
        ranges = next(out)
        unit = [next(out) for _ in deads]
        code_best, bad_best, got = -next(out), -next(out), next(out)

        # 2) histograms: merge each rank's bins into the bins of the global range
        binned = []
        for (start, nb), big in zip(hists, ranges, strict=True):
            counts = x[start + 1 : start + 1 + nb]
            k = torch.clamp(torch.round(big / x[start]), min=1.0)  # an integer: powers of two
            half = (nb - 2) // 2
            j = torch.ceil((torch.arange(nb, dtype=x.dtype, device=dev) - half) / k) + half
            j[0], j[-1] = 0, nb - 1  # below / above the range stay there
            binned.append(torch.zeros_like(counts).index_add_(0, j.long(), counts))
            x[start] = big

        # 3) SUM: sums, squared norms, rank 0's values, merged bins, element counts
        is0 = 1.0 if self.rank == 0 else 0.0
        ns = torch.tensor(
            [n * (is0 if op == "rank0" else 1.0) for n, op, _ in entries], dtype=x.dtype
        ).to(dev)
        parts = [x[i_sum], x[i_norm].square(), x[i_r0] * is0, *binned, ns]
        buf = torch.cat(parts)
        self._all_reduce(buf, self.dist.ReduceOp.SUM)
        out = iter(torch.split(buf, [p.numel() for p in parts]))
        x[i_sum] = next(out)
        x[i_norm] = next(out).sqrt()
        x[i_r0] = next(out)
        for (start, nb), _ in zip(hists, binned, strict=True):
            x[start + 1 : start + 1 + nb] = next(out)
        ns = next(out)
        for (pos, _), m in zip(deads, unit, strict=True):
            x[pos] = (m <= 0).sum()

        # first non-finite: the minimum code, and the rank that had it (-1: none)
        code = torch.floor(code_best / W)
        x[i_code] = code
        code_rank = torch.where(code_best < 2**62 * W, code_best - code * W, -1.0)
        bad_rank = torch.where(bad_best < W, bad_best, -1.0)
        size = len(x)
        pk.rank_at = {p: size + i for i, p in enumerate(codes + bads)}
        n_ranks = len(codes) + len(bads)

        def after_copy(tail: list[float]) -> None:  # on the host, after the one copy
            if tail[-2] != sig or tail[-1] != -sig:
                raise GradprobeError(
                    "the ranks recorded different things in this logged step (another model, "
                    "schedule or number of forward calls); every rank must watch the same "
                    "model with the same `every=` and call probe.step() at the same points"
                )
            self._set_counts(entries, tail[n_ranks : n_ranks + len(entries)])

        pk.after_copy = after_copy
        return torch.cat([x, code_rank, bad_rank, ns, got])

    def _entries(self) -> list[tuple]:
        """``(n, op, (list, index))`` of every moments entry of the step, in packing order."""
        st = self._state()
        ops = {a: o for a, _, o in st.packer.ops}
        out = []
        for calls in (st.forward, st.backward):
            for i, c in enumerate(calls):
                out.append((c.n, ops.get(c.moments.start), (calls, i)))
        return out

    def _set_counts(self, entries, counts: list[float]) -> None:
        """The element counts of every moments entry, summed over ranks, back into the step."""
        for (_, _, (calls, i)), n in zip(entries, counts, strict=True):
            calls[i] = calls[i]._replace(n=round(n))

    def _all_reduce(self, buf: torch.Tensor, op) -> None:
        self.dist.all_reduce(buf, op=op, group=self.group)
        self.collectives += 1


def resolve(distributed, group=None) -> Reducer | None:
    """``distributed``: False (default), True, or ``"auto"`` (on when a process group of more
    than one rank is initialised)."""
    if distributed is False or distributed is None:
        return None
    if distributed not in (True, "auto"):
        raise InvalidInputError(f"distributed must be True, False or 'auto', got {distributed!r}")
    import torch.distributed as dist

    ready = dist.is_available() and dist.is_initialized()
    if not ready:
        if distributed == "auto":
            return None
        raise InvalidInputError(
            "watch(..., distributed=True) needs an initialised process group; call "
            "torch.distributed.init_process_group(...) first, or pass distributed='auto'"
        )
    if dist.get_world_size(group) == 1 and distributed == "auto":
        return None
    return Reducer(group)


def rank_path(path, rank: int):
    """``runs/a.sqlite`` -> ``runs/a.rank1.sqlite`` (a folder gets ``run.rank1.sqlite``)."""
    from pathlib import Path

    from ..run import FILENAME

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / FILENAME
    return p.with_name(f"{p.stem}.rank{rank}{p.suffix}")


__all__ = ["Reducer", "is_shard", "local", "rank_path", "resolve"]
