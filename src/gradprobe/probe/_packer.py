"""The packer: a step's device numbers, copied to the host in one transfer.

Hooks queue 0-dim/1-dim device tensors (and plain numbers) with ``Packer.add``, which returns
where they will land; ``to_host()`` concatenates them (one kernel per dtype) and copies the
result to the host as one float64 array, once per logged step. Distributed, ``reduce_fn``
combines the packed buffer across ranks just before that copy (probe/_distributed.py).
"""

from __future__ import annotations

import numpy as np
import torch

Number = int | float


class Packer:
    """Collects device tensors (and plain numbers) during a step; ``to_host()`` copies once."""

    def __init__(self, reduce_fn=None) -> None:
        self._items: list = []  # 0-dim/1-dim tensors and numbers, in position order
        self._size = 0
        # distributed (probe/_distributed.py): how each item combines across ranks, applied to
        # the packed device buffer just before the copy; None: a single process, no cost
        self.reduce_fn = reduce_fn
        self.ops: list[tuple[int, int, object]] = []
        self.rank_at: dict[int, int] = {}
        self.after_copy = None  # set by reduce_fn: checks on the host, after the copy
        self._tail: list[float] = []

    def add(self, *items: torch.Tensor | Number, op: object = "sum") -> slice:
        """Queue 0-dim/1-dim tensors or numbers; returns where they land in ``to_host()``.
        ``op``: how they combine across ranks when distributed (see probe/_distributed.py)."""
        start = size = self._size
        for t in items:
            size += t.numel() if isinstance(t, torch.Tensor) and t.dim() else 1
        self._items.extend(items)
        self._size = size
        if self.reduce_fn is not None:
            self.ops.append((start, size, op))
        return slice(start, size)

    def _groups(self) -> tuple[list[torch.Tensor], list[int], list[tuple[int, Number]]]:
        """The queued items as one float64 tensor per (kind, dtype, device), the positions of
        their values, and the plain numbers with their positions."""
        groups: dict[tuple, tuple[list, list]] = {}
        numbers = []
        pos = 0
        for t in self._items:
            if isinstance(t, torch.Tensor):
                vec = t.dim() > 0
                where, ts = groups.setdefault((vec, t.dtype, t.device), ([], []))
                where.append(pos)
                ts.append(t)
                pos += t.numel() if vec else 1
            else:
                numbers.append((pos, t))
                pos += 1
        flats, index = [], []
        for (vec, _, _), (where, ts) in groups.items():
            if vec:  # one cat per dtype, not one op per tensor
                flats.append(torch.cat(ts).to(torch.float64))
                index += [p + i for p, t in zip(where, ts, strict=True) for i in range(t.numel())]
            else:
                flats.append(torch.stack(ts).to(torch.float64))
                index += where
        return flats, index, numbers

    def to_host(self) -> list[float]:
        """Everything queued, as one list of floats (one device-to-host copy)."""
        if self.reduce_fn is not None:
            return self._reduced_to_host()
        out = np.empty(self._size)
        flats, index, numbers = self._groups()
        for pos, v in numbers:
            out[pos] = v
        if flats:
            device = flats[0].device
            out[index] = torch.cat([f.to(device) for f in flats]).cpu().numpy()
        return out.tolist()

    def _reduced_to_host(self) -> list[float]:
        """Distributed: the buffer in position order on the device, combined across ranks by
        ``reduce_fn``, then copied once; what ``reduce_fn`` appends is kept for ``rank_of``."""
        flats, index, numbers = self._groups()
        device = flats[0].device if flats else torch.device("cpu")
        if numbers:
            flats.append(torch.tensor([float(v) for _, v in numbers], dtype=torch.float64))
            index += [p for p, _ in numbers]
        flat = torch.cat([f.to(device) for f in flats]) if flats else torch.zeros(0).double()
        ordered = torch.empty(self._size, dtype=torch.float64, device=device)
        ordered[torch.tensor(index, dtype=torch.long).to(device)] = flat
        out = self.reduce_fn(ordered, self).cpu().tolist()
        self._tail = out[self._size :]
        if self.after_copy is not None:
            self.after_copy(self._tail)
        return out[: self._size]

    def rank_of(self, pos: int) -> int | None:
        """Distributed: the rank a first-non-finite code or NaN/Inf count at ``pos`` came from."""
        i = self.rank_at.get(pos)
        if i is None or i - self._size >= len(self._tail):
            return None
        r = self._tail[i - self._size]
        return int(r) if r >= 0 else None
